//! The validated configuration a run needs, built from the command line and
//! the settings file. The core never sees clap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{self, BatchArgs, InputArgs, SettingsArgs};
use crate::console::Verbosity;
use crate::destination::Destination;
use crate::filter::{self, Filter};
use crate::input::Source;
use crate::retry::RetryPolicy;
use crate::settings::{self, Secret, Settings, SettingsError};
use crate::transport::dry_run::Format;

pub enum Mode {
    /// Send the requests.
    Send {
        timeout: Duration,
        concurrency: usize,
    },
    /// Write the requests instead of sending them.
    DryRun {
        format: Format,
        output: Option<PathBuf>,
        show_secrets: bool,
    },
    /// Translate and count; write nothing.
    Check,
    /// Compare what the destination holds with the input.
    Verify { timeout: Duration, json: bool },
}

pub struct Config {
    pub destination: Arc<dyn Destination>,
    pub sources: Vec<Source>,
    pub max_line_bytes: usize,
    /// Threads that parse and translate.
    pub threads: usize,
    pub batch_size: usize,
    pub fail_fast: bool,
    pub filter: Filter,
    pub verbosity: Verbosity,
    pub mode: Mode,
    pub rejects: Option<PathBuf>,
    pub summary: Option<PathBuf>,
    pub retry: RetryPolicy,
    /// `--rate`: requests per second.
    pub rate: Option<f64>,
    pub max_events_per_minute: Option<u64>,
    /// `--ensure-customers`, or `ensure_customers` in the settings (Amberflo).
    pub ensure_customers: bool,
    /// `--orb-backfill` and its options.
    pub orb_backfill: Option<crate::backfill::Plan>,
    /// `--checkpoint`, and `--restart` to ignore the one there is.
    pub checkpoint: Option<PathBuf>,
    pub restart: bool,
    /// The destination's key, kept out of messages.
    pub secret: Secret,
    /// Warnings to show before the run starts.
    pub warnings: Vec<String>,
}

impl Config {
    pub fn for_send(args: cli::SendArgs) -> Result<Config, SettingsError> {
        let mode = if args.dry_run {
            Mode::DryRun {
                format: match args.format {
                    cli::Format::Ndjson => Format::Ndjson,
                    cli::Format::Curl => Format::Curl,
                    cli::Format::Http => Format::Http,
                },
                output: args.output,
                show_secrets: args.show_secrets,
            }
        } else {
            Mode::Send {
                timeout: args.retry.timeout,
                concurrency: usize::from(args.concurrency),
            }
        };
        let mut config = Config::build(
            args.settings,
            args.input,
            Some(args.batch),
            mode,
            args.rejects,
            args.summary,
        )?;
        config.retry = RetryPolicy::for_kind(
            config.destination.kind(),
            args.retry.max_retries,
            args.retry.max_retry_wait,
        );
        config.rate = args.rate;
        config.checkpoint = args.checkpoint;
        config.restart = args.restart;
        if args.ensure_customers {
            if config.destination.kind() != crate::destination::Kind::Amberflo {
                return Err(SettingsError(format!(
                    "--ensure-customers is for Amberflo destinations; {} is {}",
                    config.destination.name(),
                    config.destination.kind().name()
                )));
            }
            config.ensure_customers = true;
        }
        if args.orb_backfill {
            if config.destination.kind() != crate::destination::Kind::Orb {
                return Err(SettingsError(format!(
                    "--orb-backfill is for Orb destinations; {} is {}",
                    config.destination.name(),
                    config.destination.kind().name()
                )));
            }
            if config.sources.contains(&Source::Stdin) {
                return Err(SettingsError(
                    "--orb-backfill needs files: it reads them once to plan the windows, then once per window".into(),
                ));
            }
            if args.orb_close_after.is_zero() {
                return Err(SettingsError(
                    "--orb-close-after must be more than 0: Orb would close each backfill before anything was sent to it".into(),
                ));
            }
            config.orb_backfill = Some(crate::backfill::Plan {
                window_days: args.orb_backfill_window,
                replace_existing: args.orb_replace_existing,
                close: !args.orb_no_close,
                close_after: args.orb_close_after,
                wait: args.orb_wait,
                poll_interval: args.orb_poll_interval,
                wait_timeout: args.orb_wait_timeout,
                dry_run: args.dry_run,
            });
        }
        Ok(config)
    }

    pub fn for_check(args: cli::CheckArgs) -> Result<Config, SettingsError> {
        Config::build(
            args.settings,
            args.input,
            Some(args.batch),
            Mode::Check,
            None,
            args.summary,
        )
    }

    pub fn for_verify(args: cli::VerifyArgs) -> Result<Config, SettingsError> {
        let mode = Mode::Verify {
            timeout: args.retry.timeout,
            json: args.json,
        };
        let mut config = Config::build(args.settings, args.input, None, mode, None, None)?;
        config.retry = RetryPolicy::for_kind(
            config.destination.kind(),
            args.retry.max_retries,
            args.retry.max_retry_wait,
        );
        Ok(config)
    }

    fn build(
        settings_args: SettingsArgs,
        input: InputArgs,
        batch: Option<BatchArgs>,
        mode: Mode,
        rejects: Option<PathBuf>,
        summary: Option<PathBuf>,
    ) -> Result<Config, SettingsError> {
        let settings = Settings::load(&settings::locate(settings_args.config.as_deref()))?;
        let chosen = settings.select(settings_args.destination.as_deref())?;
        let destination = chosen.destination.clone();
        let mut warnings = destination.warnings();
        match mode {
            // A real send needs the key before anything is read.
            Mode::Send { .. } | Mode::Verify { .. } => {
                destination.secret().require()?;
            }
            Mode::Check => {
                if let Err(e) = destination.secret().require() {
                    warnings.push(format!("a real send would stop here: {e}"));
                }
            }
            Mode::DryRun { .. } => {}
        }

        let (default_batch, max_batch) = chosen.kind.batch_sizes();
        let fail_fast = batch.as_ref().is_some_and(|b| b.fail_fast);
        let batch_size = match batch.and_then(|b| b.batch_size) {
            None => default_batch,
            Some(0) => return Err(SettingsError("--batch-size must be at least 1".into())),
            Some(n) if n > max_batch => {
                return Err(SettingsError(format!(
                    "--batch-size {n} is more than {} takes in one request ({max_batch})",
                    chosen.kind.name()
                )));
            }
            Some(n) => n,
        };

        let mut sources: Vec<Source> = input.files.into_iter().map(Source::from_arg).collect();
        if sources.is_empty() {
            sources.push(Source::Stdin);
        }
        let written: Vec<(&str, &Path)> = [
            ("--rejects", rejects.as_deref()),
            ("--summary", summary.as_deref()),
            (
                "--output",
                match &mode {
                    Mode::DryRun { output, .. } => output.as_deref(),
                    Mode::Send { .. } | Mode::Check | Mode::Verify { .. } => None,
                },
            ),
        ]
        .into_iter()
        .filter_map(|(flag, path)| path.map(|p| (flag, p)))
        .collect();
        refuse_overwriting_inputs(&sources, &written)?;

        let verbosity = if input.quiet {
            Verbosity::Quiet
        } else if input.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        };
        Ok(Config {
            ensure_customers: destination.ensures_customers(),
            destination,
            sources,
            max_line_bytes: input.max_line_bytes,
            threads: match input.threads {
                Some(threads) => usize::from(threads),
                None => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            },
            batch_size,
            fail_fast,
            filter: Filter {
                since: input.since,
                until: input.until,
                types: filter::names(input.types),
                events: filter::names(input.events),
            },
            verbosity,
            mode,
            rejects,
            summary,
            retry: RetryPolicy::for_kind(chosen.kind, 0, Duration::ZERO),
            rate: None,
            max_events_per_minute: chosen.max_events_per_minute,
            checkpoint: None,
            restart: false,
            orb_backfill: None,
            secret: chosen.destination.secret().clone(),
            warnings,
        })
    }
}

/// `--rejects events.ndjson` would empty the input before it is read.
fn refuse_overwriting_inputs(
    sources: &[Source],
    written: &[(&str, &Path)],
) -> Result<(), SettingsError> {
    for source in sources {
        let Source::Path(input) = source else {
            continue;
        };
        let Ok(input) = input.canonicalize() else {
            continue;
        };
        for (flag, path) in written {
            if path.canonicalize().is_ok_and(|p| p == input) {
                return Err(SettingsError(format!(
                    "{flag} {} is also an input: it would be overwritten before it is read",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}
