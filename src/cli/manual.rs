//! `segrelay man`: the manual pages. clap_mangen renders what the help says; the
//! sections a man page has and the help does not (EXIT STATUS, ENVIRONMENT,
//! FILES, EXAMPLES) are added here, and `segrelay.toml(5)` is written from the
//! same table of settings the parser reads.

use std::io::{self, Write};
use std::path::Path;

use anyhow::Context;

use crate::destination::{self, Kind};
use crate::status::{Exits, Status};

/// The page of `command` itself (for `segrelay man`).
pub(crate) fn render(command: &clap::Command, out: &mut dyn Write) -> io::Result<()> {
    // Built, as clap_mangen builds it, so that --help and --version are listed here too.
    let mut command = command.clone();
    command.build();
    let command = &command;
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(out)?;
    }
    if command.get_subcommands().any(|c| !c.is_hide_set()) {
        man.render_subcommands_section(out)?;
    }
    let page = command.get_display_name().unwrap_or(command.get_name());
    if let Some(exits) = exits(page) {
        exit_status(exits, out)?;
    }
    let reads_settings =
        page == "segrelay" || command.get_arguments().any(|a| a.get_id() == "config");
    if reads_settings {
        section(out, "ENVIRONMENT", ENVIRONMENT)?;
        section(out, "FILES", FILES)?;
        writeln!(out, ".PP\nIts format is described in segrelay.toml(5).")?;
    }
    if let Some(examples) = examples(page) {
        section(out, "EXAMPLES", examples)?;
    }
    section(out, "SEE ALSO", "segrelay(1), segrelay.toml(5)")?;
    if command.get_version().is_some() {
        man.render_version_section(out)?;
    }
    Ok(())
}

/// Every command's page, and `segrelay.toml.5`, into `dir`.
pub(crate) fn write_all(command: clap::Command, dir: &Path) -> anyhow::Result<()> {
    fn write_tree(command: &clap::Command, dir: &Path) -> anyhow::Result<()> {
        for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
            write_tree(sub, dir)?;
        }
        let name = command.get_display_name().unwrap_or(command.get_name());
        write_page(dir, &format!("{name}.1"), |out| render(command, out))
    }
    let mut command = command;
    command.build();
    write_tree(&command, dir)?;
    write_page(dir, "segrelay.toml.5", settings_page)
}

fn write_page(
    dir: &Path,
    name: &str,
    content: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> anyhow::Result<()> {
    let path = dir.join(name);
    let mut text = Vec::new();
    content(&mut text)?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `segrelay.toml(5)`: the settings format, from the settings each type takes.
pub(crate) fn settings_page(out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        ".TH segrelay.toml 5 \"\" \"segrelay {}\"",
        env!("CARGO_PKG_VERSION")
    )?;
    section(
        out,
        "NAME",
        "segrelay.toml \\- segrelay's settings: the destinations events are sent to",
    )?;
    section(out, "DESCRIPTION", SETTINGS_INTRO)?;
    section(out, "FILES", FILES)?;
    writeln!(
        out,
        ".PP\nIts format is described below, a section for each type of destination."
    )?;
    for kind in Kind::ALL {
        writeln!(out, ".SH \"{} DESTINATIONS\"", kind.name().to_uppercase())?;
        for setting in destination::settings(kind) {
            let default = setting.default_text();
            writeln!(
                out,
                ".TP\n\\fB{}\\fR\n{} ({})",
                escape(setting.key),
                escape(setting.help),
                escape(&default)
            )?;
        }
    }
    section(
        out,
        "EXAMPLES",
        "segrelay init \\-\\-out \\- prints a commented file for all three types.",
    )?;
    section(
        out,
        "SEE ALSO",
        "segrelay(1), segrelay\\-init(1), segrelay\\-destinations(1)",
    )
}

/// Whose exit codes a page lists: the pages of the commands whose help does.
fn exits(page: &str) -> Option<Exits> {
    Some(match page {
        "segrelay" => Exits::Any,
        "segrelay-send" => Exits::Send,
        "segrelay-check" => Exits::Check,
        "segrelay-verify" => Exits::Verify,
        _ => return None,
    })
}

/// The EXIT STATUS section: what the help's "Exit codes:" lines say, unwrapped.
fn exit_status(exits: Exits, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, ".SH \"EXIT STATUS\"")?;
    for status in Status::ALL {
        if let Some(meaning) = status.meaning(exits) {
            writeln!(out, ".TP\n{}\n{}", status.code(), escape(meaning))?;
        }
    }
    Ok(())
}

/// A section whose text is already roff: paragraphs split on blank lines.
fn section(out: &mut dyn Write, title: &str, text: &str) -> io::Result<()> {
    writeln!(out, ".SH {title}")?;
    writeln!(out, "{text}")
}

/// Plain text made safe for roff.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

const ENVIRONMENT: &str = "\
.TP
\\fBSEGRELAY_CONFIG\\fR
The settings file, when \\fB\\-c\\fR is not given.
.TP
\\fBSEGRELAY_DESTINATION\\fR
The destination, when \\fB\\-d\\fR is not given.
.TP
\\fBXDG_CONFIG_HOME\\fR
Where the user's settings are looked for (see FILES); ~/.config when unset.
.TP
\\fBHOME\\fR
Used when XDG_CONFIG_HOME is unset.
.TP
\\fBAMBERFLO_API_KEY\\fR, \\fBORB_API_KEY\\fR, \\fBKABLE_API_KEY\\fR, ...
The API keys: each variable a setting names as \\fBapi_key = \"${VAR}\"\\fR is read
(these three are the names \\fBsegrelay init\\fR writes).
.TP
\\fBAWS_ACCESS_KEY_ID\\fR, \\fBAWS_SECRET_ACCESS_KEY\\fR, \\fBAWS_SESSION_TOKEN\\fR, \\fBAWS_PROFILE\\fR, ...
For \\fBs3://\\fR inputs: the credentials, found as AWS's own tools find them (also
\\fBAWS_CONFIG_FILE\\fR, \\fBAWS_SHARED_CREDENTIALS_FILE\\fR, \\fBAWS_WEB_IDENTITY_TOKEN_FILE\\fR
with \\fBAWS_ROLE_ARN\\fR, \\fBAWS_CONTAINER_CREDENTIALS_RELATIVE_URI\\fR or \\fB_FULL_URI\\fR,
the EC2 instance metadata unless \\fBAWS_EC2_METADATA_DISABLED=true\\fR).
.TP
\\fBAWS_REGION\\fR, \\fBAWS_DEFAULT_REGION\\fR, \\fBAWS_ENDPOINT_URL_S3\\fR, \\fBAWS_ENDPOINT_URL\\fR
For \\fBs3://\\fR inputs: the bucket's region (us\\-east\\-1 when unset), and the endpoint of an
S3\\-compatible store (addressed path\\-style).";

const FILES: &str = "\
The settings file is the first of:
.IP 1. 4
the file \\fB\\-c\\fR \\fIPATH\\fR names;
.IP 2. 4
the file \\fB$SEGRELAY_CONFIG\\fR names;
.IP 3. 4
\\fI./segrelay.toml\\fR;
.IP 4. 4
\\fI$XDG_CONFIG_HOME/segrelay/config.toml\\fR (\\fI~/.config/segrelay/config.toml\\fR when XDG_CONFIG_HOME is unset).";

const SETTINGS_INTRO: &str = "\
A TOML file. Each \\fB[destinations.\\fR\\fINAME\\fR\\fB]\\fR table is a destination that
\\fB\\-d\\fR \\fINAME\\fR selects; \\fBtype\\fR may be left out when NAME is the type.
\\fBdefault_destination = \"\\fR\\fINAME\\fR\\fB\"\\fR chooses one when \\fB\\-d\\fR is not given.
A string \\fB\"${VAR}\"\\fR is read from the environment variable VAR: write keys that way.";

/// Each page's examples, as roff.
fn examples(page: &str) -> Option<&'static str> {
    Some(match page {
        "segrelay" => {
            "\
.nf
segrelay init \\-d orb
segrelay check \\-d orb events.ndjson.gz
segrelay send \\-d orb \\-\\-rejects rejects.ndjson events.ndjson.gz
.fi"
        }
        "segrelay-send" => {
            "\
.nf
segrelay send \\-\\-dry\\-run \\-d amberflo \\-\\-format curl events.ndjson
segrelay send \\-d orb \\-\\-checkpoint run.checkpoint \\-\\-rejects rejects.ndjson archive/*.gz
segrelay send \\-d orb \\-\\-orb\\-backfill \\-\\-orb\\-wait archive/*.gz
.fi"
        }
        "segrelay-check" => {
            "\
.nf
segrelay check \\-d kable \\-\\-rejects rejects.ndjson archive/*.gz
.fi"
        }
        "segrelay-verify" => {
            "\
.nf
segrelay verify \\-d amberflo \\-\\-json events.ndjson
.fi"
        }
        "segrelay-init" => {
            "\
.nf
segrelay init
segrelay init \\-d orb \\-\\-out ~/.config/segrelay/config.toml
.fi"
        }
        "segrelay-orb-backfills" => {
            "\
.nf
segrelay orb backfills list \\-d orb
segrelay orb backfills revert bf_123 \\-\\-yes
.fi"
        }
        _ => return None,
    })
}
