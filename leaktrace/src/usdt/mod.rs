//! USDT (SystemTap SDT) probes in user binaries: the notes ([`notes`]), their argument specs
//! ([`args`]), and attaching them to one process with their semaphores ([`attach`]).
//!
//! Pure parsing lives in `notes` and `args` (unit-tested on the real `libjvm.so` and
//! `python3.11`); `attach` is the only part that touches the kernel or another process.
pub mod args;
pub mod attach;
pub mod notes;
