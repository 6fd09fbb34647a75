//! Each command's validated configuration, built from the command line and
//! the settings file. The core never sees clap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::Identity;
use crate::cli::{self, BackfillAction, BatchArgs, InputArgs, SettingsArgs};
use crate::console::Verbosity;
use crate::delivery::retry::RetryPolicy;
use crate::destination::DestinationSettings;
use crate::destination::file::{self, Settings};
use crate::destination::orb::backfill::{Backfills, Plan};
use crate::destination::{Destination, Kind, OnePass, Planner};
use crate::input::filter::{self, Filter};
use crate::input::{DayBounds, Expanded, Source};
use crate::report::is_stdout;
use crate::settings::{AnySetting, Secret, SettingsError};
use crate::transport::dry_run::Format;

/// The chosen destination, built from its settings table.
pub(crate) struct Target {
    pub destination: Arc<dyn Destination>,
    /// The destination's own rate limit, which segrelay keeps under.
    pub max_events_per_minute: Option<u64>,
    /// The settings that change what is sent or where, as written: what a
    /// checkpoint records.
    pub recorded: Vec<(&'static AnySetting, Option<String>)>,
    /// What the settings' text says that their reading does not.
    pub settings_warnings: Vec<String>,
}

impl Target {
    fn load(args: &SettingsArgs) -> Result<Target, SettingsError> {
        let settings = Settings::load(&file::locate(args.config.as_deref())?)?;
        let chosen = settings.select(args.destination.as_deref())?;
        Ok(Target::of(chosen))
    }

    fn of(chosen: &DestinationSettings) -> Target {
        Target {
            destination: chosen.destination.clone(),
            max_events_per_minute: chosen.max_events_per_minute,
            recorded: chosen.recorded(),
            settings_warnings: chosen.warnings(),
        }
    }

    /// The destination for `send` or `check`, and the warnings to show
    /// before the run: a check only warns that the key is missing.
    fn load_for(
        args: &SettingsArgs,
        output: &Output,
    ) -> Result<(Target, Vec<String>), SettingsError> {
        let target = Target::load(args)?;
        let mut warnings = target.settings_warnings.clone();
        warnings.extend(target.destination.warnings());
        let key = target.destination.secret().require();
        match output {
            // A real send needs the key before anything is read.
            Output::Send { .. } => {
                key?;
            }
            Output::Check => {
                if let Err(e) = key {
                    warnings.push(format!("a real send would stop here: {e}"));
                }
            }
            Output::DryRun { .. } => {}
        }
        Ok((target, warnings))
    }

    /// The destination's key, kept out of messages.
    pub(crate) fn secret(&self) -> Secret {
        self.destination.secret().clone()
    }

    fn refuse_unless(&self, kind: Kind, flag: &str) -> Result<(), SettingsError> {
        if self.destination.kind() == kind {
            return Ok(());
        }
        let wanted = kind.display_name();
        let actual = self.destination.kind().display_name();
        let name = self.destination.name();
        // A destination named after its type needs no second naming ("orb is orb").
        Err(SettingsError(
            if name.eq_ignore_ascii_case(self.destination.kind().name()) {
                format!("{flag} is for {wanted} destinations, not {actual}")
            } else {
                let article = match actual.starts_with(['A', 'E', 'I', 'O', 'U']) {
                    true => "an",
                    false => "a",
                };
                format!(
                    "{flag} is for {wanted} destinations; {name} is {article} {actual} destination"
                )
            },
        ))
    }
}

/// Where `send` and `check` put the requests.
pub(crate) enum Output {
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
}

/// What a pass of the pipeline reads and how: the inputs, the limits and the
/// filters, and the threads that prepare the lines.
pub(crate) struct Options {
    pub sources: Vec<Source>,
    pub max_line_bytes: usize,
    pub batch_size: usize,
    pub fail_fast: bool,
    /// `--limit`: the events read at most.
    pub limit: Option<u64>,
    pub filter: Filter,
    /// The inputs that could not be opened.
    pub unreadable: Arc<crate::input::Unreadable>,
    /// Threads that parse and translate.
    pub threads: usize,
    /// What the folders among the inputs held, when there were any.
    pub folders: Option<crate::input::Folders>,
}

/// `send` (with or without `--dry-run`) and `check`: the input replayed
/// through the pipeline.
pub(crate) struct RunConfig {
    pub target: Target,
    pub options: Options,
    pub verbosity: Verbosity,
    pub output: Output,
    pub rejects: Option<PathBuf>,
    pub summary: Option<PathBuf>,
    pub retry: RetryPolicy,
    /// `--rate`: requests per second.
    pub rate: Option<f64>,
    /// `--ensure-customers`, or `ensure_customers` in the settings (Amberflo).
    pub ensure_customers: bool,
    /// What a checkpoint records of this run and a resume must match (with
    /// `--checkpoint` only).
    pub identity: Option<Identity>,
    /// How the run goes over its input: one plain pass, or the passes
    /// `--orb-backfill` plans.
    pub planner: Box<dyn Planner>,
    /// `--checkpoint`, and `--restart` to ignore the one there is.
    pub checkpoint: Option<PathBuf>,
    pub restart: bool,
    /// Warnings to show before the run starts.
    pub warnings: Vec<String>,
}

/// `verify`: the input compared with what the destination holds.
pub(crate) struct VerifyConfig {
    pub target: Target,
    pub options: Options,
    pub verbosity: Verbosity,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub json: bool,
    /// Warnings about the input, to show before the comparison.
    pub warnings: Vec<String>,
}

/// `orb backfills ...`: Orb's backfill endpoints by hand.
pub(crate) struct BackfillsConfig {
    pub target: Target,
    pub timeout: Duration,
    pub action: BackfillAction,
}

impl RunConfig {
    pub(crate) fn for_send(args: cli::SendArgs) -> Result<RunConfig, SettingsError> {
        let output = if args.dry_run {
            Output::DryRun {
                format: match args.format {
                    cli::Format::Ndjson => Format::Ndjson,
                    cli::Format::Curl => Format::Curl,
                    cli::Format::Http => Format::Http,
                    cli::Format::Records => Format::Records,
                },
                output: args.output,
                show_secrets: args.show_secrets,
            }
        } else {
            Output::Send {
                timeout: args.retry.timeout,
                concurrency: usize::from(args.concurrency),
            }
        };
        let (target, mut warnings) = Target::load_for(&args.settings, &output)?;
        let written = written_files(&output, args.rejects.as_deref(), args.summary.as_deref());
        refuse_unwritable(&written, args.dry_run, args.checkpoint.as_deref())?;
        let (options, verbosity, input_warnings) =
            read_options(&target, args.input, Some(args.batch), &written)?;
        warnings.extend(input_warnings);
        if args.ensure_customers {
            target.refuse_unless(Kind::Amberflo, "--ensure-customers")?;
        }
        let orb_backfill = match args.orb_backfill {
            false => None,
            true => {
                target.refuse_unless(Kind::Orb, "--orb-backfill")?;
                if options.limit.is_some() {
                    return Err(SettingsError(
                        "--limit does not go with --orb-backfill: a backfill plans its windows from the whole input".into(),
                    ));
                }
                if options.sources.contains(&Source::Stdin) {
                    return Err(SettingsError(
                        "--orb-backfill needs files: it reads them once to plan the windows, then once per window".into(),
                    ));
                }
                if args.orb_close_after.is_zero() {
                    return Err(SettingsError(
                        "--orb-close-after must be more than 0: Orb would close each backfill before anything was sent to it".into(),
                    ));
                }
                Some(Plan {
                    window_days: args.orb_backfill_window,
                    replace_existing: args.orb_replace_existing,
                    allow_overlap: args.orb_allow_overlap,
                    close: !args.orb_no_close,
                    close_after: args.orb_close_after,
                    wait: args.orb_wait,
                    poll_interval: args.orb_poll_interval,
                    wait_timeout: args.orb_wait_timeout,
                    dry_run: args.dry_run,
                })
            }
        };
        let planner: Box<dyn Planner> = match &orb_backfill {
            Some(plan) => Box::new(Backfills::new(plan.clone(), target.destination.as_ref())),
            None => Box::new(OnePass),
        };
        let mut config = RunConfig {
            ensure_customers: args.ensure_customers || target.destination.ensures_customers(),
            retry: retry_policy(&target, &args.retry),
            target,
            options,
            verbosity,
            output,
            rejects: args.rejects,
            summary: args.summary,
            rate: args.rate,
            identity: None,
            planner,
            checkpoint: args.checkpoint,
            restart: args.restart,
            warnings,
        };
        if config.checkpoint.is_some() {
            config.identity = Some(config.identity(orb_backfill.as_ref()));
        }
        Ok(config)
    }

    /// What decides which events this run sends, and where: what a
    /// checkpoint records and a resume must match. The filters, the
    /// destination and its recorded settings (see `Setting::recorded`), and
    /// how events are sent (customers made sure of, Orb backfills). Not what
    /// only paces or stops the run (--limit, --batch-size, --concurrency,
    /// --rate, retries, timeouts, --fail-fast, when backfills are closed), nor
    /// the files it writes. One part a line: a new filter is one more.
    fn identity(&self, orb_backfill: Option<&Plan>) -> Identity {
        let filter = &self.options.filter;
        let destination = &self.target.destination;
        // Sorted: `--types page,track` is `--types track,page`.
        let list = |names: &Option<Vec<String>>| {
            names.as_ref().map(|names| {
                let mut names = names.clone();
                names.sort();
                names.dedup();
                names.join(", ")
            })
        };
        let mut identity = Identity::default();
        identity
            .part(
                "--since",
                filter.since.map(|t| t.to_string()),
                |t| format!("only events at or after {t}"),
                "events of any time (no --since)",
            )
            .part(
                "--until",
                filter.until.map(|t| t.to_string()),
                |t| format!("only events before {t}"),
                "events of any time (no --until)",
            )
            .part(
                "--types",
                list(&filter.types),
                |t| format!("only {t} calls"),
                "every call type",
            )
            .part(
                "--events",
                list(&filter.events),
                |e| format!("only {e}"),
                "every event",
            )
            .part(
                "destination",
                Some(format!(
                    "{:?} ({})",
                    destination.name(),
                    destination.kind().display_name()
                )),
                |d| format!("to destination {d}"),
                "",
            );
        for (setting, value) in &self.target.recorded {
            let key = setting.key;
            identity.part(
                format!("setting {key}"),
                value.clone(),
                |v| format!("with {key} = {v}"),
                format!("with {key} unset ({})", setting.default_text()),
            );
        }
        identity
            .part(
                "--ensure-customers",
                self.ensure_customers.then(|| "on".to_owned()),
                |_| {
                    "making sure of each customer first (--ensure-customers or ensure_customers)"
                        .to_owned()
                },
                "without making sure of customers first",
            )
            .part(
                "--orb-backfill",
                orb_backfill.map(|plan| {
                    format!(
                        "windows of at most {} days{}",
                        plan.window_days,
                        match plan.replace_existing {
                            true => ", replacing the events there (--orb-replace-existing)",
                            false => "",
                        }
                    )
                }),
                |plan| {
                    format!("the events older than the grace period through backfills, in {plan}")
                },
                "through ordinary ingest (no --orb-backfill)",
            );
        identity
    }

    pub(crate) fn for_check(args: cli::CheckArgs) -> Result<RunConfig, SettingsError> {
        let output = Output::Check;
        let (target, mut warnings) = Target::load_for(&args.settings, &output)?;
        let written = written_files(&output, args.rejects.as_deref(), args.summary.as_deref());
        refuse_unwritable(&written, false, None)?;
        let (options, verbosity, input_warnings) =
            read_options(&target, args.input, Some(args.batch), &written)?;
        warnings.extend(input_warnings);
        Ok(RunConfig {
            ensure_customers: target.destination.ensures_customers(),
            // A check sends nothing, so it has nothing to retry.
            retry: RetryPolicy::new(target.destination.backoff(), 0, Duration::ZERO),
            target,
            options,
            verbosity,
            output,
            rejects: args.rejects,
            summary: args.summary,
            rate: None,
            identity: None,
            planner: Box::new(OnePass),
            checkpoint: None,
            restart: false,
            warnings,
        })
    }
}

/// The files a run writes, by flag, none of which may be an input.
fn written_files<'a>(
    output: &'a Output,
    rejects: Option<&'a Path>,
    summary: Option<&'a Path>,
) -> [(&'static str, Option<&'a Path>); 3] {
    let dry_run_output = match output {
        Output::DryRun { output, .. } => output.as_deref(),
        Output::Send { .. } | Output::Check => None,
    };
    [
        ("--rejects", rejects),
        ("--summary", summary),
        ("--output", dry_run_output),
    ]
}

/// Every file the run writes is tried before the first request, so that a
/// bad path costs nothing: at most one goes to standard output (`-`), the
/// others are opened for appending (created when
/// missing, nothing cut), the checkpoint's folder must exist.
fn refuse_unwritable(
    written: &[(&'static str, Option<&Path>)],
    dry_run: bool,
    checkpoint: Option<&Path>,
) -> Result<(), SettingsError> {
    let refuse = |flag: &str, path: &Path, why: String| {
        SettingsError(format!("{flag} {}: {why}", path.display()))
    };
    let on_stdout: Vec<&str> = written
        .iter()
        .filter(|(flag, path)| match path {
            Some(path) => is_stdout(path),
            // A dry run without -o writes its requests to standard output.
            None => *flag == "--output" && dry_run,
        })
        .map(|(flag, _)| *flag)
        .collect();
    if let [first, second, ..] = on_stdout[..] {
        return Err(SettingsError(format!(
            "{first} and {second} both write to standard output: give one of them a file"
        )));
    }
    if checkpoint.is_some() && on_stdout.contains(&"--rejects") {
        return Err(SettingsError(
            "--rejects - does not go with --checkpoint: a resume cuts the rejects file back to what the checkpoint covers".into(),
        ));
    }
    for &(flag, path) in written {
        let Some(path) = path.filter(|path| !is_stdout(path)) else {
            continue;
        };
        if path.is_dir() {
            return Err(refuse(flag, path, "is a folder".into()));
        }
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| refuse(flag, path, format!("cannot be written ({e})")))?;
    }
    if let Some(path) = checkpoint {
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        if path.is_dir() {
            return Err(refuse("--checkpoint", path, "is a folder".into()));
        }
        if !folder.is_dir() {
            return Err(refuse(
                "--checkpoint",
                path,
                format!("there is no folder {}", folder.display()),
            ));
        }
    }
    Ok(())
}

impl VerifyConfig {
    pub(crate) fn new(args: cli::VerifyArgs) -> Result<VerifyConfig, SettingsError> {
        let target = Target::load(&args.settings)?;
        // Before the key: no key would make such a destination verifiable.
        if target.destination.verifier().is_none() {
            let name = target.destination.kind().display_name();
            return Err(SettingsError(format!(
                "{name} documents no API to read events back, so segrelay cannot verify what it \
                 holds; check {name}'s dashboard instead"
            )));
        }
        target.destination.secret().require()?;
        let (options, verbosity, warnings) = read_options(&target, args.input, None, &[])?;
        Ok(VerifyConfig {
            warnings,
            retry: retry_policy(&target, &args.retry),
            target,
            options,
            verbosity,
            timeout: args.retry.timeout,
            json: args.json,
        })
    }
}

impl BackfillsConfig {
    pub(crate) fn new(
        settings: SettingsArgs,
        timeout: Duration,
        action: BackfillAction,
    ) -> Result<BackfillsConfig, SettingsError> {
        let loaded = Settings::load(&file::locate(settings.config.as_deref())?)?;
        let chosen = loaded.select(settings.destination.as_deref())?;
        if chosen.kind != Kind::Orb {
            return Err(SettingsError(format!(
                "{} is not an Orb destination (choose one with -d NAME)",
                chosen.name
            )));
        }
        chosen.destination.secret().require()?;
        let target = Target::of(chosen);
        Ok(BackfillsConfig {
            target,
            timeout,
            action,
        })
    }
}

/// The input to read and how to prepare it, from the input and batch flags,
/// and warnings about the input to show before the run; `written` names the
/// files the command writes, none of which may be an input.
fn read_options(
    target: &Target,
    input: InputArgs,
    batch: Option<BatchArgs>,
    written: &[(&str, Option<&Path>)],
) -> Result<(Options, Verbosity, Vec<String>), SettingsError> {
    let kind = target.destination.kind();
    let (default_batch, max_batch) = kind.batch_sizes();
    let fail_fast = batch.as_ref().is_some_and(|b| b.fail_fast);
    let limit = batch.as_ref().and_then(|b| b.limit);
    let events = filter::names(input.events);
    if let (Some(since), Some(until)) = (input.since, input.until)
        && since >= until
    {
        return Err(SettingsError(format!(
            "--since {since} is not before --until {until}: no event could pass"
        )));
    }
    if let (Some(since), Some(until)) = (input.received_since, input.received_until)
        && since >= until
    {
        return Err(SettingsError(format!(
            "--received-since {since} is not before --received-until {until}: no day folder could be read"
        )));
    }
    let batch_size = match batch.and_then(|b| b.batch_size) {
        None => default_batch,
        Some(0) => return Err(SettingsError("--batch-size must be at least 1".into())),
        Some(n) if n > max_batch => {
            return Err(SettingsError(format!(
                "--batch-size {n} is more than {} takes in one request ({max_batch})",
                kind.name()
            )));
        }
        Some(n) => n,
    };

    let mut sources: Vec<Source> = input.files.into_iter().map(Source::from_arg).collect();
    if sources.is_empty() {
        sources.push(Source::Stdin);
    }
    // Day folders are bounded by the day Segment received them: never by
    // --until, which late events would cross.
    let bounds = DayBounds {
        since: input.since,
        received_since: input.received_since,
        received_until: input.received_until,
    };
    let s3 = crate::input::s3::Options {
        no_sign_request: input.no_sign_request,
        verbose: input.verbose && !input.quiet,
    };
    let Expanded { sources, folders } =
        crate::input::expand(sources, &bounds, &s3).map_err(SettingsError)?;
    let warnings = crate::input::warnings(folders.as_ref(), &bounds);
    let written: Vec<(&str, &Path)> = written
        .iter()
        .filter_map(|&(flag, path)| path.map(|p| (flag, p)))
        .collect();
    refuse_overwriting_inputs(&sources, &written)?;

    let verbosity = if input.quiet {
        Verbosity::Quiet
    } else if input.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let options = Options {
        sources,
        max_line_bytes: input.max_line_bytes,
        threads: match input.threads {
            Some(threads) => usize::from(threads),
            None => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
        },
        batch_size,
        fail_fast,
        limit,
        filter: Filter {
            since: input.since,
            until: input.until,
            types: filter::call_types(input.types).map_err(SettingsError)?,
            seen: Arc::new(filter::EventNames::new(events.as_ref().map_or(0, Vec::len))),
            events,
        },
        unreadable: Arc::new(crate::input::Unreadable::new(fail_fast)),
        folders,
    };
    Ok((options, verbosity, warnings))
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

/// The retries `--max-retries` and `--max-retry-wait` ask for, on the destination's backoff.
fn retry_policy(target: &Target, args: &cli::RetryArgs) -> RetryPolicy {
    RetryPolicy::new(
        target.destination.backoff(),
        args.max_retries,
        args.max_retry_wait,
    )
}
