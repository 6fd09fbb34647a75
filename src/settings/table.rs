//! One settings table: its keys read by the table of settings that describes
//! them, `${VAR}` expanded, API keys kept secret, and errors that name the
//! file, the table and the key.

use std::collections::BTreeMap;

use toml::{Table, Value};
use ureq::http::Uri;

use crate::settings::setting::{AnySetting, Setting, SettingKind, kinds};

/// A settings problem: always the user's to fix, and exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

impl SettingsError {
    pub(crate) fn with_line(
        self,
        text: &str,
        span: Option<std::ops::Range<usize>>,
    ) -> SettingsError {
        match span {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                SettingsError(format!("{} (line {line})", self.0))
            }
            None => self,
        }
    }
}

/// What `segrelay init` writes for a required setting it cannot guess; a
/// value the user has not replaced yet, refused wherever it is read.
pub(crate) const PLACEHOLDER: &str = "REPLACE_ME";

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

    /// Where the key comes from, for a message that asks to check it (never the
    /// key): `destinations.orb.api_key in segrelay.toml (from $ORB_API_KEY)`.
    pub fn origin(&self) -> String {
        let mut variables = Vec::new();
        let mut rest = self.template.as_str();
        while let Some((_, name, after)) = next_variable(rest) {
            variables.push(format!("${name}"));
            rest = after;
        }
        match variables.is_empty() {
            true => self.place.clone(),
            false => format!("{} (from {})", self.place, variables.join(", ")),
        }
    }

    /// Whether the key is read from the environment rather than written in the file.
    pub fn from_environment(&self) -> bool {
        self.template.contains("${")
    }

    /// The key as a shell expression when it comes from the environment
    /// (`$ORB_API_KEY`), so a printed command can be run without showing it.
    pub fn shell_reference(&self) -> Option<String> {
        if !self.from_environment() {
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
pub(crate) fn expand(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
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
    pub(crate) fn new(
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

    pub(crate) fn wrong_type(&self, key: &str, expected: &str, found: &Value) -> SettingsError {
        self.error(format!(
            "key \"{key}\" must be {expected}, not {}",
            article(found.type_str())
        ))
    }

    pub(crate) fn take(&mut self, key: &str) -> Option<Value> {
        self.table.remove(key)
    }

    fn expand(&self, key: &str, text: &str) -> Result<String, SettingsError> {
        expand(text, &|name| self.env.get(name).cloned().flatten()).map_err(|var| {
            self.error(format!(
                "key \"{key}\": environment variable {var} is not set"
            ))
        })
    }

    /// A string key outside any settings table (`default_destination`).
    pub(crate) fn optional_string(&mut self, key: &str) -> Result<Option<String>, SettingsError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => self.expand(key, &s).map(Some),
            Some(other) => Err(self.wrong_type(key, "a string", &other)),
        }
    }

    /// A setting's value as written; None when it is absent and not required.
    fn value(&mut self, setting: &AnySetting) -> Result<Option<Value>, SettingsError> {
        let key = setting.key;
        let Some(value) = self.take(key) else {
            if setting.required {
                return Err(self.missing(key));
            }
            return Ok(None);
        };
        if value.as_str() == Some(PLACEHOLDER) {
            return Err(self.error(format!(
                "key \"{key}\" is still \"{PLACEHOLDER}\", the placeholder segrelay init wrote: set it ({})",
                setting.help
            )));
        }
        Ok(Some(value))
    }

    /// The error for a required key the table lacks.
    fn missing(&self, key: &str) -> SettingsError {
        let misspelt = crate::input::filter::closest(key, self.table.keys().map(String::as_str));
        self.error(match misspelt {
            Some(unknown) => format!(
                "key \"{key}\" is required; unknown key \"{unknown}\" looks like a misspelling of it"
            ),
            None => format!("key \"{key}\" is required"),
        })
    }

    /// A string setting (text, a URL, a dot path), `${VAR}`s expanded.
    fn text(&mut self, setting: &AnySetting) -> Result<Option<String>, SettingsError> {
        let key = setting.key;
        match self.value(setting)? {
            None => Ok(None),
            Some(Value::String(s)) => {
                let text = self.expand(key, &s)?;
                if setting.required && text.is_empty() {
                    return Err(self.error(format!("key \"{key}\" must not be empty")));
                }
                Ok(Some(text))
            }
            Some(other) => Err(self.wrong_type(key, setting.kind.expected(), &other)),
        }
    }

    /// A text setting.
    pub fn string(
        &mut self,
        setting: &Setting<kinds::Text>,
    ) -> Result<Option<String>, SettingsError> {
        self.text(&setting.any())
    }

    /// A required text setting.
    pub fn required_string(
        &mut self,
        setting: &Setting<kinds::Text>,
    ) -> Result<String, SettingsError> {
        debug_assert!(setting.required, "{} is required", setting.key);
        self.text(&setting.any())?
            .ok_or_else(|| self.missing(setting.key))
    }

    /// A dot path into the event: the one given, else the setting's default.
    pub fn field(&mut self, setting: &Setting<kinds::Field>) -> Result<String, SettingsError> {
        let field = match self.text(&setting.any())? {
            Some(field) => field,
            None => setting.default.unwrap_or_default().to_owned(),
        };
        if field.is_empty() || field.split('.').any(str::is_empty) {
            return Err(self.error(format!(
                "key \"{}\": \"{field}\" is not a dot path such as properties.customerId",
                setting.key
            )));
        }
        Ok(field)
    }

    /// Dot paths into the event, tried in order: the ones given (one or a
    /// list, at least one), else the setting's default.
    pub fn fields(
        &mut self,
        setting: &Setting<kinds::Fields>,
    ) -> Result<Vec<String>, SettingsError> {
        let key = setting.key;
        let fields = match self.value(&setting.any())? {
            None => vec![setting.default.unwrap_or_default().to_owned()],
            Some(Value::Array(items)) => self.strings(key, items)?,
            Some(Value::String(s)) => vec![self.expand(key, &s)?],
            Some(other) => {
                return Err(self.wrong_type(key, SettingKind::Fields.expected(), &other));
            }
        };
        if fields.is_empty() {
            return Err(self.error(format!(
                "key \"{key}\" must name at least one dot path, such as \"userId\""
            )));
        }
        for field in &fields {
            if field.is_empty() || field.split('.').any(str::is_empty) {
                return Err(self.error(format!(
                    "key \"{key}\": \"{field}\" is not a dot path such as properties.customerId"
                )));
            }
        }
        Ok(fields)
    }

    /// A base URL, without its trailing `/`: http(s), and plain http only for
    /// this machine unless `allow_insecure`, since the API key goes with it.
    pub fn url(
        &mut self,
        setting: &Setting<kinds::Url>,
        allow_insecure: bool,
    ) -> Result<Option<String>, SettingsError> {
        let Some(url) = self.text(&setting.any())? else {
            return Ok(None);
        };
        let key = setting.key;
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

    pub fn bool(&mut self, setting: &Setting<kinds::Bool>) -> Result<Option<bool>, SettingsError> {
        match self.value(&setting.any())? {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(b)),
            Some(other) => Err(self.wrong_type(setting.key, SettingKind::Bool.expected(), &other)),
        }
    }

    pub fn positive(
        &mut self,
        setting: &Setting<kinds::Positive>,
    ) -> Result<Option<u64>, SettingsError> {
        let key = setting.key;
        match self.value(&setting.any())? {
            None => Ok(None),
            Some(Value::Integer(n)) if n > 0 => Ok(Some(n as u64)),
            Some(Value::Integer(n)) => {
                Err(self.error(format!("key \"{key}\" must be more than 0, not {n}")))
            }
            Some(other) => Err(self.wrong_type(key, SettingKind::Positive.expected(), &other)),
        }
    }

    /// A table of strings to strings; empty when absent.
    pub fn mapping(
        &mut self,
        setting: &Setting<kinds::Mapping>,
    ) -> Result<Vec<(String, String)>, SettingsError> {
        let key = setting.key;
        match self.value(&setting.any())? {
            None => Ok(Vec::new()),
            Some(Value::Table(table)) => self.pairs(key, table),
            Some(other) => Err(self.wrong_type(key, SettingKind::Mapping.expected(), &other)),
        }
    }

    /// A list of strings; empty when absent.
    pub fn list(&mut self, setting: &Setting<kinds::List>) -> Result<Vec<String>, SettingsError> {
        let key = setting.key;
        match self.value(&setting.any())? {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => self.strings(key, items),
            Some(other) => Err(self.wrong_type(key, SettingKind::List.expected(), &other)),
        }
    }

    /// An API key: required, whatever the setting says.
    pub fn secret(&mut self, setting: &Setting<kinds::Secret>) -> Result<Secret, SettingsError> {
        debug_assert!(setting.required, "{} is required", setting.key);
        let key = setting.key;
        match self.value(&setting.any())? {
            None => Err(self.missing(key)),
            Some(Value::String(template)) if template.is_empty() => {
                Err(self.error(format!("key \"{key}\" must not be empty")))
            }
            Some(Value::String(template)) => {
                let value = expand(&template, &|name| self.env.get(name).cloned().flatten());
                Ok(Secret {
                    template,
                    value,
                    place: format!("{}.{key} in {}", self.label, self.file),
                })
            }
            Some(other) => Err(self.wrong_type(key, SettingKind::Secret.expected(), &other)),
        }
    }

    fn pairs(&self, key: &str, table: Table) -> Result<Vec<(String, String)>, SettingsError> {
        let mut pairs = Vec::with_capacity(table.len());
        for (from, to) in table {
            let Value::String(to) = to else {
                return Err(self.error(format!(
                    "key \"{key}.{from}\" must be a string, not {}",
                    article(to.type_str())
                )));
            };
            if from.is_empty() || from.split('.').any(str::is_empty) {
                return Err(self.error(format!(
                    "key \"{key}.{from}\": \"{from}\" is not a dot path such as properties.customerId"
                )));
            }
            if to.is_empty() {
                return Err(self.error(format!("key \"{key}.{from}\" must not be empty")));
            }
            pairs.push((from, self.expand(key, &to)?));
        }
        Ok(pairs)
    }

    fn strings(&self, key: &str, items: Vec<Value>) -> Result<Vec<String>, SettingsError> {
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

    /// A warning for each string under `key` that starts with `$NAME` without
    /// braces: it is taken as written, not read from the environment. A
    /// secret's text is not quoted, in case it is the key itself.
    pub(crate) fn unbraced_variables(&self, key: &str, secret: bool) -> Vec<String> {
        let mut texts = Vec::new();
        if let Some(value) = self.table.get(key) {
            strings_in(value, &mut texts);
        }
        texts
            .into_iter()
            .filter_map(|text| {
                let name = text.strip_prefix('$')?;
                let ident: String = name
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if ident.is_empty() || ident.starts_with(|c: char| c.is_ascii_digit()) {
                    return None;
                }
                let written = if secret {
                    String::new()
                } else {
                    format!(" \"{text}\"")
                };
                Some(self.error(format!(
                    "key \"{key}\"{written} starts with $ without braces, so it is taken as written, \
                     not read from the environment: write \"${{{ident}}}\" to read ${ident}"
                )).0)
            })
            .collect()
    }

    /// A key's value as written, `${VAR}`s expanded, in TOML's inline form
    /// (`"userId"`, `{ "properties.n" = "n" }`); None when the table does
    /// not set it. For settings that are no secret: it is shown as it is.
    pub(crate) fn shown(&self, key: &str) -> Option<String> {
        let expand = |text: &str| {
            expand(text, &|name| self.env.get(name).cloned().flatten())
                .unwrap_or_else(|_| text.to_owned())
        };
        self.table.get(key).map(|value| inline(value, &expand))
    }

    /// Refuses every key not read, naming the keys this table takes.
    pub fn finish<'a>(self, known: impl IntoIterator<Item = &'a str>) -> Result<(), SettingsError> {
        if let Some(unknown) = self.table.keys().next() {
            let known: Vec<&str> = known.into_iter().collect();
            let guess = crate::input::filter::closest(unknown, known.iter().copied())
                .map(|near| format!("did you mean \"{near}\"? "))
                .unwrap_or_default();
            return Err(self.error(format!(
                "unknown key \"{unknown}\" ({guess}this table takes: {})",
                known.join(", ")
            )));
        }
        Ok(())
    }
}

/// A URL's host, lower-cased, without user, port or brackets; None when it is no URL.
pub(crate) fn url_host(url: &str) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some(host.to_ascii_lowercase())
}

/// `http://127.0.0.1:8080/v1`, `http://localhost`, `http://[::1]`: traffic that never leaves the machine.
fn is_loopback(url: &str) -> bool {
    url_host(url).is_some_and(|host| {
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// A value in TOML's inline form, its strings passed through `expand`.
fn inline(value: &Value, expand: &dyn Fn(&str) -> String) -> String {
    let quoted = |text: &str| serde_json::to_string(text).expect("a string serialises");
    match value {
        Value::String(text) => quoted(&expand(text)),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|v| inline(v, expand)).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Table(table) if table.is_empty() => "{}".to_owned(),
        Value::Table(table) => {
            let pairs: Vec<String> = table
                .iter()
                .map(|(k, v)| format!("{} = {}", quoted(k), inline(v, expand)))
                .collect();
            format!("{{ {} }}", pairs.join(", "))
        }
        Value::Integer(n) => n.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(t) => t.to_string(),
    }
}

fn article(type_str: &str) -> String {
    match type_str {
        "integer" | "array" => format!("an {type_str}"),
        other => format!("a {other}"),
    }
}

fn strings_in<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::String(text) => found.push(text),
        Value::Array(items) => items.iter().for_each(|item| strings_in(item, found)),
        Value::Table(table) => table.values().for_each(|item| strings_in(item, found)),
        _ => {}
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

    #[test]
    fn expands_variables() {
        let env = |n: &str| (n == "A").then(|| "x".to_owned());
        assert_eq!(expand("p${A}q$B${A}", &env), Ok("pxq$Bx".into()));
        assert_eq!(expand("${NOPE}", &env), Err("NOPE".into()));
        assert_eq!(expand("${not valid}", &env), Ok("${not valid}".into()));
    }

    #[test]
    fn fields_are_one_dot_path_or_a_list_tried_in_order() {
        const SETTING: Setting<kinds::Fields> = Setting {
            key: "customer_id_field",
            kind: kinds::Fields,
            default: Some("userId"),
            required: false,
            recorded: true,
            help: "",
        };
        let read = |text: &str| {
            let table: Table = text.parse().unwrap();
            TableReader::new(table, "s.toml", "destinations.d".into(), &|_| None).fields(&SETTING)
        };
        assert_eq!(read("").unwrap(), ["userId"]);
        assert_eq!(
            read("customer_id_field = \"context.groupId\"").unwrap(),
            ["context.groupId"]
        );
        assert_eq!(
            read("customer_id_field = [\"userId\", \"anonymousId\"]").unwrap(),
            ["userId", "anonymousId"]
        );
        for (text, error) in [
            ("customer_id_field = []", "must name at least one dot path"),
            (
                "customer_id_field = [\"userId\", \"a..b\"]",
                "\"a..b\" is not a dot path",
            ),
            (
                "customer_id_field = [\"userId\", 1]",
                "must hold only strings",
            ),
            (
                "customer_id_field = 1",
                "must be a dot path or a list of dot paths",
            ),
        ] {
            let message = read(text).unwrap_err().to_string();
            assert!(
                message.contains(error) && message.contains("[destinations.d]"),
                "{text}: {message}"
            );
        }
    }

    #[test]
    fn plain_http_is_only_for_loopback() {
        for url in [
            "http://127.0.0.1:9/v1",
            "http://localhost:8080",
            "http://LocalHost",
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
            "http://evil.com?@127.0.0.1",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }
}
