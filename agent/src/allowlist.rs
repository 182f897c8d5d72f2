//! The module allowlist: which PKCS #11 libraries a request may name, and what one library is.
//!
//! A request names a library by path (or takes the default, the first listed). Only a path
//! listed exactly is accepted, and only [`Allowlist::resolve`] makes an [`AllowedModule`], the
//! type every backend call takes: an unlisted path never reaches code that could open it.
//!
//! One library is one module however it is named: a path and a symlink (or hard link) to it are
//! the same file, which the dynamic loader loads once, with one login state per token. So the
//! backend keys what it knows of a module by [`AllowedModule::identity`] (the canonical path's
//! device and inode), never by the path string a request used.

use crate::error::{AgentError, Result};
use crate::logging::quote;
use keyport_protocol::ErrorReason;
use std::path::PathBuf;
use std::sync::Arc;

/// The libraries pages may use; the first is the default.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    paths: Vec<Arc<str>>,
    /// The p11-kit names of the listed libraries, read from the registry once, the first time
    /// a request names a library that way.
    names: Arc<std::sync::OnceLock<Vec<Named>>>,
}

/// A p11-kit name, and the listed library it names.
type Named = (String, Arc<str>);

/// A library on the allowlist, as a request named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedModule {
    path: Arc<str>,
}

/// What makes two paths one module: the file they resolve to (its device and inode; where
/// there are none, its canonical path).
#[derive(Debug, Clone)]
pub struct ModuleIdentity {
    /// The canonical path (symlinks resolved): the file that is loaded.
    pub canonical: PathBuf,
    device: u64,
    inode: u64,
}

impl ModuleIdentity {
    fn key(&self) -> (u64, u64, Option<&PathBuf>) {
        if cfg!(unix) {
            (self.device, self.inode, None)
        } else {
            (0, 0, Some(&self.canonical))
        }
    }
}

impl PartialEq for ModuleIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for ModuleIdentity {}

impl std::hash::Hash for ModuleIdentity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
}

impl Allowlist {
    pub fn new(paths: impl IntoIterator<Item = String>) -> Self {
        Allowlist {
            paths: paths.into_iter().map(Arc::from).collect(),
            names: Default::default(),
        }
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(|p| &**p)
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The module a request names (or the default), if it is on the allowlist. A path that is
    /// not listed is refused here, before anything could open it.
    pub fn resolve(&self, requested: Option<&str>) -> Result<AllowedModule> {
        match requested {
            None => self
                .paths
                .first()
                .map(|p| AllowedModule { path: p.clone() })
                .ok_or_else(|| {
                    AgentError::with_message(
                        ErrorReason::ModuleNotAllowed,
                        "The agent has no PKCS #11 library configured: start it with --module PATH \
                         (or list `modules` in its configuration).",
                    )
                }),
            Some(path) => {
                if let Some(p) = self.paths.iter().find(|m| ***m == *path) {
                    return Ok(AllowedModule { path: p.clone() });
                }
                // A p11-kit name ("softhsm2", or "p11-kit:softhsm2"): the allowlisted library
                // registered under it, if any.
                if !path.starts_with('/') {
                    let name = crate::p11kit::name_in(path).unwrap_or(path);
                    if let Some((_, p)) = self.names().iter().find(|(n, _)| n == name) {
                        return Ok(AllowedModule { path: p.clone() });
                    }
                }
                tracing::warn!(
                    module = %quote(path, 80),
                    "request for a module outside the allowlist refused"
                );
                if self.paths.is_empty() {
                    return Err(AgentError::with_message(
                        ErrorReason::ModuleNotAllowed,
                        "The agent has no PKCS #11 library configured: start it with --module PATH \
                         (or list `modules` in its configuration).",
                    ));
                }
                Err(AgentError::new(ErrorReason::ModuleNotAllowed))
            }
        }
    }
}

impl Allowlist {
    /// The registered p11-kit names that are one of the listed libraries (the same file).
    fn names(&self) -> &[Named] {
        self.names.get_or_init(|| {
            crate::p11kit::registry()
                .into_values()
                .filter_map(|r| {
                    let listed = self
                        .paths
                        .iter()
                        .find(|m| crate::p11kit::same_file(std::path::Path::new(&***m), &r.path))?;
                    Some((r.name, listed.clone()))
                })
                .collect()
        })
    }
}

impl AllowedModule {
    /// The path as listed.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The file this path is, now (symlinks resolved).
    pub fn identity(&self) -> std::io::Result<ModuleIdentity> {
        // `\\?\C:\…` on Windows only where the plain form would not name the same file.
        let canonical = dunce::canonicalize(&*self.path)?;
        let meta = std::fs::metadata(&canonical)?;
        #[cfg(unix)]
        let (device, inode) = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let (device, inode) = {
            let _ = meta;
            (0, 0)
        };
        Ok(ModuleIdentity {
            canonical,
            device,
            inode,
        })
    }

    /// For tests of code below the allowlist (backends): any path, as if it were listed.
    #[doc(hidden)]
    pub fn for_tests(path: &str) -> Self {
        AllowedModule {
            path: Arc::from(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_paths_resolve_and_the_first_is_the_default() {
        let list = Allowlist::new(["/a/one.so".to_string(), "/b/two.so".to_string()]);
        assert_eq!(list.resolve(None).unwrap().path(), "/a/one.so");
        assert_eq!(list.resolve(Some("/b/two.so")).unwrap().path(), "/b/two.so");
        for bad in ["/b/../b/two.so", "/a/one.so ", "", "one.so"] {
            let err = list.resolve(Some(bad)).unwrap_err();
            assert_eq!(err.reason, ErrorReason::ModuleNotAllowed, "{bad:?}");
        }
        let empty = Allowlist::default().resolve(None).unwrap_err();
        assert_eq!(empty.reason, ErrorReason::ModuleNotAllowed);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_and_a_hard_link_are_the_file_they_name() {
        let dir = std::env::temp_dir().join(format!("keyport-allow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let real = dir.join("libreal.so");
        std::fs::write(&real, b"x").unwrap();
        let sym = dir.join("libsym.so");
        let hard = dir.join("libhard.so");
        let other = dir.join("libother.so");
        let _ = std::fs::remove_file(&sym);
        let _ = std::fs::remove_file(&hard);
        std::os::unix::fs::symlink(&real, &sym).unwrap();
        std::fs::hard_link(&real, &hard).unwrap();
        std::fs::write(&other, b"x").unwrap();
        let id = |p: &std::path::Path| {
            AllowedModule::for_tests(p.to_str().unwrap())
                .identity()
                .unwrap()
        };
        assert_eq!(id(&real), id(&sym));
        assert_eq!(id(&real), id(&hard));
        assert_ne!(id(&real), id(&other));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
