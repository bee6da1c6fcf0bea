//! Outputs. Every sink reads decoded events or analysed state; none touches the kernel side.
pub mod live;
pub mod metrics;
pub mod out;
pub mod top;
