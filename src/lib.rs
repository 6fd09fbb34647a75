//! segrelay: replays Segment events into usage-billing systems.

mod backfill;
mod checkpoint;
pub mod cli;
mod config;
mod console;
mod customers;
mod delivery;
pub mod destination;
pub mod event;
pub mod filter;
mod grace;
pub mod input;
mod interrupt;
mod job;
mod outcome;
mod pipeline;
mod prepare;
mod reason;
mod rejects;
mod report;
mod retry;
pub mod settings;
mod status;
mod throttle;
mod transport;
mod verify;

use std::io::{self, Write};

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, Command, OrbCommand};
use crate::config::{BackfillsConfig, RunConfig, VerifyConfig};
use crate::destination::{Kind, calls, settings_keys};
use crate::job::Job;
use crate::settings::SettingsError;
pub use crate::status::Status;

/// The exit code for an error that ended the run.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<SettingsError>().is_some() {
        Status::Usage as u8
    } else {
        Status::Problems as u8
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
            print_destinations(args.json)?;
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
            command:
                OrbCommand::Backfills {
                    settings,
                    timeout,
                    action,
                },
        } => backfill::manage(BackfillsConfig::new(settings, timeout, action)?),
        Command::Man { out_dir } => {
            // `help` has no page of its own: the pages are the help.
            let command = Cli::command().disable_help_subcommand(true);
            match out_dir {
                None => clap_mangen::Man::new(command).render(&mut io::stdout().lock())?,
                Some(dir) => clap_mangen::generate_to(command, &dir).with_context(|| {
                    format!("cannot write the manual pages to {}", dir.display())
                })?,
            }
            Ok(Status::Clean)
        }
    }
}

fn print_destinations(json: bool) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    if json {
        let list: Vec<serde_json::Value> = Kind::ALL
            .iter()
            .map(|&kind| {
                let (default_batch, max_batch) = kind.batch_sizes();
                serde_json::json!({
                    "type": kind.name(),
                    "integrations_key": kind.display_name(),
                    "calls": calls(kind).iter().map(|(call, to)| serde_json::json!({"call": call, "request": to})).collect::<Vec<_>>(),
                    "batch_size": {"default": default_batch, "max": max_batch},
                    "settings": common_settings().iter().chain(settings_keys(kind)).map(|s| serde_json::json!({
                        "key": s.key, "required": s.required, "default": s.default, "help": s.help,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
        return Ok(());
    }
    for (i, &kind) in Kind::ALL.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let (default_batch, max_batch) = kind.batch_sizes();
        writeln!(
            out,
            "{} (integrations key \"{}\")",
            kind.name(),
            kind.display_name()
        )?;
        writeln!(out, "  calls:")?;
        for (call, to) in calls(kind) {
            writeln!(out, "    {call:<9} {to}")?;
        }
        writeln!(
            out,
            "  batch size: {default_batch} events per request by default, at most {max_batch}"
        )?;
        writeln!(out, "  settings:")?;
        for setting in common_settings().iter().chain(settings_keys(kind)) {
            let default = match (setting.required, setting.default) {
                (true, _) => "required".to_owned(),
                (false, Some(default)) => format!("default: {default}"),
                (false, None) => "optional".to_owned(),
            };
            writeln!(out, "    {:<27} {} ({default})", setting.key, setting.help)?;
        }
    }
    Ok(())
}

fn common_settings() -> &'static [destination::SettingDoc] {
    use destination::SettingDoc;
    &[
        SettingDoc {
            key: "type",
            default: Some("the table's name"),
            required: false,
            help: "amberflo, orb or kable",
        },
        SettingDoc {
            key: "api_key",
            default: None,
            required: true,
            help: "the API key; use \"${VAR}\" to read it from the environment",
        },
        SettingDoc {
            key: "endpoint",
            default: Some("the service's own URL"),
            required: false,
            help: "base URL, for proxies, tests and failover hosts",
        },
        SettingDoc {
            key: "allow_insecure",
            default: Some("false"),
            required: false,
            help: "allow a plain http:// endpoint that is not on this machine",
        },
        SettingDoc {
            key: "max_events_per_minute",
            default: Some("no limit"),
            required: false,
            help: "keep under the destination's rate limit (Orb live: 10000)",
        },
    ]
}
