//! A test's work directory: settings that point at the loopback test server,
//! an input file, and the paths of whatever a run writes beside them.

use std::path::PathBuf;

use serde_json::Value;

use super::server::{Api, KABLE_CLIENT_ID};

/// The variable the settings written by [`Job::new`] take the key from.
pub const KEY_VAR: &str = "SEGRELAY_TEST_KEY";

/// `api`'s destination table as the send and fault tests use it, for [`Job::new`]: Orb takes
/// the customer from `userId` and `value` as a property; Kable has the test server's client id.
pub fn destination_table(api: Api) -> String {
    match api {
        Api::Amberflo => "[destinations.amberflo]\n".to_owned(),
        Api::Orb => "[destinations.orb]\nexternal_customer_id_field = \"userId\"\n\
                     [destinations.orb.properties_mapping]\nvalue = \"value\"\n"
            .to_owned(),
        Api::Kable => format!("[destinations.kable]\nkable_client_id = \"{KABLE_CLIENT_ID}\"\n"),
    }
}

/// How a send ended: its exit code, what it said, and its summary.
pub struct Sent {
    pub code: i32,
    pub stderr: String,
    pub summary: Value,
}

pub struct Job {
    pub dir: tempfile::TempDir,
    pub settings: PathBuf,
    pub input: PathBuf,
}

impl Job {
    /// `segrelay.toml` holding `table` (a destination's table: its header line,
    /// then its keys and sub-tables) with the key from `$SEGRELAY_TEST_KEY` and
    /// `endpoint` added to the destination's own table, and `events.ndjson`
    /// holding `events`.
    pub fn new(table: &str, endpoint: &str, events: &str) -> Job {
        let (header, rest) = table.split_once('\n').expect("a table header line");
        Job::with_settings(
            &format!("{header}\napi_key = \"${{{KEY_VAR}}}\"\nendpoint = \"{endpoint}\"\n{rest}"),
            events,
        )
    }

    /// `segrelay.toml` holding `settings` as given, and `events.ndjson` holding `events`.
    pub fn with_settings(settings: &str, events: &str) -> Job {
        let dir = tempfile::tempdir().unwrap();
        let settings_path = dir.path().join("segrelay.toml");
        std::fs::write(&settings_path, settings).unwrap();
        let input = dir.path().join("events.ndjson");
        std::fs::write(&input, events).unwrap();
        Job {
            dir,
            settings: settings_path,
            input,
        }
    }

    /// `segrelay send -c segrelay.toml --summary summary.json --rejects
    /// rejects.ndjson` with `key` in `$SEGRELAY_TEST_KEY`: the caller adds its
    /// options and the input.
    pub fn send_command(&self, key: &str) -> std::process::Command {
        let mut command = super::segrelay_process();
        command
            .arg("send")
            .arg("-c")
            .arg(&self.settings)
            .arg("--summary")
            .arg(self.path("summary.json"))
            .arg("--rejects")
            .arg(self.path("rejects.ndjson"))
            .env(KEY_VAR, key);
        command
    }

    /// [`Job::send_command`] with `args` and the input, run to its end.
    pub fn sent(&self, key: &str, args: &[&str]) -> Sent {
        let output = self
            .send_command(key)
            .args(args)
            .arg(&self.input)
            .output()
            .unwrap();
        Sent {
            code: output.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            summary: self.summary(),
        }
    }

    /// A file in the work directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The summary a run wrote to `summary.json`.
    pub fn summary(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path("summary.json")).unwrap()).unwrap()
    }

    /// The checkpoint a run left in `checkpoint.json`, if any.
    pub fn checkpoint(&self) -> Option<Value> {
        std::fs::read_to_string(self.path("checkpoint.json"))
            .ok()
            .map(|t| serde_json::from_str(&t).unwrap())
    }

    /// The lines of `rejects.ndjson` (none when the file is missing).
    pub fn rejects(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("rejects.ndjson"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}
