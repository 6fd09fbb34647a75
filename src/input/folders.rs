//! Folders among the inputs, replaced by the files under them, and Segment's
//! S3 layout: `segment-logs/<source-id>/<day>/<file>.gz`, `<day>` being the
//! start of a UTC day in epoch milliseconds.
//!
//! Segment names a day folder after the day it *received* the events in it,
//! not after their `timestamp`: a call just before midnight, a mobile outbox
//! sent days later, a historical import whose caller set its time months back
//! all land in a later folder than their time. Segment's corrected `timestamp`
//! is not after its `receivedAt`, so a folder received before `--since` can be
//! passed over (with a day of slack for bad clocks), but none on `--until`:
//! only `--received-until`, a risk the user takes by name, bounds that side.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;

use super::Source;
use crate::console::{Console, Verbosity};

/// Segment's day folders are a day of receipts each.
const DAY_MS: i64 = 86_400_000;
/// How far an event's time may be after Segment received it: the corrected
/// `timestamp` never is, but an event may carry only a device's clock
/// (`originalTimestamp`), and a clock may be wrong.
const CLOCK_SLACK_MS: i64 = DAY_MS;
/// The folder Segment writes its archive under, whatever prefix stands before it.
const ARCHIVE_FOLDER: &str = "segment-logs";

/// What the run wants of Segment's day folders, by the day they were received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayBounds {
    /// `--since`: a folder received more than a day before it holds no event
    /// at or after it.
    pub since: Option<Timestamp>,
    /// `--received-since`: folders wholly received before it are not read.
    pub received_since: Option<Timestamp>,
    /// `--received-until`: folders received from it on are not read, late
    /// events of the time range with them.
    pub received_until: Option<Timestamp>,
}

/// The flag that kept a day folder from being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkippedBy {
    Since,
    ReceivedSince,
    ReceivedUntil,
}

impl SkippedBy {
    pub fn flag(self) -> &'static str {
        match self {
            SkippedBy::Since => "--since",
            SkippedBy::ReceivedSince => "--received-since",
            SkippedBy::ReceivedUntil => "--received-until",
        }
    }

    fn why(self) -> &'static str {
        match self {
            SkippedBy::Since => "received more than a day before --since",
            SkippedBy::ReceivedSince => "received before --received-since",
            SkippedBy::ReceivedUntil => "received at or after --received-until",
        }
    }
}

impl DayBounds {
    /// Why the day folder received from `day` (epoch milliseconds) on is not
    /// read, or None to read it. `--since` comes first: a folder it skips
    /// costs no event, and the received bounds are then only blamed for what
    /// they alone kept out.
    pub fn skips(&self, day: i64) -> Option<SkippedBy> {
        let received_end = day + DAY_MS;
        let millis = Timestamp::as_millisecond;
        if self
            .since
            .is_some_and(|since| received_end + CLOCK_SLACK_MS <= millis(since))
        {
            return Some(SkippedBy::Since);
        }
        if self
            .received_since
            .is_some_and(|bound| received_end <= millis(bound))
        {
            return Some(SkippedBy::ReceivedSince);
        }
        if self
            .received_until
            .is_some_and(|bound| day >= millis(bound))
        {
            return Some(SkippedBy::ReceivedUntil);
        }
        None
    }

    fn bounds_reception(&self) -> bool {
        self.received_since.is_some() || self.received_until.is_some()
    }
}

/// What the folders among the inputs held: the JSON summary's `folders`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Folders {
    /// Files found under the folders, all read.
    pub files_read: u64,
    /// Files in Segment's layout outside a day folder (`dummy-object.txt`).
    pub files_ignored: u64,
    pub day_folders_read: u64,
    pub day_folders_skipped: u64,
    /// By the flag that skipped them.
    pub day_folders_skipped_by: BTreeMap<&'static str, u64>,
    /// For `-v`: each ignored file, each skipped day folder.
    #[serde(skip)]
    ignored: Vec<PathBuf>,
    #[serde(skip)]
    skipped: Vec<(PathBuf, i64, SkippedBy)>,
    /// Folders named on the command line that held no file to read and no
    /// day folder a flag skipped: said, so an empty input is not a quiet `read 0`.
    #[serde(skip)]
    empty: Vec<PathBuf>,
}

/// The inputs with their folders replaced by files, and what the folders held
/// (None when no input is a folder).
#[derive(Debug)]
pub struct Expanded {
    pub sources: Vec<Source>,
    pub folders: Option<Folders>,
}

/// Each folder among `sources` replaced by the files under it, recursively and
/// in path order; hidden files and folders are left out. A folder named on the
/// command line is walked even when it is a link; links to folders inside it
/// are not followed (as fd does), so no loops. In Segment's layout (see `place_of`) only the files of
/// day folders are read, and `bounds` may pass over whole day folders. An
/// `s3://bucket/prefix` is walked the same way over the bucket's keys (`super::s3`).
pub fn expand(
    sources: Vec<Source>,
    bounds: &DayBounds,
    s3: &super::s3::Options,
) -> Result<Expanded, String> {
    let mut files = Vec::with_capacity(sources.len());
    let mut folders: Option<Folders> = None;
    let mut stores = super::s3::Stores::new(s3);
    for source in sources {
        match source {
            Source::Path(path) if super::s3::is_url(&path) => {
                let walk = folders.get_or_insert_with(Folders::default);
                stores.expand(&path, bounds, walk, &mut files)?;
            }
            Source::Path(path) if path.is_dir() => {
                let walk = folders.get_or_insert_with(Folders::default);
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                walk.walk(&mut Local, &path, name.as_deref(), bounds, &mut files)?;
            }
            other => files.push(other),
        }
    }
    Ok(Expanded {
        sources: files,
        folders,
    })
}

/// What an entry of a folder is to a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Folder,
    /// A link to a folder: not followed (as fd does), so no loops.
    Passed,
}

/// One visible entry of a folder.
pub(super) struct Entry<N> {
    pub node: N,
    pub name: String,
    pub kind: Kind,
}

/// Folders and files to walk: the file system, or a bucket's keys split at `/`.
/// The walk (which folders are day folders, which are read) is the same for both.
pub(super) trait Tree {
    type Node;
    /// The visible entries of `folder`, in name order.
    fn entries(&mut self, folder: &Self::Node) -> Result<Vec<Entry<Self::Node>>, String>;
    /// How the user sees it (`-v`, warnings).
    fn label(&self, node: &Self::Node) -> PathBuf;
    /// A file found, as an input to read.
    fn source(&self, file: Self::Node) -> Source;
}

/// The local file system.
struct Local;

impl Tree for Local {
    type Node = PathBuf;

    fn entries(&mut self, folder: &PathBuf) -> Result<Vec<Entry<PathBuf>>, String> {
        let entries =
            entries(folder).map_err(|e| format!("cannot read folder {}: {e}", folder.display()))?;
        Ok(entries
            .into_iter()
            .map(|(path, name)| {
                let kind = if !path.is_dir() {
                    Kind::File
                } else if is_walked_folder(&path) {
                    Kind::Folder
                } else {
                    Kind::Passed
                };
                Entry {
                    node: path,
                    name,
                    kind,
                }
            })
            .collect())
    }

    fn label(&self, node: &PathBuf) -> PathBuf {
        node.clone()
    }

    fn source(&self, file: PathBuf) -> Source {
        Source::Path(file)
    }
}

/// Where a folder stands, which decides which of its files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A folder of event files: all of them are read.
    Plain,
    /// In Segment's layout, outside a day folder: only day folders are read.
    Archive,
    /// In a day folder: every file is an archive object.
    Day,
}

/// A folder is in Segment's layout when it is named `segment-logs`, holds a
/// day folder (a `<source-id>/` folder), or holds a folder that holds one (a
/// `segment-logs/` folder under another name). Anything else is a plain folder.
fn place_of<T: Tree>(tree: &mut T, folder: &T::Node, name: Option<&str>) -> Place {
    if name == Some(ARCHIVE_FOLDER) {
        return Place::Archive;
    }
    let inside = subfolders(tree, folder);
    let holds_day =
        |entries: &[Entry<T::Node>]| entries.iter().any(|e| day_start(&e.name).is_some());
    let archive = holds_day(&inside)
        || inside
            .iter()
            .any(|entry| holds_day(&subfolders(tree, &entry.node)));
    match archive {
        true => Place::Archive,
        false => Place::Plain,
    }
}

/// The folders in `folder` that a walk would enter; none when it cannot be
/// read (the walk itself then says why).
fn subfolders<T: Tree>(tree: &mut T, folder: &T::Node) -> Vec<Entry<T::Node>> {
    tree.entries(folder)
        .unwrap_or_default()
        .into_iter()
        .filter(|entry| entry.kind == Kind::Folder)
        .collect()
}

/// A folder, not a link to one: links are not followed (as fd does), so no loops.
fn is_walked_folder(path: &Path) -> bool {
    path.is_dir() && !path.symlink_metadata().is_ok_and(|m| m.is_symlink())
}

/// The visible entries of `folder`, in path order, with their names.
fn entries(folder: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let mut paths = std::fs::read_dir(folder)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<io::Result<Vec<PathBuf>>>()?;
    paths.sort();
    Ok(paths
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            (!name.starts_with('.')).then_some((path, name))
        })
        .collect())
}

/// The day a folder named by 13 digits, the start of a UTC day in epoch
/// milliseconds, was received.
fn day_start(name: &str) -> Option<i64> {
    if name.len() != 13 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms: i64 = name.parse().ok()?;
    (ms % DAY_MS == 0).then_some(ms)
}

impl Folders {
    /// Walks a folder named on the command line (`name`: its last part),
    /// adding the files to read to `files`.
    pub(super) fn walk<T: Tree>(
        &mut self,
        tree: &mut T,
        root: &T::Node,
        name: Option<&str>,
        bounds: &DayBounds,
        files: &mut Vec<Source>,
    ) -> Result<(), String> {
        let before = (files.len(), self.day_folders_skipped);
        match name.and_then(day_start) {
            Some(day) => self.day_folder(tree, root, day, bounds, files)?,
            None => {
                let place = place_of(tree, root, name);
                self.folder(tree, root, place, bounds, files)?
            }
        }
        if (files.len(), self.day_folders_skipped) == before {
            self.empty.push(tree.label(root));
        }
        Ok(())
    }

    fn folder<T: Tree>(
        &mut self,
        tree: &mut T,
        folder: &T::Node,
        place: Place,
        bounds: &DayBounds,
        files: &mut Vec<Source>,
    ) -> Result<(), String> {
        for entry in tree.entries(folder)? {
            match (entry.kind, place) {
                (Kind::File, Place::Archive) => {
                    self.files_ignored += 1;
                    self.ignored.push(tree.label(&entry.node));
                }
                (Kind::File, Place::Plain | Place::Day) => {
                    self.files_read += 1;
                    files.push(tree.source(entry.node));
                }
                (Kind::Passed, _) => {}
                (Kind::Folder, _) => {
                    let path = &entry.node;
                    match (place, day_start(&entry.name)) {
                        (Place::Archive, Some(day)) => {
                            self.day_folder(tree, path, day, bounds, files)?
                        }
                        (Place::Plain, _) => {
                            let inner = place_of(tree, path, Some(&entry.name));
                            self.folder(tree, path, inner, bounds, files)?
                        }
                        (Place::Archive, None) | (Place::Day, _) => {
                            self.folder(tree, path, place, bounds, files)?
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn day_folder<T: Tree>(
        &mut self,
        tree: &mut T,
        folder: &T::Node,
        day: i64,
        bounds: &DayBounds,
        files: &mut Vec<Source>,
    ) -> Result<(), String> {
        match bounds.skips(day) {
            Some(by) => {
                self.day_folders_skipped += 1;
                *self.day_folders_skipped_by.entry(by.flag()).or_default() += 1;
                self.skipped.push((tree.label(folder), day, by));
                Ok(())
            }
            None => {
                self.day_folders_read += 1;
                self.folder(tree, folder, Place::Day, bounds, files)
            }
        }
    }

    /// The line said on standard error (unless quiet); with `-v`, each ignored
    /// file and each skipped day folder before it.
    pub(crate) fn tell(&self, console: &Console) {
        let verbose = console.verbosity() == Verbosity::Verbose;
        if verbose {
            for path in &self.ignored {
                console.say(&format!(
                    "segrelay: ignored {}: not in a day folder of Segment's layout",
                    path.display()
                ));
            }
            for (path, day, by) in &self.skipped {
                console.say(&format!(
                    "segrelay: skipped day folder {} ({}): {}",
                    path.display(),
                    day_text(*day),
                    by.why()
                ));
            }
        }
        if console.verbosity() > Verbosity::Quiet {
            console.say(&self.line(verbose));
        }
    }

    /// `segrelay: folders: 7 files read, 1 ignored (outside day folders);
    /// day folders: 6 read, 2 skipped (2 by --since)`.
    fn line(&self, verbose: bool) -> String {
        let mut line = format!(
            "segrelay: folders: {} read",
            crate::console::plural(self.files_read, "file")
        );
        if self.files_ignored > 0 {
            line.push_str(&format!(
                ", {} ignored (outside day folders{})",
                self.files_ignored,
                if verbose { "" } else { "; -v lists them" }
            ));
        }
        if self.day_folders_read + self.day_folders_skipped > 0 {
            line.push_str(&format!(
                "; day folders: {} read, {} skipped",
                self.day_folders_read, self.day_folders_skipped
            ));
        }
        if !self.day_folders_skipped_by.is_empty() {
            let by: Vec<String> = self
                .day_folders_skipped_by
                .iter()
                .map(|(flag, n)| format!("{n} by {flag}"))
                .collect();
            line.push_str(&format!(" ({})", by.join(", ")));
        }
        line
    }
}

/// What the user should know before the run: the folders named on the command
/// line that held nothing to read, the events `--received-since` and
/// `--received-until` may have kept out, or that they bounded nothing.
pub fn warnings(folders: Option<&Folders>, bounds: &DayBounds) -> Vec<String> {
    let mut warnings: Vec<String> = folders
        .map_or(&[][..], |f| &f.empty[..])
        .iter()
        .map(|path| {
            format!(
                "{}: no event file in this folder, so it gives no event (hidden files and \
                 links to folders in it are passed over; in Segment's layout, so are files \
                 outside day folders)",
                path.display()
            )
        })
        .collect();
    if !bounds.bounds_reception() {
        return warnings;
    }
    let days = folders.map_or(0, |f| f.day_folders_read + f.day_folders_skipped);
    if days == 0 {
        warnings.push(
            "--received-since and --received-until bound Segment's day folders \
             (segment-logs/<source-id>/<day>/), and no folder among the inputs has any: \
             they skipped nothing"
                .to_owned(),
        );
        return warnings;
    }
    let skipped = |by: SkippedBy| {
        folders
            .and_then(|f| f.day_folders_skipped_by.get(by.flag()).copied())
            .unwrap_or(0)
    };
    if let Some(bound) = bounds.received_since {
        let n = skipped(SkippedBy::ReceivedSince);
        if n > 0 {
            warnings.push(format!(
                "--received-since {bound} skipped {}: the events Segment received before it \
                 are not read, whatever their time",
                crate::console::plural(n, "day folder")
            ));
        }
    }
    if let Some(bound) = bounds.received_until {
        let n = skipped(SkippedBy::ReceivedUntil);
        if n > 0 {
            warnings.push(format!(
                "--received-until {bound} skipped {}: events that reached Segment from then on \
                 are not read, even those timed earlier (calls just before midnight, mobile \
                 outboxes sent late, historical imports)",
                crate::console::plural(n, "day folder")
            ));
        }
    }
    warnings
}

/// `2025-03-31`, the UTC day a folder was received.
fn day_text(day: i64) -> String {
    Timestamp::from_millisecond(day)
        .map_or_else(|_| day.to_string(), |t| t.strftime("%Y-%m-%d").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        crate::input::filter::parse_bound(text).unwrap()
    }

    fn day(text: &str) -> i64 {
        at(text).as_millisecond()
    }

    #[test]
    fn day_folders_are_utc_midnights_in_milliseconds() {
        assert_eq!(day_start("1743379200000"), Some(day("2025-03-31")));
        assert_eq!(day_start("1743379200001"), None, "not a midnight");
        assert_eq!(day_start("174337920000"), None, "12 digits");
        assert_eq!(day_start("17433792000x0"), None);
    }

    #[test]
    fn since_skips_only_folders_received_more_than_a_day_before_it() {
        let bounds = DayBounds {
            since: Some(at("2025-03-31")),
            ..DayBounds::default()
        };
        // Received on the 29th: its events are timed before the 30th (bar a
        // clock a day wrong), so none is at or after the 31st.
        assert_eq!(bounds.skips(day("2025-03-29")), Some(SkippedBy::Since));
        // Received on the 30th: a clock running ahead may time one on the 31st.
        assert_eq!(bounds.skips(day("2025-03-30")), None);
        assert_eq!(bounds.skips(day("2025-03-31")), None);
        // A time that is not midnight: receipts of the 29th, a day fast, reach
        // the end of the 30th, past it.
        let bounds = DayBounds {
            since: Some(at("2025-03-30T23:00:00Z")),
            ..DayBounds::default()
        };
        assert_eq!(bounds.skips(day("2025-03-29")), None);
        assert_eq!(bounds.skips(day("2025-03-28")), Some(SkippedBy::Since));
    }

    #[test]
    fn nothing_is_skipped_on_the_late_side_without_received_until() {
        let bounds = DayBounds {
            since: Some(at("2025-03-31")),
            ..DayBounds::default()
        };
        // Late events: the next day, days later, months later (an import).
        for received in ["2025-04-01", "2025-04-04", "2025-07-15", "2030-01-01"] {
            assert_eq!(bounds.skips(day(received)), None, "{received}");
        }
    }

    #[test]
    fn received_bounds_skip_by_the_day_received() {
        let bounds = DayBounds {
            since: None,
            received_since: Some(at("2025-04-01T12:00:00Z")),
            received_until: Some(at("2025-04-03T12:00:00Z")),
        };
        let skips = |d| bounds.skips(day(d));
        assert_eq!(skips("2025-03-31"), Some(SkippedBy::ReceivedSince));
        // Straddling either bound: some of its receipts are inside, it is read.
        assert_eq!(skips("2025-04-01"), None);
        assert_eq!(skips("2025-04-03"), None);
        assert_eq!(skips("2025-04-04"), Some(SkippedBy::ReceivedUntil));
        // --since is blamed first: a folder it skips costs no event of the range.
        let bounds = DayBounds {
            since: Some(at("2025-04-05")),
            ..bounds
        };
        assert_eq!(bounds.skips(day("2025-03-31")), Some(SkippedBy::Since));
    }

    fn tree(paths: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for path in paths {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "{}\n").unwrap();
        }
        dir
    }

    /// The files `expand` gives for `given` (relative to `dir`), relative again.
    fn files_of(dir: &Path, given: &str, bounds: &DayBounds) -> (Vec<String>, Folders) {
        let expanded = expand(
            vec![Source::Path(dir.join(given))],
            bounds,
            &crate::input::s3::Options::default(),
        )
        .unwrap();
        let files = expanded
            .sources
            .iter()
            .map(|s| match s {
                Source::Path(p) => p.strip_prefix(dir).unwrap().display().to_string(),
                other => other.label(),
            })
            .collect();
        (files, expanded.folders.unwrap())
    }

    #[test]
    fn in_segments_layout_only_day_folders_are_read() {
        let dir = tree(&[
            "s3/segment-logs/dummy-object.txt",
            "s3/segment-logs/src1/1743379200000/a.gz",
            "s3/segment-logs/src1/1743379200000/b.gz",
            "s3/segment-logs/src1/notes.txt",
            "s3/segment-logs/src1/tmp/c.gz",
            "s3/segment-logs/src2/1743465600000/d.gz",
            "s3/readme.ndjson",
        ]);
        let none = DayBounds::default();
        let day_files = [
            "s3/segment-logs/src1/1743379200000/a.gz",
            "s3/segment-logs/src1/1743379200000/b.gz",
            "s3/segment-logs/src2/1743465600000/d.gz",
        ];
        // The folder above segment-logs is plain: its own files are read.
        let (files, folders) = files_of(dir.path(), "s3", &none);
        let mut expected = vec!["s3/readme.ndjson"];
        expected.extend(day_files);
        assert_eq!(files, expected);
        assert_eq!(
            (folders.files_read, folders.files_ignored),
            (4, 3),
            "dummy-object.txt, notes.txt and tmp/c.gz are ignored"
        );
        assert_eq!(files_of(dir.path(), "s3/segment-logs", &none).0, day_files);
        // A source folder, and a day folder, given by themselves.
        assert_eq!(
            files_of(dir.path(), "s3/segment-logs/src1", &none).0,
            day_files[..2]
        );
        assert_eq!(
            files_of(dir.path(), "s3/segment-logs/src1/1743379200000", &none).0,
            day_files[..2]
        );
    }

    #[test]
    fn a_copy_of_segment_logs_under_another_name_is_recognised() {
        let dir = tree(&["copy/dummy-object.txt", "copy/src1/1743379200000/a.gz"]);
        let (files, folders) = files_of(dir.path(), "copy", &DayBounds::default());
        assert_eq!(files, ["copy/src1/1743379200000/a.gz"]);
        assert_eq!(folders.files_ignored, 1);
    }

    #[test]
    fn a_plain_folder_is_read_whole() {
        let dir = tree(&[
            "logs/a.ndjson",
            "logs/2025/03/b.gz",
            "logs/notes.txt",
            "logs/.hidden",
        ]);
        let (files, folders) = files_of(dir.path(), "logs", &DayBounds::default());
        assert_eq!(
            files,
            ["logs/2025/03/b.gz", "logs/a.ndjson", "logs/notes.txt"]
        );
        assert_eq!(
            (
                folders.files_read,
                folders.files_ignored,
                folders.day_folders_read
            ),
            (3, 0, 0)
        );
    }

    #[test]
    fn skipped_day_folders_are_counted_by_flag() {
        let dir = tree(&[
            "segment-logs/src1/1743206400000/a.gz",
            "segment-logs/src1/1743292800000/b.gz",
            "segment-logs/src1/1743724800000/c.gz",
        ]);
        let bounds = DayBounds {
            since: Some(at("2025-03-31")),
            received_since: None,
            received_until: Some(at("2025-04-02")),
        };
        let (files, folders) = files_of(dir.path(), "segment-logs", &bounds);
        assert_eq!(files, ["segment-logs/src1/1743292800000/b.gz"]);
        assert_eq!(
            (folders.day_folders_read, folders.day_folders_skipped),
            (1, 2)
        );
        let by: Vec<(&str, u64)> = folders.day_folders_skipped_by.clone().into_iter().collect();
        assert_eq!(by, [("--received-until", 1), ("--since", 1)]);
        assert_eq!(
            folders.line(false),
            "segrelay: folders: 1 file read; day folders: 1 read, 2 skipped \
             (1 by --received-until, 1 by --since)"
        );
        let warnings = warnings(Some(&folders), &bounds);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("--received-until 2025-04-02T00:00:00Z skipped 1 day folder:"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_folder_given_that_yields_no_file_is_said_unless_a_flag_skipped_its_days() {
        let dir = tree(&[
            "hidden/.a.ndjson",
            "layout/segment-logs/dummy-object.txt",
            "days/src1/1743206400000/a.gz",
            "full/a.ndjson",
        ]);
        let since = DayBounds {
            since: Some(at("2025-04-05")),
            ..DayBounds::default()
        };
        let empty_of =
            |given: &str, bounds: &DayBounds| files_of(dir.path(), given, bounds).1.empty;
        assert_eq!(empty_of("hidden", &since), [dir.path().join("hidden")]);
        assert_eq!(
            empty_of("layout/segment-logs", &since),
            [dir.path().join("layout/segment-logs")]
        );
        assert!(empty_of("full", &since).is_empty());
        // Its one day folder skipped by --since: the folders line says so, not a warning.
        assert!(empty_of("days", &since).is_empty());
        let (_, folders) = files_of(dir.path(), "hidden", &DayBounds::default());
        let said = warnings(Some(&folders), &DayBounds::default());
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].contains("hidden: no event file in this folder"),
            "{said:?}"
        );
    }

    #[test]
    fn a_received_bound_without_day_folders_is_said_to_bound_nothing() {
        let bounds = DayBounds {
            received_until: Some(at("2025-04-02")),
            ..DayBounds::default()
        };
        let warnings = warnings(None, &bounds);
        assert!(warnings[0].contains("skipped nothing"), "{warnings:?}");
        assert!(super::warnings(None, &DayBounds::default()).is_empty());
    }
}
