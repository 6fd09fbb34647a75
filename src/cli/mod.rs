//! The command line, as clap types only. `config` turns these into each command's validated
//! configuration.

pub(crate) mod manual;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::status::{Exits, Status};

/// The "Exit codes:" lines of a command's help, from what each status means to
/// it (`status.rs`); the man pages' EXIT STATUS says the same.
fn exit_codes(command: Exits) -> String {
    let mut text = match command {
        Exits::Any => "Exit codes (each command's --help says what they mean for it):".to_owned(),
        _ => "Exit codes:".to_owned(),
    };
    for status in Status::ALL {
        if let Some(meaning) = status.meaning(command) {
            let code = status.code().to_string();
            // Wrapped by hand: clap leaves the text after the options as it is.
            let indent = " ".repeat(2 + code.len() + 2);
            let mut line = format!("\n  {code}  ");
            let mut width = line.len() - 1;
            for word in meaning.split(' ') {
                if width > indent.len() && width + 1 + word.len() > EXIT_CODES_WIDTH {
                    line.push('\n');
                    line.push_str(&indent);
                    width = indent.len();
                } else if width > indent.len() {
                    line.push(' ');
                    width += 1;
                }
                line.push_str(word);
                width += word.len();
            }
            text.push_str(&line);
        }
    }
    text
}

/// Where the exit codes' lines are wrapped.
const EXIT_CODES_WIDTH: usize = 100;

/// Replay Segment events (NDJSON, gzip or not) into usage-billing systems:
/// Amberflo, Orb and Kable.
#[derive(Debug, Parser)]
#[command(name = "segrelay", version, about, after_help = exit_codes(Exits::Any))]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Translate events and send them to a destination, or write the requests (--dry-run)
    #[command(
        after_help = exit_codes(Exits::Send),
        mut_arg("verbose", |a| a.help("Say more: every event not sent with its reason, and each request with its status and time"))
    )]
    Send(SendArgs),
    /// Validate the settings and the input, and count what would happen; nothing is sent
    #[command(
        after_help = exit_codes(Exits::Check),
        mut_arg("verbose", |a| a.help("Say more: every event that would not be sent, with its reason"))
    )]
    Check(CheckArgs),
    /// Compare what the destination holds with what the input says it should
    // verify prints its differences whatever the verbosity: -v is only kept for symmetry.
    #[command(after_help = exit_codes(Exits::Verify), mut_arg("verbose", |a| a.hide(true)))]
    Verify(VerifyArgs),
    /// List the destination types, the calls each takes and their settings, and the
    /// destinations the settings file found configures
    Destinations(DestinationsArgs),
    /// Write a commented starter settings file
    Init(InitArgs),
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Manage Orb backfills by hand
    Orb {
        // Here, not on `backfills`: global, so `orb -d X backfills list`,
        // `orb backfills -d X list` and `orb backfills list -d X` all read it.
        #[command(flatten)]
        settings: SettingsArgs,

        #[command(subcommand)]
        command: OrbCommand,
    },
    /// Print the manual page (roff), or write every command's page to a folder
    Man {
        /// Write segrelay.1 and a page for each command (segrelay-send.1, ...) into DIR
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrbCommand {
    /// List, show, close or revert Orb backfills
    Backfills {
        /// Connect and read timeout for each request
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, global = true)]
        timeout: Duration,

        #[command(subcommand)]
        action: BackfillAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackfillAction {
    /// List the account's backfills, newest last
    List {
        /// Print Orb's JSON objects, one per line
        #[arg(long)]
        json: bool,
    },
    /// Print one backfill as JSON
    Show {
        /// The backfill's id, as `list` prints it
        id: String,
    },
    /// Close a backfill: Orb then reflects its events
    Close {
        /// The backfill's id, as `list` prints it
        id: String,
    },
    /// Revert a backfill: Orb removes its events (and restores what it replaced)
    Revert {
        /// The backfill's id, as `list` prints it
        id: String,

        /// Revert without asking; needed when standard input is not a terminal
        #[arg(short, long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// The settings file [default: $SEGRELAY_CONFIG, else ./segrelay.toml, else
    /// $XDG_CONFIG_HOME/segrelay/config.toml (~/.config/segrelay/config.toml)]
    // global: `orb backfills list -c F` as well as `orb -c F backfills list`.
    #[arg(short, long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,

    /// A destination named in the settings; may be left out when the settings
    /// name exactly one, or set default_destination
    #[arg(
        short,
        long,
        value_name = "NAME",
        global = true,
        env = "SEGRELAY_DESTINATION",
        hide_env_values = true
    )]
    pub destination: Option<String>,
}

#[derive(Debug, Args)]
pub struct InputArgs {
    /// Input files, read in order; `-` or none reads standard input; a folder is
    /// read recursively (in Segment's S3 layout, only its day folders), and so is
    /// `s3://BUCKET/PREFIX`. Gzip is recognised by its magic bytes
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Read `s3://` inputs without credentials (public buckets), as the AWS CLI's option
    #[arg(long, help_heading = "Input")]
    pub no_sign_request: bool,

    /// Reject input lines longer than this many bytes (suffixes K, M)
    #[arg(long, value_name = "BYTES", default_value = "1M", value_parser = parse_size, help_heading = "Input")]
    pub max_line_bytes: usize,

    /// Only events at or after TIME (RFC 3339, or a date: midnight UTC)
    #[arg(long, value_name = "TIME", value_parser = crate::input::filter::parse_bound, help_heading = "Filters")]
    pub since: Option<jiff::Timestamp>,

    /// Only events before TIME (RFC 3339, or a date: midnight UTC)
    #[arg(long, value_name = "TIME", value_parser = crate::input::filter::parse_bound, help_heading = "Filters")]
    pub until: Option<jiff::Timestamp>,

    /// Segment's S3 layout: skip the day folders received wholly before TIME
    /// (RFC 3339, or a date); events they hold are not read, whatever their time
    #[arg(long, value_name = "TIME", value_parser = crate::input::filter::parse_bound, help_heading = "Filters")]
    pub received_since: Option<jiff::Timestamp>,

    /// Segment's S3 layout: skip the day folders received at or after TIME (RFC 3339,
    /// or a date). Faster, but events timed earlier that reached Segment late are lost
    #[arg(long, value_name = "TIME", value_parser = crate::input::filter::parse_bound, help_heading = "Filters")]
    pub received_until: Option<jiff::Timestamp>,

    /// Only these call types (comma-separated: track, page, screen, identify, group, alias)
    #[arg(
        long,
        value_name = "TYPES",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub types: Option<Vec<String>>,

    /// Only track events with these names (comma-separated); other call types pass
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        help_heading = "Filters"
    )]
    pub events: Option<Vec<String>>,

    /// Threads that parse and translate, beside the one that batches and sends
    /// (1 to 64) [default: the number of CPUs, but no more than 8]
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64), help_heading = "Input")]
    pub threads: Option<u16>,

    /// Print only errors on standard error, and why and where a run stopped
    #[arg(short, long, conflicts_with = "verbose", help_heading = "Logging")]
    pub quiet: bool,

    /// Say more
    #[arg(short, long, help_heading = "Logging")]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Events per request [default: Amberflo 100, Orb 500, Kable 500]
    #[arg(long, value_name = "N", help_heading = "Sending")]
    pub batch_size: Option<usize>,

    /// Stop at the first rejected event instead of going on
    #[arg(long, help_heading = "Sending")]
    pub fail_fast: bool,

    /// Read at most N events, settle them and stop (with --dry-run: a look at the first few)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,

    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub batch: BatchArgs,

    /// Translate and batch, then write the requests instead of sending them (no network, no keys needed)
    #[arg(long, help_heading = "Output")]
    pub dry_run: bool,

    /// How a dry run writes requests
    #[arg(long, value_enum, default_value_t = Format::Ndjson, requires = "dry_run", help_heading = "Output")]
    pub format: Format,

    /// Where a dry run writes [default: standard output]
    #[arg(
        short,
        long,
        value_name = "PATH",
        requires = "dry_run",
        help_heading = "Output"
    )]
    pub output: Option<PathBuf>,

    /// Write API keys in dry-run output instead of *** or $VAR
    #[arg(long, help_heading = "Output")]
    pub show_secrets: bool,

    /// Write every event that is not delivered, with its reason, source and line, to PATH
    /// (NDJSON that `segrelay send` reads back)
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub rejects: Option<PathBuf>,

    /// Write the run's summary as JSON to PATH
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub summary: Option<PathBuf>,

    #[command(flatten)]
    pub retry: RetryArgs,

    /// Requests in flight at once (threads); the checkpoint still only moves past
    /// a batch once every earlier one is settled
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64), help_heading = "Sending")]
    pub concurrency: u16,

    /// Record in PATH how far the input is settled, and what decides which events
    /// are sent (filters, destination, settings); resume from it when PATH exists,
    /// under the same ones. Not with --dry-run: a dry run sends nothing, so it is
    /// simply run again
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "dry_run",
        help_heading = "Checkpoints"
    )]
    pub checkpoint: Option<PathBuf>,

    /// Ignore the checkpoint there is and start over
    #[arg(long, requires = "checkpoint", help_heading = "Checkpoints")]
    pub restart: bool,

    /// Amberflo: before the first meter record of each customer, look it up and
    /// create it when missing (as `ensure_customers = true` in the settings)
    #[arg(long, help_heading = "Amberflo")]
    pub ensure_customers: bool,

    /// Orb: send the events older than Orb's grace period through backfills, one per
    /// window of at most --orb-backfill-window days, the others through ordinary
    /// ingest, and reject those more than 5 minutes ahead (file inputs only)
    #[arg(long, help_heading = "Orb backfills")]
    pub orb_backfill: bool,

    /// Orb: the longest backfill window, in days (Orb allows 31)
    #[arg(long, value_name = "DAYS", default_value_t = 31, value_parser = clap::value_parser!(u32).range(1..=31), requires = "orb_backfill", help_heading = "Orb backfills")]
    pub orb_backfill_window: u32,

    /// Orb: make each backfill replace every event of its window (all customers,
    /// live events included) with the events sent. Destructive
    #[arg(long, requires = "orb_backfill", help_heading = "Orb backfills")]
    pub orb_replace_existing: bool,

    /// Orb: create backfills even over windows that earlier backfills (not
    /// reverted) already cover, keeping their events. Risky: Orb dedupes
    /// idempotency keys only within its grace period, so an event both hold
    /// may be counted twice. Without it (or --orb-replace-existing) such a run
    /// is refused
    #[arg(long, requires = "orb_backfill", help_heading = "Orb backfills")]
    pub orb_allow_overlap: bool,

    /// Orb: do not close each backfill once filled; Orb then closes it by itself
    /// at its close time (see --orb-close-after), and reflects it
    #[arg(
        long,
        requires = "orb_backfill",
        conflicts_with = "orb_wait",
        help_heading = "Orb backfills"
    )]
    pub orb_no_close: bool,

    /// Orb: each backfill's close time, sent when it is created: Orb closes it by
    /// itself this long after its creation, closed by segrelay or not (Orb's own
    /// default is one day)
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration, requires = "orb_backfill", help_heading = "Orb backfills")]
    pub orb_close_after: Duration,

    /// Orb: after closing a backfill, wait until Orb has reflected it before the next
    #[arg(long, requires = "orb_backfill", help_heading = "Orb backfills")]
    pub orb_wait: bool,

    /// Orb: how often --orb-wait asks
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, help_heading = "Orb backfills")]
    pub orb_poll_interval: Duration,

    /// Orb: how long --orb-wait waits for one backfill
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = parse_duration, help_heading = "Orb backfills")]
    pub orb_wait_timeout: Duration,

    /// At most N requests per second (retries included)
    #[arg(long, value_name = "N", value_parser = parse_rate, help_heading = "Sending")]
    pub rate: Option<f64>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,

    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub batch: BatchArgs,

    /// Write every event that would be rejected, with its reason, source and line, to PATH
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub rejects: Option<PathBuf>,

    /// Write the summary as JSON to PATH
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub summary: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,

    #[command(flatten)]
    pub input: InputArgs,

    /// Print the comparison as JSON
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub retry: RetryArgs,
}

/// How requests are timed out and retried.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Connect and read timeout for each request (e.g. 30s, 500ms, 2m)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, help_heading = "Sending")]
    pub timeout: Duration,

    /// Retries of a request that failed in a way worth retrying (timeouts,
    /// connection errors, 408, 429, 5xx except 501; Orb also 409)
    #[arg(long, value_name = "N", default_value_t = 6, help_heading = "Sending")]
    pub max_retries: u32,

    /// The longest segrelay waits before one retry, whatever Retry-After asks
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, help_heading = "Sending")]
    pub max_retry_wait: Duration,
}

#[derive(Debug, Args)]
pub struct DestinationsArgs {
    /// Print as JSON
    #[arg(long)]
    pub json: bool,

    /// The settings file whose destinations to list [default: as for send]
    #[arg(short, long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Only this destination type [default: all three]
    #[arg(short, long, value_name = "TYPE", value_parser = ["amberflo", "orb", "kable"])]
    pub destination: Option<String>,

    /// Where to write; `-` is standard output. An existing file is never overwritten
    #[arg(long, value_name = "PATH", default_value = "segrelay.toml")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON line per request: destination, method, url, headers, body, events
    Ndjson,
    /// A runnable curl command per request
    Curl,
    /// Raw HTTP/1.1 requests, as `http --offline` prints them
    Http,
    /// One JSON line per event: source, line, its translated record, and the request it travels in
    Records,
}

/// `1048576`, `512K`, `1M`, `2MiB`, ...
fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size"))?;
    let factor = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{text:?}: unknown unit (use K, M or G)")),
    };
    match number.checked_mul(factor) {
        Some(0) | None => Err(format!("{text:?} is not a usable size")),
        Some(n) => Ok(n),
    }
}

/// `30`, `30s`, `500ms`, `2m`, `1h`: a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let lower = text.trim().to_ascii_lowercase();
    let number_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(number_end);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 30s or 500ms)"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is not a usable duration"))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of requests per second"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1T").is_err());
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// The help's exit codes, their wrapped lines joined again, are each
    /// status's code and meaning, and no line is wider than the wrap.
    #[test]
    fn exit_codes_are_wrapped_without_losing_a_word() {
        for command in [Exits::Any, Exits::Send, Exits::Check, Exits::Verify] {
            let text = exit_codes(command);
            assert!(
                text.lines().all(|line| line.len() <= EXIT_CODES_WIDTH),
                "{text}"
            );
            let mut said: Vec<(u8, String)> = Vec::new();
            for line in text.lines().skip(1) {
                let continued = line.starts_with("   ");
                let line = line.trim_start();
                match (continued, said.last_mut()) {
                    (true, Some((_, meaning))) => {
                        meaning.push(' ');
                        meaning.push_str(line);
                    }
                    _ => {
                        let (code, meaning) = line.split_once("  ").expect("code, then meaning");
                        said.push((code.parse().expect("a code"), meaning.to_owned()));
                    }
                }
            }
            let meant: Vec<(u8, String)> = Status::ALL
                .iter()
                .filter_map(|s| Some((s.code(), s.meaning(command)?.to_owned())))
                .collect();
            assert_eq!(said, meant);
        }
    }
}
