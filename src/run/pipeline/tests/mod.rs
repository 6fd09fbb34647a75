//! The core tested in-process: a real pipeline and courier, a real
//! destination and checkpoint, and a scripted transport in place of the
//! network (`crate::transport::scripted`). `cargo test --lib pipeline::`.

mod harness;

mod checkpoint;
mod delivery;
mod settle;
mod stop;
