//! A real pipeline, built in-process: settings parsed from TOML text into a
//! real destination, NDJSON lines in a temporary file, the options a test
//! names, a rejects file and an optional checkpoint in a temporary folder,
//! and a scripted transport in place of the network. `Setup::run` makes one
//! pass and hands back the summary, the requests the transport received, the
//! rejects file's lines and what the checkpoint holds.
//!
//! Everything the core is built from is built in `build`, and only there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tempfile::TempDir;

use crate::checkpoint::{Checkpoint, Identity, State};
use crate::console::{Console, Verbosity};
use crate::delivery::retry::RetryPolicy;
use crate::delivery::throttle::Throttle;
use crate::delivery::{Courier, RequestContext};
use crate::destination::file::Settings;
use crate::event::rejects::NOTE_KEY;
use crate::input::filter::Filter;
use crate::input::{Source, Unreadable};
use crate::report::{Report, Summary};
use crate::run::dedupe::Dedupe;
use crate::run::pipeline::{Dispatch, Options, Pass, PassEnd, Pipeline};
use crate::transport::scripted::{Call, Script};

/// A Kable destination on a loopback address nothing listens on: the
/// scripted transport answers in its place.
pub(super) const KABLE: &str = "\
[destinations.kable]
api_key = 'sk_test_0123456789'
kable_client_id = 'kci_test'
endpoint = 'http://127.0.0.1:9'
";

/// Where the Kable destination above sends its batches.
pub(super) const KABLE_URL: &str = "http://127.0.0.1:9/api/v1/events/create";

/// The key in `KABLE`, which no message may show.
pub(super) const KABLE_KEY: &str = "sk_test_0123456789";

/// An Orb destination, likewise: Orb names the events it refuses.
pub(super) const ORB: &str = "\
[destinations.orb]
api_key = 'orb_test_0123456789'
external_customer_id_field = 'userId'
properties_mapping = { n = 'n' }
endpoint = 'http://127.0.0.1:9'
";

/// A track event Kable takes, `m{n}` its message id (Kable's idempotency key).
pub(super) fn track(n: u64) -> String {
    format!(
        r#"{{"type":"track","event":"api_call","userId":"u1","messageId":"m{n}","timestamp":"2026-01-01T00:00:{:02}Z","receivedAt":"2026-01-01T00:00:{:02}Z","properties":{{"n":{n}}}}}"#,
        n % 60,
        n % 60
    )
}

/// A track event without a time: rejected when it is read, without a request.
pub(super) fn untimed(n: u64) -> String {
    format!(r#"{{"type":"track","event":"api_call","userId":"u1","messageId":"m{n}"}}"#)
}

/// A page call: Kable takes track calls only, so it is skipped without a request.
pub(super) fn page(n: u64) -> String {
    format!(
        r#"{{"type":"page","userId":"u1","messageId":"m{n}","timestamp":"2026-01-01T00:00:00Z"}}"#
    )
}

/// `lines` tracks, numbered from 1 (their line numbers too).
pub(super) fn tracks(lines: u64) -> Vec<String> {
    (1..=lines).map(track).collect()
}

/// Retries without waiting unless a server asks (`Retry-After`), and then
/// 50 ms at most.
pub(super) fn quick_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base: Duration::ZERO,
        cap: Duration::ZERO,
        max_wait: Duration::from_millis(50),
    }
}

/// What a test runs: the settings, the input and the options.
pub(super) struct Setup {
    settings: &'static str,
    lines: Vec<String>,
    batch_size: usize,
    fail_fast: bool,
    limit: Option<u64>,
    checkpoint: bool,
    /// Sending threads, each with its own transport; None: inline.
    pool: Option<usize>,
    retry: RetryPolicy,
}

impl Setup {
    /// The lines sent to Kable, inline, in batches of 10, without a checkpoint.
    pub(super) fn new(lines: Vec<String>) -> Setup {
        Setup {
            settings: KABLE,
            lines,
            batch_size: 10,
            fail_fast: false,
            limit: None,
            checkpoint: false,
            pool: None,
            retry: quick_retries(3),
        }
    }

    /// Another destination's settings (`ORB`).
    pub(super) fn settings(mut self, text: &'static str) -> Setup {
        self.settings = text;
        self
    }

    pub(super) fn batch_size(mut self, events: usize) -> Setup {
        self.batch_size = events;
        self
    }

    pub(super) fn fail_fast(mut self) -> Setup {
        self.fail_fast = true;
        self
    }

    pub(super) fn limit(mut self, events: u64) -> Setup {
        self.limit = Some(events);
        self
    }

    pub(super) fn checkpoint(mut self) -> Setup {
        self.checkpoint = true;
        self
    }

    pub(super) fn pool(mut self, threads: usize) -> Setup {
        self.pool = Some(threads);
        self
    }

    pub(super) fn retry(mut self, retry: RetryPolicy) -> Setup {
        self.retry = retry;
        self
    }

    /// Makes one pass with the script's answers.
    pub(super) fn run(self, script: &Script) -> Ran {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let input = dir.path().join("events.ndjson");
        let mut text = self.lines.join("\n");
        text.push('\n');
        std::fs::write(&input, text).expect("the input written");
        let files = Files {
            input,
            rejects: dir.path().join("rejects.ndjson"),
            checkpoint: self.checkpoint.then(|| dir.path().join("checkpoint.json")),
        };
        // From before the checkpoint is created, which starts its clock.
        let start = Instant::now();
        let (mut pipeline, pass) = build(&self, &files, script).expect("the pipeline built");
        let end = pipeline.pass(&pass).expect("the pass made");
        let elapsed = start.elapsed();
        pipeline.dispatch.finish().expect("the transport finished");
        pipeline.report.sync_rejects().expect("the rejects written");
        let rejects = std::fs::read_to_string(&files.rejects)
            .expect("the rejects file")
            .lines()
            .map(Rejected::parse)
            .collect();
        let checkpoint = files.checkpoint.as_ref().map(|path| Saved {
            writes: pipeline.checkpoint.as_ref().expect("a checkpoint").writes(),
            state: serde_json::from_str(&std::fs::read_to_string(path).expect("the checkpoint"))
                .expect("a checkpoint segrelay wrote"),
        });
        Ran {
            end,
            calls: script.calls(),
            rejects,
            checkpoint,
            elapsed,
            pipeline,
            _dir: dir,
        }
    }
}

/// The files of a run, in its temporary folder.
struct Files {
    input: PathBuf,
    rejects: PathBuf,
    checkpoint: Option<PathBuf>,
}

/// The pipeline and the plain pass a `send` makes, as `Job::build` and
/// `Job::run` make them.
fn build(setup: &Setup, files: &Files, script: &Script) -> anyhow::Result<(Pipeline, Pass)> {
    let settings = Settings::parse(setup.settings, Path::new("segrelay.toml"), &|_| None)?;
    let target = settings.select(None)?;
    let destination = target.destination.clone();
    let sources = vec![Source::Path(files.input.clone())];
    let console = Console::new(Verbosity::Quiet, None);
    let checkpoint = match &files.checkpoint {
        Some(path) => Some(Checkpoint::open(path, &Identity::default(), &sources, false)?.0),
        None => None,
    };
    let mut report = Report::new(console.clone(), Some(&files.rejects), None)?;
    if checkpoint.is_some() {
        report.checkpointed();
    }
    let courier = Courier::new(
        destination.clone(),
        destination.secret().clone(),
        setup.retry.clone(),
        Throttle::new(None, target.max_events_per_minute),
        console,
    );
    let dispatch = match setup.pool {
        None => Dispatch::Inline(Box::new(script.transport())),
        Some(size) => {
            let make = script.clone();
            Dispatch::Pool {
                size,
                make: Box::new(move || Box::new(make.transport())),
                control: Box::new(script.transport()),
            }
        }
    };
    let options = Options {
        sources,
        max_line_bytes: 1 << 20,
        batch_size: setup.batch_size,
        fail_fast: setup.fail_fast,
        limit: setup.limit,
        filter: Filter::default(),
        unreadable: Arc::new(Unreadable::new(setup.fail_fast)),
        threads: 1,
        folders: None,
    };
    let pass = Pass {
        window: None,
        settles_skipped_and_rejected: true,
        rejects_after: destination
            .ingest_window()
            .and_then(|window| window.rejects_after(jiff::Timestamp::now())),
        follows_checkpoint: true,
        context: RequestContext::default(),
    };
    let pipeline = Pipeline {
        options,
        courier: Arc::new(courier),
        dispatch,
        report,
        checkpoint,
        gate: None,
        dedupe: Dedupe::default(),
    };
    Ok((pipeline, pass))
}

/// What a pass came to.
pub(super) struct Ran {
    pub end: PassEnd,
    /// The requests the transports received, in order.
    pub calls: Vec<Call>,
    /// The rejects file's lines, in order.
    pub rejects: Vec<Rejected>,
    pub checkpoint: Option<Saved>,
    /// How long the pass took, with the building of the pipeline.
    pub elapsed: Duration,
    pipeline: Pipeline,
    _dir: TempDir,
}

impl Ran {
    pub(super) fn summary(&self) -> &Summary {
        self.pipeline.report.summary()
    }

    /// The lines of the requests' events, request by request.
    pub(super) fn sent_lines(&self) -> Vec<Vec<u64>> {
        self.calls.iter().map(Call::lines).collect()
    }

    /// The rejects file's lines as (input line, outcome, reason).
    pub(super) fn rejected(&self) -> Vec<(u64, &str, &str)> {
        self.rejects
            .iter()
            .map(|r| (r.line, r.outcome.as_str(), r.reason.as_str()))
            .collect()
    }

    pub(super) fn checkpoint(&self) -> &Saved {
        self.checkpoint.as_ref().expect("a run with a checkpoint")
    }
}

/// A line of the rejects file.
#[derive(Debug)]
pub(super) struct Rejected {
    pub line: u64,
    pub outcome: String,
    pub reason: String,
    pub detail: String,
    /// The event's own `messageId`, kept beside the note.
    pub message_id: String,
}

impl Rejected {
    fn parse(text: &str) -> Rejected {
        let fields: Map<String, Value> = serde_json::from_str(text).expect("a JSON line");
        let note = &fields[NOTE_KEY];
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        Rejected {
            line: note["line"].as_u64().expect("a line number"),
            outcome: text(&note["outcome"]),
            reason: text(&note["reason"]),
            detail: text(&note["detail"]),
            message_id: fields.get("messageId").map(text).unwrap_or_default(),
        }
    }
}

/// The checkpoint as the run left it on disk, and how often the run wrote it.
pub(super) struct Saved {
    /// Counting the write that creates it.
    pub writes: u64,
    pub state: State,
}

impl Saved {
    /// The lines of the one input that the checkpoint calls settled.
    pub(super) fn settled_lines(&self) -> u64 {
        self.state.inputs[0].settled_lines
    }

    pub(super) fn done(&self) -> bool {
        self.state.inputs[0].done
    }
}
