//! Pure analysis of memory timelines: pattern classification ([`mod@classify`]), time-to-limit
//! prediction ([`predict`]) and scoring a run against the truth ([`score`]).

pub mod alarm;
pub mod caps;
pub mod classify;
pub mod host;
pub mod memcg_binding;
pub mod predict;
pub mod resources;
pub mod runs;
pub mod score;
pub mod work;
