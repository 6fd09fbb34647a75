//! Settings tables: each key read as its kind says, `${VAR}` expanded, API
//! keys kept secret, and errors that name the file, the table and the key.
//! The settings file itself, and the destinations its tables describe, are
//! `destination::file`'s.

mod setting;
mod table;

pub use setting::{AnySetting, Setting, SettingKind, kinds};
pub(crate) use table::{PLACEHOLDER, url_host};
pub use table::{Secret, SettingsError, TableReader};
