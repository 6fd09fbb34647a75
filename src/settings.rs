//! The TOML settings file: destinations by name, `${VAR}` from the environment,
//! and errors that name the file, the table and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::destination::Kind;

/// A settings problem: always the user's to fix, and exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

#[derive(Debug)]
pub struct Settings {
    pub path: PathBuf,
    pub default_destination: Option<String>,
    pub destinations: Vec<DestinationSettings>,
}

/// One `[destinations.NAME]` table.
#[derive(Debug, Clone)]
pub struct DestinationSettings {
    pub name: String,
    pub kind: Kind,
    pub api_key: Secret,
    pub endpoint: Option<String>,
    /// `allow_insecure`: plain http to a host that is not this machine.
    pub allow_insecure: bool,
    /// The destination's own rate limit, which segrelay keeps under.
    pub max_events_per_minute: Option<u64>,
    /// The keys only this kind takes, read by the destination's own module.
    pub table: TableReader,
}

/// An API key: the text as written in the settings, and its value once `${VAR}`s are read.
#[derive(Clone)]
pub struct Secret {
    template: String,
    value: Result<String, String>,
    /// `destinations.NAME.api_key in FILE`, for messages.
    place: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// The key, or None when an environment variable it needs is not set.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref().ok()
    }

    /// The key, or the error a real send must stop with.
    pub fn require(&self) -> Result<&str, SettingsError> {
        self.value.as_deref().map_err(|var| {
            SettingsError(format!(
                "environment variable {var} is not set ({}); a dry run works without it",
                self.place
            ))
        })
    }

    /// The key as a shell expression when it comes from the environment
    /// (`$ORB_API_KEY`), so a printed command can be run without showing it.
    pub fn shell_reference(&self) -> Option<String> {
        if !self.template.contains("${") {
            return None;
        }
        let mut out = String::new();
        let mut rest = self.template.as_str();
        let mut pieces = Vec::new();
        while let Some((before, name, after)) = next_variable(rest) {
            pieces.push((before, name));
            rest = after;
        }
        for (i, (before, name)) in pieces.iter().enumerate() {
            out.push_str(&shell_escape_in_double_quotes(before));
            let next_is_ident = match pieces.get(i + 1) {
                Some((after, _)) => after.chars().next(),
                None => rest.chars().next(),
            }
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if next_is_ident {
                out.push_str(&format!("${{{name}}}"));
            } else {
                out.push('$');
                out.push_str(name);
            }
        }
        out.push_str(&shell_escape_in_double_quotes(rest));
        Some(out)
    }

    #[cfg(test)]
    pub fn literal(value: &str) -> Secret {
        Secret {
            template: value.into(),
            value: Ok(value.into()),
            place: "test".into(),
        }
    }
}

fn shell_escape_in_double_quotes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '$' | '`' | '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits `a${B}c` into `a`, `B`, `c`; None when there is no well-formed `${NAME}`.
fn next_variable(text: &str) -> Option<(&str, &str, &str)> {
    let mut search = 0;
    while let Some(found) = text[search..].find("${") {
        let start = search + found;
        let name_start = start + 2;
        if let Some(len) = text[name_start..].find('}') {
            let name = &text[name_start..name_start + len];
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                return Some((&text[..start], name, &text[name_start + len + 1..]));
            }
        }
        search = name_start;
    }
    None
}

/// Replaces every `${NAME}` with the variable's value; Err names the first one not set.
pub fn expand(template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some((before, name, after)) = next_variable(rest) {
        out.push_str(before);
        out.push_str(&lookup(name).ok_or_else(|| name.to_owned())?);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

fn from_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Where the settings file is: `-c`, else `$SEGRELAY_CONFIG`, else `./segrelay.toml`.
pub fn locate(flag: Option<&Path>) -> PathBuf {
    match flag {
        Some(path) => path.to_owned(),
        None => std::env::var_os("SEGRELAY_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("segrelay.toml")),
    }
}

impl Settings {
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (give one with -c PATH or $SEGRELAY_CONFIG; see samples/segrelay.toml)"
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
                .any(|d| !d.api_key.template.contains("${"));
            let mode = std::fs::metadata(&self.path)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            if literal_key && mode & 0o077 != 0 {
                eprintln!(
                    "segrelay: warning: settings file {} holds an API key and is readable by others (mode {:o}): \
                     chmod 600 it, or read the key from the environment with \"${{VAR}}\"",
                    self.path.display(),
                    mode & 0o777
                );
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
        top.finish(&["default_destination", "destinations"])?;

        let mut parsed = Vec::new();
        for (name, value) in destinations {
            let label = format!("destinations.{name}");
            let Value::Table(table) = value else {
                return Err(SettingsError(format!(
                    "settings file {file}: [{label}] must be a table, not {}",
                    value.type_str()
                )));
            };
            let destination =
                DestinationSettings::parse(name, TableReader::new(table, &file, label, lookup))?;
            // Every table is checked, not only the one a run uses.
            crate::destination::build(&destination)?;
            parsed.push(destination);
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
                "{file} names several destinations ({}): choose one with -d NAME, or set default_destination",
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

impl SettingsError {
    fn with_line(self, text: &str, span: Option<std::ops::Range<usize>>) -> SettingsError {
        match span {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                SettingsError(format!("{} (line {line})", self.0))
            }
            None => self,
        }
    }
}

/// A URL's host, without user, port or brackets.
pub fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if let Some(bracketed) = host.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    }
}

/// `http://127.0.0.1:8080/v1`, `http://localhost`, `http://[::1]`: traffic that never leaves the machine.
fn is_loopback(url: &str) -> bool {
    let host = url_host(url);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl DestinationSettings {
    /// The configured base URL, else the service's own.
    pub fn endpoint_or(&self, default: &str) -> String {
        self.endpoint.clone().unwrap_or_else(|| default.to_owned())
    }

    fn parse(name: String, mut table: TableReader) -> Result<DestinationSettings, SettingsError> {
        let kind = match table.optional_string("type")? {
            Some(kind) => Kind::from_name(&kind).ok_or_else(|| {
                table.error(format!(
                    "unknown destination type \"{kind}\" (known types: {})",
                    Kind::ALL.map(Kind::name).join(", ")
                ))
            })?,
            None => Kind::from_name(&name).ok_or_else(|| {
                table.error(format!(
                    "key \"type\" is required, since \"{name}\" is not a destination type ({})",
                    Kind::ALL.map(Kind::name).join(", ")
                ))
            })?,
        };
        let api_key = table.secret("api_key")?;
        let allow_insecure = table.optional_bool("allow_insecure")?.unwrap_or(false);
        let endpoint = table.optional_url("endpoint", allow_insecure)?;
        let max_events_per_minute = table.optional_positive("max_events_per_minute")?;
        Ok(DestinationSettings {
            name,
            kind,
            api_key,
            endpoint,
            allow_insecure,
            max_events_per_minute,
            table,
        })
    }
}

/// Reads keys out of one table, expanding `${VAR}`, and names the table and the
/// key in every error. `finish` refuses the keys nobody asked for.
#[derive(Debug, Clone)]
pub struct TableReader {
    table: Table,
    file: String,
    label: String,
    env: BTreeMap<String, Option<String>>,
}

impl TableReader {
    fn new(
        table: Table,
        file: &str,
        label: String,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> TableReader {
        // Read every variable the table mentions now, so later expansion needs no lookup.
        let mut env = BTreeMap::new();
        collect_variables(&Value::Table(table.clone()), &mut |name| {
            env.entry(name.to_owned()).or_insert_with(|| lookup(name));
        });
        TableReader {
            table,
            file: file.to_owned(),
            label,
            env,
        }
    }

    pub fn error(&self, message: String) -> SettingsError {
        if self.label.is_empty() {
            SettingsError(format!("settings file {}: {message}", self.file))
        } else {
            SettingsError(format!(
                "settings file {}: [{}] {message}",
                self.file, self.label
            ))
        }
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &Value) -> SettingsError {
        self.error(format!(
            "key \"{key}\" must be {expected}, not {}",
            article(found.type_str())
        ))
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        self.table.remove(key)
    }

    fn expand(&self, key: &str, text: &str) -> Result<String, SettingsError> {
        expand(text, &|name| self.env.get(name).cloned().flatten()).map_err(|var| {
            self.error(format!(
                "key \"{key}\": environment variable {var} is not set"
            ))
        })
    }

    pub fn optional_string(&mut self, key: &str) -> Result<Option<String>, SettingsError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => self.expand(key, &s).map(Some),
            Some(other) => Err(self.wrong_type(key, "a string", &other)),
        }
    }

    pub fn required_string(&mut self, key: &str) -> Result<String, SettingsError> {
        match self.optional_string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.error(format!("key \"{key}\" must not be empty"))),
            None => Err(self.error(format!("key \"{key}\" is required"))),
        }
    }

    /// A dot path into the event, such as `userId` or `properties.customerId`.
    pub fn field(&mut self, key: &str, default: &str) -> Result<String, SettingsError> {
        let field = self
            .optional_string(key)?
            .unwrap_or_else(|| default.to_owned());
        self.check_path(key, &field)?;
        Ok(field)
    }

    pub fn required_field(&mut self, key: &str) -> Result<String, SettingsError> {
        let field = self.required_string(key)?;
        self.check_path(key, &field)?;
        Ok(field)
    }

    fn check_path(&self, key: &str, path: &str) -> Result<(), SettingsError> {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(self.error(format!(
                "key \"{key}\": \"{path}\" is not a dot path such as properties.customerId"
            )));
        }
        Ok(())
    }

    /// A base URL, without its trailing `/`: http(s), and plain http only for
    /// this machine unless `allow_insecure`, since the API key goes with it.
    pub fn optional_url(
        &mut self,
        key: &str,
        allow_insecure: bool,
    ) -> Result<Option<String>, SettingsError> {
        let Some(url) = self.optional_string(key)? else {
            return Ok(None);
        };
        let url = url.trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(self.error(format!(
                "key \"{key}\": \"{url}\" is not an http:// or https:// URL"
            )));
        }
        if url.starts_with("http://") && !is_loopback(&url) && !allow_insecure {
            return Err(self.error(format!(
                "key \"{key}\": \"{url}\" is plain http, which would send the API key unencrypted; \
                 use https, or set allow_insecure = true"
            )));
        }
        Ok(Some(url))
    }

    pub fn optional_bool(&mut self, key: &str) -> Result<Option<bool>, SettingsError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(b)),
            Some(other) => Err(self.wrong_type(key, "true or false", &other)),
        }
    }

    pub fn optional_positive(&mut self, key: &str) -> Result<Option<u64>, SettingsError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Integer(n)) if n > 0 => Ok(Some(n as u64)),
            Some(Value::Integer(n)) => {
                Err(self.error(format!("key \"{key}\" must be more than 0, not {n}")))
            }
            Some(other) => Err(self.wrong_type(key, "a whole number", &other)),
        }
    }

    /// A table of strings to strings, such as `properties_mapping`; keys are dot paths.
    pub fn mapping(&mut self, key: &str) -> Result<Vec<(String, String)>, SettingsError> {
        let table = match self.take(key) {
            None => return Ok(Vec::new()),
            Some(Value::Table(table)) => table,
            Some(other) => return Err(self.wrong_type(key, "a table of strings", &other)),
        };
        let mut pairs = Vec::with_capacity(table.len());
        for (from, to) in table {
            let Value::String(to) = to else {
                return Err(self.error(format!(
                    "key \"{key}.{from}\" must be a string, not {}",
                    article(to.type_str())
                )));
            };
            self.check_path(&format!("{key}.{from}"), &from)?;
            if to.is_empty() {
                return Err(self.error(format!("key \"{key}.{from}\" must not be empty")));
            }
            pairs.push((from, self.expand(key, &to)?));
        }
        Ok(pairs)
    }

    /// A list of strings, such as `numeric_properties`; empty when absent.
    pub fn string_list(&mut self, key: &str) -> Result<Vec<String>, SettingsError> {
        let items = match self.take(key) {
            None => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => return Err(self.wrong_type(key, "a list of strings", &other)),
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => self.expand(key, &text),
                other => Err(self.error(format!(
                    "key \"{key}\" must hold only strings, not {}",
                    article(other.type_str())
                ))),
            })
            .collect()
    }

    /// An API key: a missing variable is kept, so a dry run works without keys.
    fn secret(&mut self, key: &str) -> Result<Secret, SettingsError> {
        let template = match self.take(key) {
            None => return Err(self.error(format!("key \"{key}\" is required"))),
            Some(Value::String(s)) => s,
            Some(other) => return Err(self.wrong_type(key, "a string", &other)),
        };
        if template.is_empty() {
            return Err(self.error(format!("key \"{key}\" must not be empty")));
        }
        let value = expand(&template, &|name| self.env.get(name).cloned().flatten());
        Ok(Secret {
            template,
            value,
            place: format!("{}.{key} in {}", self.label, self.file),
        })
    }

    /// Refuses every key not read, naming the keys this table takes.
    pub fn finish(self, known: &[&str]) -> Result<(), SettingsError> {
        if let Some(unknown) = self.table.keys().next() {
            return Err(self.error(format!(
                "unknown key \"{unknown}\" (this table takes: {})",
                known.join(", ")
            )));
        }
        Ok(())
    }
}

fn article(type_str: &str) -> String {
    match type_str {
        "integer" | "array" => format!("an {type_str}"),
        other => format!("a {other}"),
    }
}

fn collect_variables(value: &Value, found: &mut dyn FnMut(&str)) {
    match value {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some((_, name, after)) = next_variable(rest) {
                found(name);
                rest = after;
            }
        }
        Value::Table(t) => t.values().for_each(|v| collect_variables(v, found)),
        Value::Array(a) => a.iter().for_each(|v| collect_variables(v, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
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
    fn expands_variables() {
        let env = |n: &str| (n == "A").then(|| "x".to_owned());
        assert_eq!(expand("p${A}q$B${A}", &env), Ok("pxq$Bx".into()));
        assert_eq!(expand("${NOPE}", &env), Err("NOPE".into()));
        assert_eq!(expand("${not valid}", &env), Ok("${not valid}".into()));
    }

    #[test]
    fn secrets_become_shell_references() {
        let s = parse_with(
            "[destinations.orb]\napi_key='${ORB_API_KEY}'\nexternal_customer_id_field='userId'",
            &[],
        )
        .unwrap();
        let key = &s.destinations[0].api_key;
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
        assert_eq!(s.destinations[0].api_key.value(), Some("k-1x$"));
        assert_eq!(
            s.destinations[0].api_key.shell_reference().as_deref(),
            Some("k-${A}x\\$")
        );
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
        for url in [
            "http://127.0.0.1:9/v1",
            "http://localhost:8080",
            "http://[::1]:80",
            "http://127.9.9.9",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "http://10.0.0.1",
            "http://example.com",
            "http://127.0.0.1.example.com",
            "http://user@evil.com",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
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
