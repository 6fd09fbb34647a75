//! The files kept beside a checkpoint: the customers known to exist (cut back
//! with the checkpoint), and the journal of what Amberflo is known to hold
//! (never cut back, since those writes really happened).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::known::Known;
use crate::destination::gate::{Beside, EventAt};
use crate::status::OutputFailed;

/// The suffix of the file of customers known to exist, one a line, beside
/// the checkpoint, which saves its length (`customers_length`): a resume
/// cuts it back to that.
pub(super) const KNOWN: &str = "customers";
/// The suffix of the journal of the identifies Amberflo holds (customer and
/// input position), so that a resume never writes an older identify over a
/// newer one; never cut back, since those writes really happened. A resume
/// reads it; a job started anew starts it empty.
const JOURNAL: &str = "identified";

/// A journal line: Amberflo holds the customer's identifies through `at`.
#[derive(Serialize, Deserialize)]
struct Applied {
    customer: String,
    at: EventAt,
}

/// The files, open for appending.
pub(super) struct Kept {
    known: (PathBuf, File),
    journal: (PathBuf, File),
}

/// What the files said when opened.
pub(super) struct Opened {
    pub known: Known,
    /// Per customer, the last identify Amberflo holds.
    pub applied: HashMap<String, EventAt>,
}

impl Kept {
    pub(super) fn open(beside: &Beside) -> anyhow::Result<(Kept, Opened)> {
        let known_path = beside.path(KNOWN);
        let journal_path = beside.path(JOURNAL);
        let (known_file, lines) = open_lines(&known_path, beside.length(KNOWN).unwrap_or(0))?;
        let mut known = Known::default();
        for id in lines {
            known.insert(&serde_json::from_str::<String>(&id)?);
        }
        let kept = if beside.resumed() { u64::MAX } else { 0 };
        let (journal, lines) = open_lines(&journal_path, kept)?;
        let mut applied = HashMap::new();
        for line in lines {
            let line: Applied = serde_json::from_str(&line)
                .with_context(|| format!("{} is not one segrelay wrote", journal_path.display()))?;
            let last = applied.entry(line.customer).or_insert(line.at);
            *last = (*last).max(line.at);
        }
        let kept = Kept {
            known: (known_path, known_file),
            journal: (journal_path, journal),
        };
        Ok((kept, Opened { known, applied }))
    }

    /// A customer newly known to exist.
    pub(super) fn known(&mut self, customer_id: &str) -> anyhow::Result<()> {
        // As a JSON string, so that no id can break the one-a-line format.
        let line = format!("{}\n", serde_json::to_string(customer_id)?);
        append(&mut self.known, &line)
    }

    /// Amberflo holds the customer's identifies through `at`: journaled as
    /// soon as it is known, in one write.
    pub(super) fn applied(&mut self, customer_id: &str, at: EventAt) -> anyhow::Result<()> {
        let applied = Applied {
            customer: customer_id.to_owned(),
            at,
        };
        let line = format!("{}\n", serde_json::to_string(&applied)?);
        append(&mut self.journal, &line)
    }

    /// Makes the files durable, and says how long the customers file is.
    pub(super) fn sync(&mut self) -> anyhow::Result<u64> {
        let (path, journal) = &mut self.journal;
        journal
            .sync_data()
            .with_context(|| OutputFailed(format!("cannot write {}", path.display())))?;
        let (path, file) = &mut self.known;
        let context = || OutputFailed(format!("cannot write {}", path.display()));
        file.sync_data().with_context(context)?;
        file.stream_position().with_context(context)
    }
}

fn append((path, file): &mut (PathBuf, File), line: &str) -> anyhow::Result<()> {
    file.write_all(line.as_bytes())
        .with_context(|| OutputFailed(format!("cannot write {}", path.display())))
}

/// Opens a file of lines for appending, cut to `length` bytes, with the lines kept.
fn open_lines(path: &Path, length: u64) -> anyhow::Result<(File, Vec<String>)> {
    let context = || format!("cannot open {}", path.display());
    let mut handle = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(context)?;
    if length != u64::MAX {
        handle.set_len(length).with_context(context)?;
    }
    let lines = BufReader::new((&handle).take(length))
        .lines()
        .collect::<Result<Vec<_>, _>>()
        .with_context(context)?;
    handle.seek(SeekFrom::End(0)).with_context(context)?;
    Ok((handle, lines))
}
