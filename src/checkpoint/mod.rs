//! `--checkpoint`: how far each input is settled, so that a stopped run resumes
//! where it stopped, and what the run sends (its [`Identity`]), so that it
//! resumes only as the same run. Written atomically, when requests settle and
//! otherwise at most about once a second ([`saving`]).

mod identity;
mod kept_lengths;
mod saving;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::input::{Position, Source, WHOLE_INPUT};
use crate::report::Totals;
use crate::settings::SettingsError;
use crate::status::OutputFailed;
pub(crate) use identity::Identity;
use saving::Saving;
#[cfg(test)]
pub(crate) use saving::{AFTER_REQUESTS, INTERVAL};

/// The checkpoint's format. 2: the run's identity is recorded (1 had only the
/// destination's name, and resumed under any filters and settings).
const VERSION: u32 = 2;
/// How much of an input's start is hashed to notice it was replaced.
const HEAD_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct State {
    pub version: u32,
    /// What decides which events the run sends, and where.
    pub identity: Identity,
    pub inputs: Vec<InputState>,
    /// The counts of every event settled before the checkpoint, over all runs.
    pub totals: Totals,
    /// The length of the rejects file that goes with the settled events.
    pub rejects_length: Option<u64>,
    /// The lengths of the files the destination's gate keeps beside the
    /// checkpoint that a resume cuts back, each as `<suffix>_length`
    /// (`customers_length`), where they stand among the other keys.
    #[serde(flatten, with = "kept_lengths")]
    pub kept_lengths: BTreeMap<String, u64>,
    /// The pass over the inputs that `inputs` describes (a destination's
    /// backfill makes one per window).
    #[serde(default)]
    pub pass: usize,
    /// What the run's planner keeps to resume its passes (a backfill's
    /// windows), under keys it chooses. Written as keys of the file beside
    /// the others ([`OnDisk`]); read back as the file's keys this struct does
    /// not know.
    #[serde(skip)]
    pub planned: Map<String, Value>,
}

/// The checkpoint as written: the state's keys, then the planner's.
#[derive(Serialize)]
struct OnDisk<'a> {
    #[serde(flatten)]
    state: &'a State,
    #[serde(flatten)]
    planned: &'a Map<String, Value>,
}

impl State {
    /// Parses a checkpoint's text: the planner's keys are the ones the state's
    /// fields do not name (a flattened map would not do: numbers read as
    /// `arbitrary_precision` keeps them do not parse through it).
    fn parse(text: &str) -> serde_json::Result<State> {
        let mut state: State = serde_json::from_str(text)?;
        let known = match serde_json::to_value(&state)? {
            Value::Object(known) => known,
            _ => Map::new(),
        };
        let file: Map<String, Value> = serde_json::from_str(text)?;
        state.planned = file
            .into_iter()
            .filter(|(key, _)| !known.contains_key(key))
            .collect();
        Ok(state)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InputState {
    pub source: String,
    pub size: u64,
    pub modified: Option<String>,
    pub head_sha256: String,
    /// An S3 object's ETag as listed (its `head_sha256` is then empty): a
    /// changed object has another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Every event on these lines is settled.
    pub settled_lines: u64,
    pub done: bool,
}

pub(crate) struct Checkpoint {
    path: PathBuf,
    state: State,
    saving: Saving,
    /// Times written by this run, for `-v`.
    writes: u64,
}

/// Only the format's version, read first: an older format would not parse as this one.
#[derive(Deserialize)]
struct Format {
    version: u32,
}

/// How to start anew, said by every refusal.
const START_ANEW: &str = "start anew with --restart, or with a new checkpoint file (events already sent are sent again, and deduped by their idempotency keys)";

/// Inputs named on one side only, at most this many of each, in a refusal:
/// a year of an archive is thousands of files.
const NAMED_INPUTS: usize = 3;

/// What differs between the inputs a checkpoint was made for and these:
/// the files on one side only (a folder's new files, a changed
/// `--received-since/--received-until`, another glob), or their order.
fn input_change(saved: &[String], current: &[String]) -> String {
    let only = |these: &[String], other: &[String]| -> (usize, Vec<String>) {
        let other: std::collections::HashSet<&String> = other.iter().collect();
        let missing: Vec<&String> = these.iter().filter(|s| !other.contains(s)).collect();
        let named = missing
            .iter()
            .take(NAMED_INPUTS)
            .map(|s| format!("{s:?}"))
            .collect();
        (missing.len(), named)
    };
    let (gone, gone_named) = only(saved, current);
    let (new, new_named) = only(current, saved);
    let list = |count: usize, named: Vec<String>| {
        let more = count - named.len();
        match more {
            0 => named.join(", "),
            _ => format!("{} and {more} more", named.join(", ")),
        }
    };
    let mut parts = Vec::new();
    if new > 0 {
        parts.push(format!(
            "this run reads {} it did not: {}",
            crate::console::plural(new as u64, "input"),
            list(new, new_named)
        ));
    }
    if gone > 0 {
        parts.push(format!(
            "it read {} this run does not: {}",
            crate::console::plural(gone as u64, "input"),
            list(gone, gone_named)
        ));
    }
    if parts.is_empty() {
        parts.push("the same inputs in another order".to_owned());
    }
    format!("made for other inputs: {}", parts.join("; "))
}

impl Checkpoint {
    /// Opens the checkpoint for this run: the saved one when it was written by
    /// the same run (`identity`) over the same inputs, a new one when there is
    /// none (or `restart`). Anything else is refused, naming what differs.
    pub(crate) fn open(
        path: &Path,
        identity: &Identity,
        sources: &[Source],
        restart: bool,
    ) -> anyhow::Result<(Checkpoint, bool)> {
        let mut current = Vec::with_capacity(sources.len());
        for source in sources {
            current.push(match source {
                Source::Path(file) => identify(file)?,
                Source::S3(object) => identify_object(object),
                Source::Stdin => {
                    return Err(SettingsError(
                        "--checkpoint needs files: standard input cannot be resumed".into(),
                    )
                    .into());
                }
            });
        }
        let fresh = State {
            version: VERSION,
            identity: identity.clone(),
            inputs: current.clone(),
            totals: Totals::default(),
            rejects_length: None,
            kept_lengths: BTreeMap::new(),
            pass: 0,
            planned: Map::new(),
        };
        let saved = match std::fs::read_to_string(path) {
            Ok(text) if !restart => text,
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot read checkpoint {}", path.display())));
            }
            _ => {
                let mut checkpoint = Checkpoint::new(path, fresh);
                // Written at once: a run stopped before it settles a line is
                // still this job when resumed, and what it journaled (identify
                // writes) is honoured.
                checkpoint.write()?;
                return Ok((checkpoint, false));
            }
        };
        let not_ours = |e: serde_json::Error| {
            SettingsError(format!(
                "checkpoint {} is not one segrelay wrote ({e}); {START_ANEW}",
                path.display()
            ))
        };
        let refuse = |why: String| -> anyhow::Error {
            SettingsError(format!(
                "checkpoint {}: {why}; {START_ANEW}",
                path.display()
            ))
            .into()
        };
        let format: Format = serde_json::from_str(&saved).map_err(not_ours)?;
        if format.version < VERSION {
            return Err(refuse(format!(
                "written by an earlier segrelay (format {}), which did not record the filters \
                 and settings of its run, so it cannot be resumed safely",
                format.version
            )));
        }
        if format.version > VERSION {
            return Err(SettingsError(format!(
                "checkpoint {}: written by a later segrelay (format {}; this one reads format \
                 {VERSION}): resume it with that version, or {START_ANEW}",
                path.display(),
                format.version
            ))
            .into());
        }
        let state = State::parse(&saved).map_err(not_ours)?;
        let differences = state.identity.differences(identity);
        if !differences.is_empty() {
            return Err(SettingsError(format!(
                "checkpoint {} was written by a run that sent other events, or sent them \
                 elsewhere:\n{}\nresume with that run's options and settings, or {START_ANEW}",
                path.display(),
                differences
                    .iter()
                    .map(|d| format!("  {d}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ))
            .into());
        }
        let names =
            |inputs: &[InputState]| inputs.iter().map(|i| i.source.clone()).collect::<Vec<_>>();
        if names(&state.inputs) != names(&current) {
            return Err(refuse(input_change(
                &names(&state.inputs),
                &names(&current),
            )));
        }
        for (saved, now) in state.inputs.iter().zip(&current) {
            if (saved.size, &saved.modified, &saved.head_sha256, &saved.etag)
                != (now.size, &now.modified, &now.head_sha256, &now.etag)
            {
                return Err(refuse(format!(
                    "{} changed since the checkpoint was written",
                    now.source
                )));
            }
        }
        Ok((Checkpoint::new(path, state), true))
    }

    fn new(path: &Path, state: State) -> Checkpoint {
        Checkpoint {
            path: path.to_owned(),
            state,
            saving: Saving::new(saving::INTERVAL, Instant::now()),
            writes: 0,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    /// Lines to read past in each input.
    pub(crate) fn settled_lines(&self) -> Vec<u64> {
        self.state
            .inputs
            .iter()
            .map(|i| if i.done { WHOLE_INPUT } else { i.settled_lines })
            .collect()
    }

    /// Whether the checkpoint, having moved, is to be written now rather
    /// than later, `requests` having been made by the run so far: see [`saving`].
    pub(crate) fn due(&self, requests: u64) -> bool {
        self.saving.due(Instant::now(), requests)
    }

    /// The times this run wrote the checkpoint.
    pub(crate) fn writes(&self) -> u64 {
        self.writes
    }

    /// Everything up to `position` is settled (None: every input is); written
    /// at once, `requests` having been made by the run so far.
    pub(crate) fn advance(
        &mut self,
        position: Option<Position>,
        totals: Totals,
        rejects_length: Option<u64>,
        kept_lengths: &[(&str, u64)],
        requests: u64,
    ) -> anyhow::Result<()> {
        for (index, input) in self.state.inputs.iter_mut().enumerate() {
            match position {
                None => input.done = true,
                Some(p) if index < p.input => input.done = true,
                Some(p) if index == p.input => {
                    input.settled_lines = input.settled_lines.max(p.end_line)
                }
                Some(_) => {}
            }
        }
        self.state.totals = totals;
        self.state.rejects_length = rejects_length;
        self.state.kept_lengths = kept_lengths
            .iter()
            .map(|&(suffix, length)| (suffix.to_owned(), length))
            .collect();
        self.write()?;
        self.saving.written(Instant::now(), requests);
        Ok(())
    }

    /// The pass is done: the next one reads every input from the start.
    pub(crate) fn next_pass(&mut self) -> anyhow::Result<()> {
        self.state.pass += 1;
        for input in &mut self.state.inputs {
            input.settled_lines = 0;
            input.done = false;
        }
        self.write()
    }

    /// A value the planner kept under `key`, as last kept.
    pub(crate) fn planned(&self, key: &str) -> Option<&Value> {
        self.state.planned.get(key)
    }

    /// Keeps the planner's values under their keys, and writes the checkpoint.
    pub(crate) fn keep_planned(
        &mut self,
        values: impl IntoIterator<Item = (&'static str, Value)>,
    ) -> anyhow::Result<()> {
        for (key, value) in values {
            self.state.planned.insert(key.to_owned(), value);
        }
        self.write()
    }

    /// Temporary file, fsync, rename, fsync of the folder: a crash leaves the
    /// old checkpoint or the new one, never a torn one.
    fn write(&mut self) -> anyhow::Result<()> {
        let context = || OutputFailed(format!("cannot write checkpoint {}", self.path.display()));
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut text = serde_json::to_vec_pretty(&OnDisk {
            state: &self.state,
            planned: &self.state.planned,
        })?;
        text.push(b'\n');
        let mut file = File::create(&temporary).with_context(context)?;
        file.write_all(&text).with_context(context)?;
        file.sync_all().with_context(context)?;
        std::fs::rename(&temporary, &self.path).with_context(context)?;
        let folder = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        if let Ok(folder) = File::open(folder) {
            let _ = folder.sync_all();
        }
        self.writes += 1;
        Ok(())
    }
}

fn identify(path: &Path) -> anyhow::Result<InputState> {
    let context = || format!("cannot read {}", path.display());
    let metadata = std::fs::metadata(path).with_context(context)?;
    let modified = metadata
        .modified()
        .ok()
        .and_then(|m| jiff::Timestamp::try_from(m).ok())
        .map(|t| t.to_string());
    let mut head = Vec::new();
    File::open(path)
        .with_context(context)?
        .take(HEAD_BYTES)
        .read_to_end(&mut head)
        .with_context(context)?;
    let digest = Sha256::digest(&head);
    Ok(InputState {
        source: path.display().to_string(),
        size: metadata.len(),
        modified,
        head_sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
        etag: None,
        settled_lines: 0,
        done: false,
    })
}

/// An S3 object is known by its key, ETag and size as listed: read with
/// `If-Match` on that ETag, the bytes a resume reads are the ones the first
/// run read.
fn identify_object(object: &crate::input::s3::Object) -> InputState {
    InputState {
        source: object.label(),
        size: object.size,
        modified: None,
        head_sha256: String::new(),
        etag: Some(object.etag.clone()),
        settled_lines: 0,
        done: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a planner keeps is written as keys of the file beside the
    /// checkpoint's own, read back as the keys the state does not know, and
    /// nothing of the state's own ends up among them.
    #[test]
    fn a_planners_values_are_keys_of_the_file_and_come_back_as_kept() {
        let folder = tempfile::tempdir().unwrap();
        let input = folder.path().join("events.ndjson");
        std::fs::write(&input, "{}\n").unwrap();
        let path = folder.path().join("checkpoint.json");
        let sources = [Source::Path(input)];
        let identity = Identity::default();
        let (mut checkpoint, resumed) =
            Checkpoint::open(&path, &identity, &sources, false).unwrap();
        assert!(!resumed);
        assert!(checkpoint.state().planned.is_empty());
        checkpoint
            .keep_planned([
                (
                    "windows",
                    serde_json::json!([{"events": 18_446_744_073_709_551_615_u64}]),
                ),
                ("latest", serde_json::json!("2025-06-01T12:00:00Z")),
            ])
            .unwrap();
        checkpoint
            .advance(None, Totals::default(), Some(7), &[("customers", 3)], 1)
            .unwrap();

        let file: Map<String, Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(file["latest"], "2025-06-01T12:00:00Z");
        assert_eq!(file["rejects_length"], 7);
        let (checkpoint, resumed) = Checkpoint::open(&path, &identity, &sources, false).unwrap();
        assert!(resumed);
        let planned: Vec<&String> = checkpoint.state().planned.keys().collect();
        assert_eq!(planned, ["latest", "windows"]);
        assert_eq!(
            checkpoint.planned("windows").unwrap()[0]["events"].as_u64(),
            Some(u64::MAX)
        );
        assert_eq!(file["customers_length"], 3);
        assert_eq!(checkpoint.state().kept_lengths.get("customers"), Some(&3));
        assert_eq!(checkpoint.state().rejects_length, Some(7));
        assert!(checkpoint.state().inputs.iter().all(|i| i.done));
    }
}
