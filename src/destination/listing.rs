//! `segrelay destinations`: each type, the calls it takes, its batch sizes
//! and its settings, read from the tables the settings parser reads.

use std::io::{self, Write};
use std::path::Path;

use super::file::{self, Settings};
use super::{Kind, MAX_EVENTS_PER_MINUTE, settings};
use crate::settings::AnySetting;

/// The types, then (as text) the destinations of the settings file `-c` names or
/// the search finds; none found is no error here.
pub fn print(json: bool, config: Option<&Path>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    if json {
        let list: Vec<serde_json::Value> = Kind::ALL
            .iter()
            .map(|&kind| {
                let (default_batch, max_batch) = kind.batch_sizes();
                serde_json::json!({
                    "type": kind.name(),
                    "integrations_key": kind.display_name(),
                    "calls": calls(kind).iter().map(|(call, to)| serde_json::json!({"call": call, "request": to})).collect::<Vec<_>>(),
                    "batch_size": {"default": default_batch, "max": max_batch},
                    "settings": settings(kind).map(|s| serde_json::json!({
                        "key": s.key, "required": s.required, "default": s.default, "help": help(kind, s),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
        return Ok(());
    }
    for (i, &kind) in Kind::ALL.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let (default_batch, max_batch) = kind.batch_sizes();
        writeln!(
            out,
            "{} (integrations key \"{}\")",
            kind.name(),
            kind.display_name()
        )?;
        writeln!(out, "  calls:")?;
        for (call, to) in calls(kind) {
            writeln!(out, "    {call:<9} {to}")?;
        }
        writeln!(
            out,
            "  batch size: {default_batch} events per request by default, at most {max_batch}"
        )?;
        writeln!(out, "  settings:")?;
        for setting in settings(kind) {
            let default = setting.default_text();
            writeln!(
                out,
                "    {:<27} {} ({default})",
                setting.key,
                help(kind, setting)
            )?;
        }
    }
    if let Ok(path) = file::locate(config) {
        print_configured(&mut out, &Settings::load(&path)?)?;
    }
    Ok(())
}

/// Each configured destination's name, type and endpoint; never its key.
fn print_configured(out: &mut impl Write, settings: &Settings) -> anyhow::Result<()> {
    // The endpoint as written: the parsed destinations keep it inside their requests.
    let raw: toml::Table = std::fs::read_to_string(&settings.path)?.parse()?;
    let endpoint = |name: &str| {
        raw.get("destinations")
            .and_then(|d| d.get(name))
            .and_then(|t| t.get("endpoint"))
            .and_then(|e| e.as_str())
            .unwrap_or("the service's own URL")
            .to_owned()
    };
    writeln!(out, "\nconfigured in {}:", settings.path.display())?;
    for configured in &settings.destinations {
        let default = match settings.default_destination.as_deref() == Some(&configured.name) {
            true => " (default)",
            false => "",
        };
        writeln!(
            out,
            "  {:<16} {:<9} {}{default}",
            configured.name,
            configured.kind.name(),
            endpoint(&configured.name)
        )?;
    }
    Ok(())
}

/// A setting's help for this type: the rate limit is each type's own.
fn help(kind: Kind, setting: &AnySetting) -> String {
    if setting.key != MAX_EVENTS_PER_MINUTE.key {
        return setting.help.to_owned();
    }
    let limit = match kind {
        Kind::Orb => "Orb live: 10000 events per minute",
        Kind::Amberflo => "Amberflo documents none",
        Kind::Kable => "Kable documents none",
    };
    format!("{} ({limit})", setting.help)
}

/// The Segment calls each type takes and where they go.
fn calls(kind: Kind) -> &'static [(&'static str, &'static str)] {
    match kind {
        Kind::Amberflo => &[
            ("track", "POST /ingest (meter record, meterApiName = event)"),
            ("page", "POST /ingest (meter record, meterApiName = page)"),
            (
                "screen",
                "POST /ingest (meter record, meterApiName = screen)",
            ),
            (
                "identify",
                "API host: GET /customers, then POST (create) or PUT (the record with the event's changes); \
                 identify = \"replace\": GET /customers, then PUT (the event's record) or POST (create)",
            ),
        ],
        Kind::Orb => &[("track", "POST /ingest (usage event)")],
        Kind::Kable => &[("track", "POST /api/v1/events/create (event)")],
    }
}
