//! The TOML settings file: destinations by name, each table read and its
//! destination built once, and the one a run uses chosen.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::DestinationSettings;
use crate::settings::{SettingsError, TableReader};

#[derive(Debug)]
pub struct Settings {
    pub path: PathBuf,
    pub default_destination: Option<String>,
    pub destinations: Vec<DestinationSettings>,
}

fn from_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Where the settings file is: `-c`, else `$SEGRELAY_CONFIG`, else the first of
/// `./segrelay.toml` and the user's `segrelay/config.toml` that exists.
pub fn locate(flag: Option<&Path>) -> Result<PathBuf, SettingsError> {
    if let Some(path) = flag {
        return Ok(path.to_owned());
    }
    // Named explicitly, so a missing file is an error rather than a reason to look further.
    if let Some(path) = std::env::var_os("SEGRELAY_CONFIG").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let searched = search_path();
    if let Some(found) = searched.iter().find(|path| path.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = searched
        .iter()
        .map(|p| match p.is_relative() {
            true => format!("./{}", p.display()),
            false => p.display().to_string(),
        })
        .collect();
    Err(SettingsError(format!(
        "no settings file: none given with -c PATH or $SEGRELAY_CONFIG, and none at {}; \
         write one with `segrelay init`",
        looked.join(" or ")
    )))
}

/// The places searched, in order, when neither `-c` nor `$SEGRELAY_CONFIG` names the file.
fn search_path() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("segrelay.toml")];
    // The XDG base directory rule: a relative $XDG_CONFIG_HOME is ignored.
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".config"))
        });
    if let Some(config_home) = config_home {
        paths.push(config_home.join("segrelay").join("config.toml"));
    }
    paths
}

impl Settings {
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (write one with `segrelay init`)"
            } else {
                ""
            };
            SettingsError(format!(
                "cannot read settings file {}: {e}{hint}",
                path.display()
            ))
        })?;
        let settings = Settings::parse(&text, path, &from_env)?;
        settings.warn_if_readable_by_others();
        Ok(settings)
    }

    /// A key written in the settings file is only as safe as the file.
    fn warn_if_readable_by_others(&self) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let literal_key = self
                .destinations
                .iter()
                .any(|d| !d.destination.secret().from_environment());
            let mode = std::fs::metadata(&self.path)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            if literal_key && mode & 0o077 != 0 {
                crate::console::stderr_line(&format!(
                    "segrelay: warning: settings file {} holds an API key and is readable by others (mode {:o}): \
                     chmod 600 it, or read the key from the environment with \"${{VAR}}\"",
                    self.path.display(),
                    mode & 0o777
                ));
            }
        }
    }

    pub fn parse(
        text: &str,
        path: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let file = path.display().to_string();
        let table: Table = text.parse().map_err(|e: toml::de::Error| {
            SettingsError(format!(
                "settings file {file} is not valid TOML: {}",
                e.message().trim_end()
            ))
            .with_line(text, e.span())
        })?;
        let mut top = TableReader::new(table, &file, String::new(), lookup);
        let default_destination = top.optional_string("default_destination")?;
        let Some(destinations) = top.take("destinations") else {
            return Err(SettingsError(format!(
                "settings file {file} names no destination: add a [destinations.NAME] table"
            )));
        };
        let Value::Table(destinations) = destinations else {
            return Err(top.wrong_type("destinations", "a table", &destinations));
        };
        top.finish(["default_destination", "destinations"])?;

        let mut parsed = Vec::new();
        for (name, value) in destinations {
            let label = format!("destinations.{name}");
            let Value::Table(table) = value else {
                return Err(SettingsError(format!(
                    "settings file {file}: [{label}] must be a table, not {}",
                    value.type_str()
                )));
            };
            // Every table is checked, not only the one a run uses.
            let reader = TableReader::new(table, &file, label, lookup);
            parsed.push(DestinationSettings::read(name, reader)?);
        }
        if let Some(default) = &default_destination
            && !parsed.iter().any(|d| &d.name == default)
        {
            return Err(SettingsError(format!(
                "settings file {file}: default_destination \"{default}\" is not a destination (there are: {})",
                names(&parsed)
            )));
        }
        Ok(Settings {
            path: path.to_owned(),
            default_destination,
            destinations: parsed,
        })
    }

    /// The destination to use: the one named, else the default, else the only one.
    pub fn select(&self, name: Option<&str>) -> Result<&DestinationSettings, SettingsError> {
        let file = self.path.display();
        let wanted = name.or(self.default_destination.as_deref());
        match wanted {
            Some(wanted) => self
                .destinations
                .iter()
                .find(|d| d.name == wanted)
                .ok_or_else(|| {
                    SettingsError(format!(
                        "no destination \"{wanted}\" in {file} (there are: {})",
                        names(&self.destinations)
                    ))
                }),
            None if self.destinations.len() == 1 => Ok(&self.destinations[0]),
            None => Err(SettingsError(format!(
                "{file} names several destinations ({}): choose one with -d NAME (or $SEGRELAY_DESTINATION), or set default_destination",
                names(&self.destinations)
            ))),
        }
    }
}

fn names(destinations: &[DestinationSettings]) -> String {
    destinations
        .iter()
        .map(|d| d.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn parse_with(text: &str, env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::parse(text, Path::new("s.toml"), &|name| env.get(name).cloned())
    }

    fn error(text: &str) -> String {
        parse_with(text, &[]).unwrap_err().0
    }

    #[test]
    fn secrets_become_shell_references() {
        let s = parse_with(
            "[destinations.orb]\napi_key='${ORB_API_KEY}'\nexternal_customer_id_field='userId'",
            &[],
        )
        .unwrap();
        let key = s.destinations[0].destination.secret();
        assert_eq!(key.value(), None);
        assert_eq!(key.shell_reference().as_deref(), Some("$ORB_API_KEY"));
        assert!(
            key.require()
                .unwrap_err()
                .0
                .contains("ORB_API_KEY is not set")
        );
        let s = parse_with(
            "[destinations.orb]\napi_key='k-${A}x$'\nexternal_customer_id_field='userId'",
            &[("A", "1")],
        )
        .unwrap();
        let key = s.destinations[0].destination.secret();
        assert_eq!(key.value(), Some("k-1x$"));
        assert_eq!(key.shell_reference().as_deref(), Some("k-${A}x\\$"));
    }

    #[test]
    fn errors_name_the_file_table_and_key() {
        assert_eq!(
            error("[destinations.orb]\napi_key='k'"),
            "settings file s.toml: [destinations.orb] key \"external_customer_id_field\" is required"
        );
        assert!(
            error("[destinations.orb]\napi_key='k'\nexternal_customer_id_field='u'\ncolour=1")
                .contains("[destinations.orb] unknown key \"colour\"")
        );
        assert!(
            error("[destinations.orb]\napi_key=3")
                .contains("[destinations.orb] key \"api_key\" must be a string, not an integer")
        );
        assert!(
            error("[destinations.x]\ntype='stripe'\napi_key='k'")
                .contains("unknown destination type \"stripe\"")
        );
        assert!(
            error("[destinations.x]\napi_key='k'")
                .contains("[destinations.x] key \"type\" is required")
        );
        assert!(
            error("[destinations.kable]\napi_key='k'\nkable_client_id='${KCI}'")
                .contains("key \"kable_client_id\": environment variable KCI is not set")
        );
        assert!(error("x = [").contains("not valid TOML"));
        assert!(
            error(
                "default_destination='nope'\n[destinations.kable]\napi_key='k'\nkable_client_id='c'"
            )
            .contains("\"nope\" is not a destination")
        );
        assert!(error("").contains("names no destination"));
        assert!(error("[destinations.orb]\napi_key='k'\nexternal_customer_id_field='u'\n[destinations.orb.properties_mapping]\na=1").contains("key \"properties_mapping.a\" must be a string"));
    }

    #[test]
    fn plain_http_is_only_for_loopback() {
        let text = "[destinations.orb]\napi_key='k'\nexternal_customer_id_field='u'\nendpoint='http://proxy.internal/v1'\n";
        assert!(error(text).contains("plain http"));
        assert!(parse_with(&format!("{text}allow_insecure = true\n"), &[]).is_ok());
    }

    #[test]
    fn selects_the_named_the_default_or_the_only_destination() {
        let two = "[destinations.a]\ntype='kable'\napi_key='k'\nkable_client_id='c'\n[destinations.b]\ntype='kable'\napi_key='k'\nkable_client_id='c'\n";
        let s = parse_with(two, &[]).unwrap();
        assert_eq!(s.select(Some("b")).unwrap().name, "b");
        assert!(
            s.select(None)
                .unwrap_err()
                .0
                .contains("choose one with -d NAME")
        );
        assert!(
            s.select(Some("c"))
                .unwrap_err()
                .0
                .contains("no destination \"c\"")
        );
        let s = parse_with(&format!("default_destination='b'\n{two}"), &[]).unwrap();
        assert_eq!(s.select(None).unwrap().name, "b");
    }
}
