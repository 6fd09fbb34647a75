//! One key a settings table takes. Its kind is part of its type
//! (`Setting<kinds::Fields>`), and the table reader has one accessor per kind,
//! so a setting read as another kind does not compile; `AnySetting` is the same
//! key whatever its kind, as the lists of a type's keys hold it for
//! `segrelay destinations`, `segrelay init`, segrelay.toml(5) and a checkpoint.

/// One key a table takes, of kind `K` (one of [`kinds`]): how it is read, and
/// what `segrelay destinations` says of it.
///
/// A setting is read by its kind's accessor:
///
/// ```
/// use segrelay::settings::{Setting, SettingsError, TableReader, kinds};
///
/// const ON: Setting<kinds::Bool> = Setting {
///     key: "on",
///     kind: kinds::Bool,
///     default: Some("false"),
///     required: false,
///     recorded: false,
///     help: "",
/// };
/// fn read(table: &mut TableReader) -> Result<Option<bool>, SettingsError> {
///     table.bool(&ON)
/// }
/// ```
///
/// and by no other:
///
/// ```compile_fail
/// use segrelay::settings::{Setting, SettingsError, TableReader, kinds};
///
/// const ON: Setting<kinds::Bool> = Setting {
///     key: "on",
///     kind: kinds::Bool,
///     default: Some("false"),
///     required: false,
///     recorded: false,
///     help: "",
/// };
/// fn read(table: &mut TableReader) -> Result<Option<String>, SettingsError> {
///     table.string(&ON)
/// }
/// ```
#[derive(Debug)]
pub struct Setting<K> {
    pub key: &'static str,
    /// The kind, as a value: never read, since the type says it, but written
    /// in each setting's definition beside its key, where a reader looks for it.
    pub kind: K,
    /// As the listing shows it; a `Field`'s is also the value it takes when absent.
    pub default: Option<&'static str>,
    pub required: bool,
    /// A checkpoint records it, and resumes only under the same value: it
    /// changes what is sent or where. Not recorded: the API key (never
    /// written down), what only paces or carries the requests (a rate limit,
    /// gzip bodies, allowing plain http), and what the run records in its
    /// own way (the type, with the destination; a setting a flag also sets).
    pub recorded: bool,
    pub help: &'static str,
}

impl<K: kinds::Kind> Setting<K> {
    /// The setting as a list of a type's keys holds it.
    pub const fn any(&self) -> AnySetting {
        AnySetting {
            key: self.key,
            kind: K::KIND,
            default: self.default,
            required: self.required,
            recorded: self.recorded,
            help: self.help,
        }
    }
}

/// A [`Setting`] of whichever kind: what is said of it, not how it is read.
#[derive(Debug, Clone, Copy)]
pub struct AnySetting {
    pub key: &'static str,
    pub kind: SettingKind,
    pub default: Option<&'static str>,
    pub required: bool,
    pub recorded: bool,
    pub help: &'static str,
}

impl AnySetting {
    /// What a listing says of the default: `required`, `default: X` or `optional`.
    pub(crate) fn default_text(&self) -> String {
        match (self.required, self.default) {
            (true, _) => "required".to_owned(),
            (false, Some(default)) => format!("default: {default}"),
            (false, None) => "optional".to_owned(),
        }
    }
}

/// What a key holds, which decides how it is read and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    Text,
    /// An API key: a missing variable is kept, so a dry run works without keys.
    Secret,
    /// An http(s) base URL, without its trailing `/`.
    Url,
    Bool,
    /// A whole number above 0.
    Positive,
    /// A dot path into the event, such as `properties.customerId`; when
    /// absent, the setting's default.
    Field,
    /// A dot path, or a list of them tried in order (`["userId",
    /// "anonymousId"]`); when absent, the setting's default (one path).
    Fields,
    /// A table of strings to strings; keys are dot paths.
    Mapping,
    List,
}

impl SettingKind {
    /// The kind as a wrong-type error says it.
    pub(crate) fn expected(self) -> &'static str {
        match self {
            SettingKind::Text | SettingKind::Secret | SettingKind::Url | SettingKind::Field => {
                "a string"
            }
            SettingKind::Bool => "true or false",
            SettingKind::Positive => "a whole number",
            SettingKind::Mapping => "a table of strings",
            SettingKind::List => "a list of strings",
            SettingKind::Fields => "a dot path or a list of dot paths",
        }
    }
}

/// The kinds of [`SettingKind`] as types, one each, for [`Setting`]'s `kind`.
pub mod kinds {
    use super::SettingKind;

    /// A kind of setting, as a type.
    pub trait Kind {
        const KIND: SettingKind;
    }

    macro_rules! kinds {
        ($($(#[$doc:meta])* $name:ident,)*) => {$(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl Kind for $name {
                const KIND: SettingKind = SettingKind::$name;
            }
        )*};
    }

    kinds! {
        /// Read by `TableReader::string` or `required_string`.
        Text,
        /// Read by `TableReader::secret`; always required.
        Secret,
        /// Read by `TableReader::url`.
        Url,
        /// Read by `TableReader::bool`.
        Bool,
        /// Read by `TableReader::positive`.
        Positive,
        /// Read by `TableReader::field`.
        Field,
        /// Read by `TableReader::fields`.
        Fields,
        /// Read by `TableReader::mapping`.
        Mapping,
        /// Read by `TableReader::list`.
        List,
    }
}
