//! segrelay: replays Segment events into usage-billing systems.

pub mod backfill;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod console;
pub mod customers;
pub mod delivery;
pub mod destination;
pub mod event;
pub mod filter;
pub mod grace;
pub mod input;
pub mod interrupt;
pub mod outcome;
pub mod pipeline;
pub mod prepare;
pub mod reason;
pub mod rejects;
pub mod report;
pub mod retry;
pub mod settings;
pub mod table;
pub mod throttle;
pub mod transport;
pub mod verify;
pub mod wire;

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use clap::CommandFactory;

use crate::checkpoint::Checkpoint;
use crate::cli::{Cli, Command};
use crate::config::{Config, Mode};
use crate::console::{Console, Verbosity};
use crate::customers::{self as customer_files, Customers};
use crate::delivery::Courier;
use crate::destination::Kind;
use crate::input::Source;
use crate::pipeline::{Dispatch, Pass};
use crate::report::Report;
use crate::settings::SettingsError;
use crate::throttle::Throttle;
use crate::transport::Discard;
use crate::transport::dry_run::DryRun;
use crate::transport::http::HttpSender;

/// How a run ended, as the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every event sent (or translated, in a dry run) or skipped.
    Clean = 0,
    /// Some events rejected or failed.
    Problems = 1,
    /// Usage or settings error.
    Usage = 2,
    /// The destination stopped the run: key refused, or unreachable after retries.
    Aborted = 3,
    /// Ctrl-C or SIGTERM.
    Interrupted = interrupt::EXIT_CODE as isize,
}

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

pub fn run(cli: Cli) -> anyhow::Result<Status> {
    match cli.command {
        Command::Send(args) => {
            let summary = args.summary.clone();
            process(Config::for_send(args)?, summary.as_deref())
        }
        Command::Check(args) => {
            let summary = args.summary.clone();
            process(Config::for_check(args)?, summary.as_deref())
        }
        Command::Verify(args) => verify::run(Config::for_verify(args)?),
        Command::Destinations(args) => {
            destination::listing::print(args.json)?;
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
                cli::OrbCommand::Backfills {
                    settings,
                    timeout,
                    action,
                },
        } => {
            let loaded = settings::Settings::load(&settings::locate(settings.config.as_deref()))?;
            let chosen = loaded.select(settings.destination.as_deref())?;
            if chosen.kind != Kind::Orb {
                return Err(SettingsError(format!(
                    "{} is not an Orb destination (choose one with -d NAME)",
                    chosen.name
                ))
                .into());
            }
            backfill::manage(chosen, timeout, &action)
        }
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

fn process(config: Config, summary_path: Option<&std::path::Path>) -> anyhow::Result<Status> {
    if config.verbosity > Verbosity::Quiet
        && config.sources.contains(&Source::Stdin)
        && io::stdin().is_terminal()
    {
        eprintln!("segrelay: reading events from standard input (end with Ctrl-D)");
    }
    let mut checkpoint = match &config.checkpoint {
        Some(path) => {
            let (checkpoint, resumed) = Checkpoint::open(
                path,
                config.destination.name(),
                &config.sources,
                config.restart,
            )?;
            Some((checkpoint, resumed))
        }
        None => None,
    };
    let bytes_read = Arc::new(AtomicU64::new(0));
    let console = Console::new(config.verbosity, input::total_size(&config.sources));
    let resumed = checkpoint
        .as_ref()
        .filter(|(_, resumed)| *resumed)
        .map(|(c, _)| c.state().clone());
    let resumed_customers = resumed.as_ref().and_then(|state| state.customers_length);
    let resumed_state = resumed.is_some();
    let rejects_length = resumed
        .as_ref()
        .map(|state| state.rejects_length.unwrap_or(0));
    let mut report = Report::new(
        console.clone(),
        config.rejects.as_deref(),
        rejects_length,
        bytes_read.clone(),
    )?;
    for warning in &config.warnings {
        report.warn(warning.as_str());
    }
    if let Some(state) = resumed {
        if state.inputs.iter().all(|i| i.done) {
            console.say("segrelay: the checkpoint says every input is already settled: nothing to do (--restart starts over)");
        }
        report.resumed(state.totals);
    }
    let (mut dispatch, title) = match &config.mode {
        Mode::DryRun {
            format,
            output,
            show_secrets,
        } => {
            let (out, target): (Box<dyn Write>, String) = match output {
                Some(path) => {
                    let file = File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    (
                        Box::new(BufWriter::with_capacity(256 * 1024, file)),
                        path.display().to_string(),
                    )
                }
                None => (
                    Box::new(BufWriter::with_capacity(256 * 1024, io::stdout())),
                    "standard output".to_owned(),
                ),
            };
            let writer = DryRun::new(*format, *show_secrets, out, target);
            (
                Dispatch::Inline(Box::new(writer)),
                format!("{} (dry run)", config.destination.name()),
            )
        }
        Mode::Verify { .. } => unreachable!("verify has a path of its own"),
        Mode::Check => (
            Dispatch::Inline(Box::new(Discard)),
            format!("{} (check)", config.destination.name()),
        ),
        Mode::Send {
            timeout,
            concurrency,
        } => {
            // One more connection for lookups and backfills between batches.
            let sender = HttpSender::new(*timeout, *concurrency + 1);
            let make = sender.clone();
            // Even one request in flight goes through a sending thread, so that the
            // next batch is read and translated while the destination answers.
            let dispatch = Dispatch::Pool {
                size: *concurrency,
                make: Box::new(move || Box::new(make.clone())),
                control: Box::new(sender),
            };
            (dispatch, config.destination.name().to_owned())
        }
    };
    interrupt::install();
    let courier = Arc::new(Courier {
        destination: config.destination.clone(),
        retry: config.retry.clone(),
        // Rate limits are the destination's: a dry run or a check has none.
        throttle: Mutex::new(match config.mode {
            Mode::Send { .. } => Throttle::new(config.rate, config.max_events_per_minute),
            _ => Throttle::new(None, None),
        }),
        console,
        secret: Some(config.secret.clone()),
        aborted: Mutex::new(None),
        usage_query: RwLock::new(None),
    });
    let options = pipeline::Options {
        sources: &config.sources,
        max_line_bytes: config.max_line_bytes,
        threads: config.threads,
        batch_size: config.batch_size,
        fail_fast: config.fail_fast,
        filter: config.filter.clone(),
        bytes_read,
    };
    let checkpoint = checkpoint.as_mut().map(|(c, _)| c);
    let end = match &config.orb_backfill {
        Some(plan) => {
            let api = config
                .destination
                .orb_api()
                .expect("--orb-backfill is for Orb");
            backfill::run(
                &options,
                plan,
                api,
                &courier,
                &mut dispatch,
                &mut report,
                checkpoint,
            )?
        }
        None => {
            let pass = Pass {
                window: None,
                settles_unsent: true,
                rejects_after: None,
            };
            let merges = config.destination.merges_customers();
            let mut customers = match config.ensure_customers || merges {
                true => {
                    let files = checkpoint.as_ref().map(|c| customer_files::Files {
                        known: c.customers_path(),
                        known_length: resumed_customers,
                        journal: c.identified_path(),
                        resumed: resumed_state,
                    });
                    let api = config
                        .destination
                        .amberflo_api()
                        .expect("customers are Amberflo's");
                    let ensures = config.ensure_customers;
                    Some(Customers::new(api, ensures, merges, files.as_ref())?)
                }
                false => None,
            };
            pipeline::run(
                &options,
                pass,
                &courier,
                &mut dispatch,
                &mut report,
                checkpoint,
                customers.as_mut(),
            )?
        }
    };
    dispatch.finish()?;
    let aborted = end.aborted;
    if let Some(reason) = aborted.clone() {
        report.aborted(reason);
    }
    let interrupted = interrupt::requested();
    if interrupted {
        report.interrupted();
    }
    report.finish(&title, summary_path)?;
    let s = report.summary();
    Ok(if interrupted {
        Status::Interrupted
    } else if aborted.is_some() {
        Status::Aborted
    } else if s.rejected + s.failed > 0
        || s.already_done
            .as_ref()
            .is_some_and(|done| done.rejected + done.failed > 0)
    {
        // A resumed job answers for what earlier runs of it rejected too.
        Status::Problems
    } else {
        Status::Clean
    })
}
