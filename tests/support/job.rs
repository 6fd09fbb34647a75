//! A test's work directory: settings that point at the loopback test server,
//! an input file, and the paths of whatever a run writes beside them.

use std::path::PathBuf;

pub struct Job {
    pub dir: tempfile::TempDir,
    pub settings: PathBuf,
    pub input: PathBuf,
}

impl Job {
    /// `segrelay.toml` holding `table` (a destination's table header and keys)
    /// followed by the key from `$SEGRELAY_TEST_KEY` and `endpoint`, and
    /// `events.ndjson` holding `events`.
    pub fn new(table: &str, endpoint: &str, events: &str) -> Job {
        let dir = tempfile::tempdir().unwrap();
        let settings = dir.path().join("segrelay.toml");
        std::fs::write(
            &settings,
            format!("{table}api_key = \"${{SEGRELAY_TEST_KEY}}\"\nendpoint = \"{endpoint}\"\n"),
        )
        .unwrap();
        let input = dir.path().join("events.ndjson");
        std::fs::write(&input, events).unwrap();
        Job {
            dir,
            settings,
            input,
        }
    }

    /// A file in the work directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}
