//! How the table of settings ([`super::settings`]) becomes code, and how each kind of value is
//! read from a file and shown by `keyport config`.
//!
//! The [`settings!`] macro takes one row per key and writes everything that used to be spelled
//! out key by key: the [`Config`](super::Config) field and its default, the
//! [`FileConfig`](super::FileConfig) field (the TOML schema: unknown keys are an error naming
//! the key), the order `keyport config` prints ([`KEYS`](super::KEYS)), the value it prints
//! ([`Config::value_of`](super::Config::value_of)), which keys a layer sets, one layer over
//! another, the flags as a layer, and the conversion from the file's form with the row's check.
//! What a kind of value looks like in the file is [`FileValue`], once per Rust type, not per key.

use super::{ConfigError, ConsentMode, ModuleEnv, NoOriginPolicy};
use crate::origin::Origin;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use toml::Value;

/// A kind of setting: how the file writes it, and how `keyport config` shows it.
pub trait FileValue: Sized {
    /// The value as the TOML file (or a flag) gives it.
    type File: DeserializeOwned + Clone + std::fmt::Debug + Kinded;
    /// The value in force, from the file's form (an invalid one is an error).
    fn from_file(file: Self::File) -> Result<Self, ConfigError>;
    /// The value in force, as the TOML a file would give it.
    fn to_toml(&self) -> Value;
}

/// What kind of value a key takes, as a store without TOML's types needs to know it: the
/// registry's policy key ([`super::registry`]) and the ADMX template that writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `true` or `false` (the registry: a REG_DWORD, 0 or 1).
    Bool,
    /// A whole number from 0 to `max` (the registry: a REG_DWORD, or a REG_QWORD).
    Number { max: u64 },
    /// Text: a path, an address (the registry: REG_SZ, or REG_EXPAND_SZ).
    Text,
    /// One of these words (the registry: REG_SZ).
    Choice(Vec<String>),
    /// A list of texts (the registry: a subkey of numbered values, or a REG_MULTI_SZ).
    List,
}

/// The [`Kind`] of a key, from the type its file takes ([`FileValue::File`]).
pub trait Kinded {
    fn kind() -> Kind;
}

macro_rules! kinded {
    ($($ty:ty => $kind:expr),* $(,)?) => {$(
        impl Kinded for $ty {
            fn kind() -> Kind {
                $kind
            }
        }
    )*};
}

kinded! {
    bool => Kind::Bool,
    u32 => Kind::Number { max: u32::MAX.into() },
    usize => Kind::Number { max: usize::MAX as u64 },
    u64 => Kind::Number { max: u64::MAX },
    String => Kind::Text,
    PathBuf => Kind::Text,
    Vec<String> => Kind::List,
    NoOriginPolicy => choice::<NoOriginPolicy>(),
    ConsentMode => choice::<ConsentMode>(),
}

/// The words an enum setting takes: clap's names for it, which are serde's (lowercase).
fn choice<T: clap::ValueEnum>() -> Kind {
    Kind::Choice(
        T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect(),
    )
}

/// Values the file writes as they are.
macro_rules! plain {
    ($($ty:ty => $show:expr),* $(,)?) => {$(
        impl FileValue for $ty {
            type File = $ty;
            fn from_file(file: $ty) -> Result<$ty, ConfigError> {
                Ok(file)
            }
            fn to_toml(&self) -> Value {
                ($show)(self)
            }
        }
    )*};
}

plain! {
    bool => |b: &bool| Value::Boolean(*b),
    u32 => |n: &u32| Value::Integer((*n).into()),
    usize => |n: &usize| Value::Integer(*n as i64),
    Vec<String> => |v: &Vec<String>| Value::Array(v.iter().cloned().map(Value::String).collect()),
    NoOriginPolicy => |p: &NoOriginPolicy| lower(p),
    ConsentMode => |m: &ConsentMode| lower(m),
}

/// An enum as the file writes it: `Consent` is `"consent"`.
fn lower(value: &dyn std::fmt::Debug) -> Value {
    Value::String(format!("{value:?}").to_lowercase())
}

/// Durations are whole seconds (their keys end in `_secs`).
impl FileValue for Duration {
    type File = u64;
    fn from_file(secs: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(secs))
    }
    fn to_toml(&self) -> Value {
        Value::Integer(self.as_secs() as i64)
    }
}

/// An optional path; `keyport config` shows an unset one as `""`.
impl FileValue for Option<PathBuf> {
    type File = PathBuf;
    fn from_file(path: PathBuf) -> Result<Self, ConfigError> {
        Ok(Some(path))
    }
    fn to_toml(&self) -> Value {
        Value::String(
            self.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        )
    }
}

/// An optional text (`language`); `keyport config` shows an unset one as `""`.
impl FileValue for Option<String> {
    type File = String;
    fn from_file(text: String) -> Result<Self, ConfigError> {
        Ok(Some(text))
    }
    fn to_toml(&self) -> Value {
        Value::String(self.clone().unwrap_or_default())
    }
}

impl FileValue for SocketAddr {
    type File = String;
    fn from_file(text: String) -> Result<SocketAddr, ConfigError> {
        parse_listen(&text)
    }
    fn to_toml(&self) -> Value {
        Value::String(self.to_string())
    }
}

/// Origins are written `scheme://host[:port]` and kept normalised.
impl FileValue for Vec<Origin> {
    type File = Vec<String>;
    fn from_file(list: Vec<String>) -> Result<Self, ConfigError> {
        list.iter()
            .map(|o| Origin::parse(o).map_err(|_| ConfigError::Origin(o.clone())))
            .collect()
    }
    fn to_toml(&self) -> Value {
        Value::Array(
            self.iter()
                .map(|o| Value::String(o.as_str().into()))
                .collect(),
        )
    }
}

/// `module_env`: `NAME` or `NAME=VALUE` strings, each checked ([`ModuleEnv::parse_all`]).
impl FileValue for Vec<ModuleEnv> {
    type File = Vec<String>;
    fn from_file(list: Vec<String>) -> Result<Self, ConfigError> {
        ModuleEnv::parse_all(&list)
    }
    fn to_toml(&self) -> Value {
        Value::Array(self.iter().map(|e| Value::String(e.to_string())).collect())
    }
}

/// An address to listen on: `IP:PORT`, or `localhost:PORT` (loopback). Anything else is refused
/// later if it is not loopback.
pub fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = text
        .strip_prefix("localhost:")
        .and_then(|p| p.parse::<u16>().ok())
    {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(ConfigError::Listen(text.to_string()))
}

/// A row's check: raise a value below `min` to it.
pub fn at_least<T: Ord + Copy>(min: T) -> impl Fn(T) -> Result<T, ConfigError> {
    move |value| Ok(value.max(min))
}

/// A row's check: keep a value within `min..=max`.
pub fn within<T: Ord + Copy>(min: T, max: T) -> impl Fn(T) -> Result<T, ConfigError> {
    move |value| Ok(value.clamp(min, max))
}

/// A row's check: refuse a zero duration (`what` names the setting in the error).
pub fn nonzero(what: &'static str) -> impl Fn(Duration) -> Result<Duration, ConfigError> {
    move |value| match value.is_zero() {
        true => Err(ConfigError::ZeroTimeout(what)),
        false => Ok(value),
    }
}

/// A row's flag: a list given on the command line (an empty one is no flag).
pub fn listed(flags: &[String]) -> Option<Vec<String>> {
    (!flags.is_empty()).then(|| flags.to_vec())
}

/// The table of settings: see [`super::settings`] for the rows and this module for what each
/// becomes. A row is
///
/// ```text
/// /// doc of the Config field
/// file_key => config_field: Type = default [, check EXPR] [, flag |cli| EXPR];
/// ```
///
/// `check` is a `Fn(Type) -> Result<Type, ConfigError>` applied to a value a file or flag gives
/// (not to the default); `flag` gives the flag's value in the file's form, `None` when the flag
/// is not used. After the rows, `[admin only]` names the keys only the administrator's file may
/// set (booleans, not settings in force: the policy reads them).
///
/// It is one long macro on purpose: each part below is code that used to be written out key by
/// key in a place of its own (the struct fields, the default, the schema, the order, the
/// report, the flags, the conversion); together they make a row the one place a key is named.
macro_rules! settings {
    (
        $(
            $(#[$doc:meta])*
            $key:ident => $field:ident: $ty:ty = $default:expr
            $(, check $check:expr)?
            $(, flag $flag:expr)?
            ;
        )*
        [admin only] $( $(#[$admin_doc:meta])* $admin_key:ident ),* $(,)?
    ) => {
        /// The settings in force.
        #[derive(Debug, Clone)]
        pub struct Config {
            $( $(#[$doc])* pub $field: $ty, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $( $field: $default, )* }
            }
        }

        /// A TOML file, the flags, or layers of them merged: every key is optional.
        #[derive(Debug, Default, Clone, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct FileConfig {
            $( pub $key: Option<<$ty as $crate::config::table::FileValue>::File>, )*
            $( $(#[$admin_doc])* pub $admin_key: Option<bool>, )*
        }

        /// Every key a file may set, in the order `keyport config` prints them.
        pub const KEYS: &[&str] = &[$( stringify!($key) ),*];

        /// The keys only the administrator may set.
        pub const ADMIN_KEYS: &[&str] = &[$( stringify!($admin_key) ),*];

        impl FileConfig {
            /// Whether this layer sets `key`.
            pub fn sets(&self, key: &str) -> bool {
                match key {
                    $( stringify!($key) => self.$key.is_some(), )*
                    $( stringify!($admin_key) => self.$admin_key.is_some(), )*
                    _ => false,
                }
            }

            /// The kind of value `key` takes (`None`: no such key). The admin-only keys are
            /// booleans.
            pub fn kind(key: &str) -> Option<$crate::config::table::Kind> {
                use $crate::config::table::{Kind, Kinded};
                match key {
                    $( stringify!($key) =>
                        Some(<<$ty as $crate::config::table::FileValue>::File as Kinded>::kind()), )*
                    $( stringify!($admin_key) => Some(Kind::Bool), )*
                    _ => None,
                }
            }

            /// This layer over `lower`, key by key (a list replaces the lower one, never adds).
            pub fn over(self, lower: FileConfig) -> FileConfig {
                FileConfig {
                    $( $key: self.$key.or(lower.$key), )*
                    $( $admin_key: self.$admin_key.or(lower.$admin_key), )*
                }
            }

            /// The flags given, as a layer over the files.
            pub fn from_flags(cli: &$crate::config::Cli) -> FileConfig {
                FileConfig {
                    $( $key: None $( .or($crate::config::table::flag(cli, $flag)) )?, )*
                    $( $admin_key: None, )*
                }
            }
        }

        impl Config {
            /// The settings a layer gives, each converted and checked, over the defaults. (The
            /// checks across keys are [`Config::from_file`]'s.)
            fn from_layer(file: FileConfig) -> Result<Config, $crate::config::ConfigError> {
                use $crate::config::table::FileValue;
                let mut config = Config::default();
                $(
                    if let Some(value) = file.$key {
                        let value = <$ty as FileValue>::from_file(value)?;
                        $( let value = ($check)(value)?; )?
                        config.$field = value;
                    }
                )*
                Ok(config)
            }

            /// The value of file key `key` in force, as TOML (for `keyport config`).
            pub fn value_of(&self, key: &str) -> toml::Value {
                use $crate::config::table::FileValue;
                match key {
                    $( stringify!($key) => self.$field.to_toml(), )*
                    _ => toml::Value::String(String::new()),
                }
            }
        }
    };
}
pub(super) use settings;

/// A row's `flag`, typed: a closure in a row is checked against this signature.
pub fn flag<T>(cli: &super::Cli, of: fn(&super::Cli) -> Option<T>) -> Option<T> {
    of(cli)
}
