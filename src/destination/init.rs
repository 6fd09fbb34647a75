//! `segrelay init`: a commented starter settings file, written from the same
//! table of settings the parser reads and `segrelay destinations` lists.

use std::io::{self, Write};
use std::path::Path;

use super::Kind;
use crate::settings::{AnySetting, PLACEHOLDER, SettingKind, SettingsError};

/// Writes the starter settings for `kind` (or every type) to `out`; `-` is standard output.
pub(crate) fn write(kind: Option<Kind>, out: &Path) -> anyhow::Result<()> {
    let kinds: Vec<Kind> = match kind {
        Some(kind) => vec![kind],
        None => Kind::ALL.to_vec(),
    };
    let text = starter(&kinds);
    if out == Path::new("-") {
        io::stdout().lock().write_all(text.as_bytes())?;
        return Ok(());
    }
    // create_new: an existing file holds someone's settings, never overwritten.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| {
            let reason = match e.kind() {
                io::ErrorKind::AlreadyExists => {
                    "it exists; remove it or choose another --out".to_owned()
                }
                _ => e.to_string(),
            };
            SettingsError(format!("cannot write {}: {reason}", out.display()))
        })?;
    file.write_all(text.as_bytes())?;
    crate::console::stderr_line(&format!(
        "segrelay: wrote {}; set the API key variables it names, then try `segrelay check -c {} FILE`",
        out.display(),
        out.display()
    ));
    Ok(())
}

fn starter(kinds: &[Kind]) -> String {
    let mut text = String::from(
        "# segrelay settings. Keys are read from the environment (\"${VAR}\"); each\n\
         # commented line is a setting at its default (or, where the default is not a\n\
         # value, an example). `segrelay destinations` explains them.\n",
    );
    if let [only] = kinds {
        text.push_str(&format!("\ndefault_destination = \"{}\"\n", only.name()));
    } else {
        text.push_str(&format!(
            "\n# default_destination = \"{}\"\n",
            kinds[0].name()
        ));
    }
    for &kind in kinds {
        text.push_str(&format!("\n[destinations.{}]\n", kind.name()));
        for setting in super::settings(kind) {
            text.push_str(&line(kind, setting));
        }
    }
    text
}

/// One setting: a value for a required one, else its default, commented.
fn line(kind: Kind, setting: &AnySetting) -> String {
    let help = setting.help;
    if setting.required {
        let value = match setting.kind {
            SettingKind::Secret => format!("\"${{{}_API_KEY}}\"", kind.name().to_uppercase()),
            SettingKind::Field | SettingKind::Fields => "\"userId\"".to_owned(),
            _ => format!("\"{PLACEHOLDER}\""),
        };
        return format!("{} = {value}  # {help}\n", setting.key);
    }
    match setting.default {
        Some(default) if is_toml_value(default) => {
            format!("# {} = {default}  # {help}\n", setting.key)
        }
        Some(default) if !default.contains(' ') => {
            format!("# {} = \"{default}\"  # {help}\n", setting.key)
        }
        // A default said in words is no value to write: an example stands in
        // its place, so that the line, uncommented, is still TOML.
        Some(default) => format!(
            "# {} = {}  # {help} (default: {default})\n",
            setting.key,
            example(kind, setting)
        ),
        None => format!(
            "# {} = {}  # {help} (optional)\n",
            setting.key,
            example(kind, setting)
        ),
    }
}

/// A value of the setting's kind to show where its default is not one.
fn example(kind: Kind, setting: &AnySetting) -> String {
    let first_word = || setting.default.and_then(|d| d.split(' ').next());
    match setting.kind {
        SettingKind::Text if setting.key == "type" => format!("\"{}\"", kind.name()),
        SettingKind::Text | SettingKind::Secret => {
            format!("\"{}\"", first_word().unwrap_or("value"))
        }
        SettingKind::Url => match first_word().map(|w| w.trim_end_matches(';')) {
            Some(url) if url.starts_with("https://") => format!("\"{url}\""),
            _ => "\"https://proxy.example.com\"".to_owned(),
        },
        SettingKind::Bool => "true".to_owned(),
        SettingKind::Positive => "1000".to_owned(),
        SettingKind::Field | SettingKind::Fields => "\"userId\"".to_owned(),
        SettingKind::Mapping => "{}".to_owned(),
        SettingKind::List => "[]".to_owned(),
    }
}

fn is_toml_value(text: &str) -> bool {
    format!("v = {text}").parse::<toml::Table>().is_ok()
}
