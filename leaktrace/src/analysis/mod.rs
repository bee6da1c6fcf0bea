//! Pure analysis of RSS timelines: pattern classification
//! ([`mod@classify`]) and time-to-limit prediction ([`predict`]).

pub mod classify;
pub mod predict;

// Convenience re-exports; the agent may use either path.
#[allow(unused_imports)]
pub use classify::{ClassifierConfig, Pattern, Sample, Verdict, classify};
#[allow(unused_imports)]
pub use predict::{Limit, LimitKind, binding_limit, eta_secs};
