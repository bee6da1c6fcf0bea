//! Pure functions over timelines: the leak classifier and time-to-OOM prediction.
pub mod classify;
pub mod predict;
