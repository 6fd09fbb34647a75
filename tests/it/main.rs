//! The integration tests: one binary, one module per area, and the helpers
//! they share in `support`.

mod support;

mod accounting;
mod backfill;
mod cli;
mod customers;
mod faults;
mod fuzz;
mod generated;
mod hostile;
mod input;
mod resume;
mod secrets;
mod send;
mod server_selftest;
mod translate;
mod verify;
