//! `module_env`: what a library's process gets beyond the usual environment variables. An
//! entry is `NAME` (pass on the agent's own value, if it has one) or `NAME=VALUE` (set this
//! value, for the libraries' processes only: `module_env = ["PKCS11SPY=/usr/lib/softhsm/libsofthsm2.so"]`
//! is how pkcs11-spy learns which library to wrap). Anything else is refused when the agent
//! starts, with what is wrong: an entry that did nothing in silence would send a person looking
//! for the fault in the library.

use super::ConfigError;

/// One entry of `module_env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleEnv {
    /// `NAME`: the agent's own value, if it has one.
    Pass(String),
    /// `NAME=VALUE`: this value, whatever the agent's own.
    Set(String, String),
}

impl ModuleEnv {
    /// An entry as the file writes it.
    pub fn parse(entry: &str) -> Result<ModuleEnv, ConfigError> {
        let refuse = |why: &'static str| ConfigError::ModuleEnv {
            entry: shown(entry),
            why,
        };
        let (name, value) = match entry.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (entry, None),
        };
        if name.is_empty() {
            return Err(refuse("it has no variable name"));
        }
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(refuse(
                "a variable name is ASCII letters, digits and '_', and does not start with a digit",
            ));
        }
        match value {
            None => Ok(ModuleEnv::Pass(name.to_string())),
            Some(value) if value.contains('\0') => {
                Err(refuse("a value cannot hold a NUL character"))
            }
            Some(value) => Ok(ModuleEnv::Set(name.to_string(), value.to_string())),
        }
    }

    /// The entries of a list, each checked, and no variable named twice.
    pub fn parse_all(entries: &[String]) -> Result<Vec<ModuleEnv>, ConfigError> {
        let mut out: Vec<ModuleEnv> = Vec::with_capacity(entries.len());
        for entry in entries {
            let parsed = Self::parse(entry)?;
            if out.iter().any(|e| e.name() == parsed.name()) {
                return Err(ConfigError::ModuleEnv {
                    entry: shown(entry),
                    why: "another entry names the same variable",
                });
            }
            out.push(parsed);
        }
        Ok(out)
    }

    pub fn name(&self) -> &str {
        match self {
            ModuleEnv::Pass(name) | ModuleEnv::Set(name, _) => name,
        }
    }
}

/// The entry as the file writes it.
impl std::fmt::Display for ModuleEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModuleEnv::Pass(name) => f.write_str(name),
            ModuleEnv::Set(name, value) => write!(f, "{name}={value}"),
        }
    }
}

/// An entry in an error message: its name, not its value (a value may be a secret, such as a
/// vendor library's password variable).
fn shown(entry: &str) -> String {
    match entry.split_once('=') {
        Some((name, _)) => format!("{name}=…"),
        None => entry.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pass_and_assignments_set() {
        assert_eq!(
            ModuleEnv::parse("OPENSC_DEBUG").unwrap(),
            ModuleEnv::Pass("OPENSC_DEBUG".into())
        );
        assert_eq!(
            ModuleEnv::parse("PKCS11SPY=/usr/lib/softhsm/libsofthsm2.so").unwrap(),
            ModuleEnv::Set("PKCS11SPY".into(), "/usr/lib/softhsm/libsofthsm2.so".into())
        );
        // Only the first '=' separates: values may hold more, or be empty.
        assert_eq!(
            ModuleEnv::parse("P11_KIT_SERVER_ADDRESS=unix:path=/run/p11").unwrap(),
            ModuleEnv::Set("P11_KIT_SERVER_ADDRESS".into(), "unix:path=/run/p11".into())
        );
        assert_eq!(
            ModuleEnv::parse("_X=").unwrap(),
            ModuleEnv::Set("_X".into(), String::new())
        );
        let e = ModuleEnv::parse("A=b=c").unwrap();
        assert_eq!(e.to_string(), "A=b=c");
    }

    #[test]
    fn anything_else_is_refused_without_showing_the_value() {
        for bad in [
            "",
            "=value",
            "1ABC",
            "PKCS11 SPY",
            "PKCS11SPY =x",
            "NAMÉ=x",
            "A-B",
            "A=x\0y",
        ] {
            let err = ModuleEnv::parse(bad).expect_err(bad).to_string();
            assert!(err.contains("module_env"), "{bad:?}: {err}");
        }
        let err = ModuleEnv::parse("PKCS11 SPY=secret")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
        let twice = ["A=1".to_string(), "A".to_string()];
        let err = ModuleEnv::parse_all(&twice).unwrap_err().to_string();
        assert!(err.contains("same variable"), "{err}");
    }
}
