//! The integration tests: one binary, one module per area, and the helpers
//! they share in `support`.

mod support;

mod accounting;
mod archive;
mod backfill;
mod backfill_rerun;
mod checkpoint;
mod cli;
mod customer_ids;
mod customers;
mod dedupe;
mod faults;
mod fuzz;
mod generated;
mod hostile;
mod input;
mod pipes;
mod resume;
mod rewrites;
mod s3;
mod secrets;
mod segment_input;
mod send;
mod server_selftest;
mod stops;
mod translate;
mod values;
mod verify;
