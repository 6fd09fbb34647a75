//! segrelay: replays Segment events into usage-billing systems.
#![warn(unreachable_pub)]
// Standard output and error are written through `console` and the writers
// that handle a closed pipe; the print macros panic on one.
#![warn(clippy::print_stderr, clippy::print_stdout)]

mod checkpoint;
pub mod cli;
mod config;
mod console;
mod delivery;
pub mod destination;
pub mod event;
pub mod input;
mod interrupt;
mod report;
mod run;
pub mod settings;
mod status;
mod transport;
mod verify;

use std::io;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, Command, OrbCommand};
use crate::config::{BackfillsConfig, RunConfig, VerifyConfig};
use crate::run::Job;
use crate::settings::SettingsError;
pub use crate::status::Status;

/// The exit code for an error that ended the run.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<SettingsError>().is_some() {
        Status::Usage.code()
    } else if error.downcast_ref::<status::OutputFailed>().is_some() {
        Status::Output.code()
    } else if error.downcast_ref::<status::InternalError>().is_some() {
        Status::Internal.code()
    } else {
        Status::Problems.code()
    }
}

/// True when the error is only a closed pipe on standard output (`segrelay ... | head`).
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Each command's entry point.
pub fn run(cli: Cli) -> anyhow::Result<Status> {
    match cli.command {
        Command::Send(args) => Job::build(RunConfig::for_send(args)?)?.run(),
        Command::Check(args) => Job::build(RunConfig::for_check(args)?)?.run(),
        Command::Verify(args) => verify::run(VerifyConfig::new(args)?),
        Command::Destinations(args) => {
            destination::listing::print(args.json, args.config.as_deref())?;
            Ok(Status::Clean)
        }
        Command::Init(args) => {
            let kind = args
                .destination
                .as_deref()
                .and_then(destination::Kind::from_name);
            destination::init::write(kind, &args.out)?;
            Ok(Status::Clean)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "segrelay",
                &mut io::stdout().lock(),
            );
            Ok(Status::Clean)
        }
        Command::Orb {
            settings,
            command: OrbCommand::Backfills { timeout, action },
        } => {
            let config = BackfillsConfig::new(settings, timeout, action)?;
            destination::orb::backfill::manage(
                config.target.destination,
                config.timeout,
                config.action,
            )
        }
        Command::Man { out_dir } => {
            // `help` has no page of its own: the pages are the help.
            let command = Cli::command().disable_help_subcommand(true);
            match out_dir {
                None => cli::manual::render(&command, &mut io::stdout().lock())?,
                Some(dir) => cli::manual::write_all(command, &dir).with_context(|| {
                    format!("cannot write the manual pages to {}", dir.display())
                })?,
            }
            Ok(Status::Clean)
        }
    }
}
