//! The administrator's policy (its file, and on Windows its registry key over the file: see
//! [`super::file::Admin`]) is policy, not just a lower layer:
//! * when it lists `modules`, the person's additions (file or flags) are not used unless it
//!   sets `user_may_add_modules = true`, and its `p11-kit:NAME` entries mean the system's
//!   registered modules, whatever the person's p11-kit registry says;
//! * when it lists `allow_origins` or `trust_origins`, either one, both origin lists are its own
//!   (a page it only allowed cannot be trusted by the person, nor a page it never listed
//!   allowed), and demo mode is off unless its own file turns it on; `user_may_add_origins =
//!   true` lets the person add to both;
//! * when it lists `modules`, `module_env` is its own too (a library's environment can load
//!   another: `LD_PRELOAD`, `PKCS11SPY`), unless `user_may_add_modules = true`;
//! * its `no_origin` is the most open the person may choose;
//! * its `module_isolation = true` cannot be turned off.
//!
//! What the policy overrules is said in [`Policy::notes`] (the log, `keyport config`), and where
//! each value then comes from in [`Policy::sources`]: the administrator's layer that sets the key
//! (the one that sets the list that fixes it, for a key fixed by another).

use super::file::Admin;
use super::report::Source;
use super::{Config, ConfigError, FileConfig, NoOriginPolicy};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The lists the administrator can fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Modules,
    AllowOrigins,
    TrustOrigins,
}

impl List {
    const ALL: [List; 3] = [List::Modules, List::AllowOrigins, List::TrustOrigins];

    fn key(self) -> &'static str {
        match self {
            List::Modules => "modules",
            List::AllowOrigins => "allow_origins",
            List::TrustOrigins => "trust_origins",
        }
    }

    fn of(self, file: &FileConfig) -> Option<&Vec<String>> {
        match self {
            List::Modules => file.modules.as_ref(),
            List::AllowOrigins => file.allow_origins.as_ref(),
            List::TrustOrigins => file.trust_origins.as_ref(),
        }
    }

    fn set(self, file: &mut FileConfig, list: Vec<String>) {
        *match self {
            List::Modules => &mut file.modules,
            List::AllowOrigins => &mut file.allow_origins,
            List::TrustOrigins => &mut file.trust_origins,
        } = Some(list);
    }

    /// The administrator's key that lets the person add to this list.
    fn may_add_key(self) -> &'static str {
        match self {
            List::Modules => "user_may_add_modules",
            _ => "user_may_add_origins",
        }
    }
}

/// The administrator's policy applied to the person's settings.
pub(super) struct Policy<'a> {
    /// The administrator's layers over each other.
    admin: &'a FileConfig,
    layers: &'a Admin,
    /// Where each key's value comes from, as the policy leaves it.
    pub sources: BTreeMap<&'static str, Source>,
    /// What the policy overruled, in words.
    pub notes: Vec<String>,
}

impl<'a> Policy<'a> {
    /// `sources`: where each key comes from before the policy.
    pub fn new(admin: &'a Admin, sources: BTreeMap<&'static str, Source>) -> Self {
        Policy {
            admin: &admin.settings,
            layers: admin,
            sources,
            notes: Vec::new(),
        }
    }

    /// The administrator's layer that sets `key` (its file when none does).
    fn path(&self, key: &str) -> PathBuf {
        self.layers.path_of(key).to_path_buf()
    }

    fn may_add(&self, list: List) -> bool {
        let allowed = match list {
            List::Modules => self.admin.user_may_add_modules,
            _ => self.admin.user_may_add_origins,
        };
        allowed == Some(true)
    }

    /// The origin list the administrator's file sets, if any, when it fixes both origin lists
    /// (and the demo origins): otherwise a page the administrator never listed could be
    /// trusted through the other list.
    fn fixing_origins(&self) -> Option<&'static str> {
        [List::AllowOrigins, List::TrustOrigins]
            .into_iter()
            .find(|list| list.of(self.admin).is_some())
            .filter(|_| !self.may_add(List::AllowOrigins))
            .map(List::key)
    }

    /// The person's layer (flags over their file) over the administrator's, key by key, with
    /// the lists the administrator fixes put back: its own, plus the person's additions where
    /// it allows them.
    pub fn merge(&mut self, person: FileConfig) -> Result<FileConfig, ConfigError> {
        let mut merged = person.clone().over(self.admin.clone());
        for list in List::ALL {
            let key = list.key();
            let (fixed, fixed_by) = match (list.of(self.admin), self.fixing_origins()) {
                (Some(fixed), _) => (fixed.clone(), None),
                (None, Some(by)) if list != List::Modules => (Vec::new(), Some(by)),
                (None, _) => continue,
            };
            let extra: Vec<String> = list
                .of(&person)
                .into_iter()
                .flatten()
                .filter(|entry| !fixed.contains(entry))
                .cloned()
                .collect();
            let mut value = match list {
                List::Modules => system_modules(&fixed)?,
                _ => fixed,
            };
            let source = if self.may_add(list) && !extra.is_empty() {
                value.extend(extra);
                Source::AdminAndPerson(self.path(key))
            } else {
                if !extra.is_empty() {
                    self.notes.push(self.unused(list, &extra, fixed_by));
                }
                match fixed_by {
                    Some(by) => Source::AdminFixedBy(self.path(by), by),
                    None => Source::Admin(self.path(key)),
                }
            };
            self.sources.insert(key, source);
            list.set(&mut merged, value);
        }
        self.fix_module_env(&person, &mut merged);
        Ok(merged)
    }

    /// A library's environment can load another library (`LD_PRELOAD`, `PKCS11SPY`): when the
    /// administrator fixes the modules, their environment is its own too (unless it lets the
    /// person add modules).
    fn fix_module_env(&mut self, person: &FileConfig, merged: &mut FileConfig) {
        if self.admin.modules.is_none() || self.may_add(List::Modules) {
            return;
        }
        let Some(theirs) = &person.module_env else {
            return;
        };
        if Some(theirs) == self.admin.module_env.as_ref() {
            return;
        }
        merged.module_env = self.admin.module_env.clone();
        self.notes.push(format!(
            "module_env: {} not used: the administrator's {} sets the modules, and a library's \
             environment can load another (user_may_add_modules = true there would allow yours)",
            // Names only: a value may be a secret.
            theirs
                .iter()
                .map(|e| e.split('=').next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", "),
            self.path("modules").display()
        ));
        let from = match self.admin.module_env {
            Some(_) => "module_env",
            None => "modules",
        };
        self.sources
            .insert("module_env", Source::Admin(self.path(from)));
    }

    /// The note for the person's entries of `list` that are not used.
    fn unused(&self, list: List, extra: &[String], fixed_by: Option<&str>) -> String {
        let why = match fixed_by {
            Some(by) => format!(
                "the administrator's {} sets {by}, which fixes both origin lists",
                self.path(by).display()
            ),
            None => format!(
                "the administrator's {} sets them",
                self.path(list.key()).display()
            ),
        };
        format!(
            "{}: {} not used: {why} ({} = true there would allow yours)",
            list.key(),
            extra.join(", "),
            list.may_add_key()
        )
    }

    /// The rules on single settings, once they are converted: the no-Origin ceiling, demo mode
    /// under fixed origins, module isolation.
    pub fn overrule(&mut self, config: &mut Config) {
        if let Some(ceiling) = self.admin.no_origin {
            if openness(config.no_origin) > openness(ceiling) {
                self.notes.push(format!(
                    "no_origin: {:?} not used: the administrator allows at most {ceiling:?}",
                    config.no_origin
                ));
                config.no_origin = ceiling;
                let admin = self.path("no_origin");
                self.sources.insert("no_origin", Source::Admin(admin));
            }
        }
        // Demo mode lets in the demo page's own origins (http://127.0.0.1:PORT,
        // http://localhost:PORT), which any local program can send: not where the administrator
        // fixes the origins, unless the administrator's own file turns demo mode on.
        if let Some(by) = self.fixing_origins() {
            let admin = self.path(by);
            if config.demo && self.admin.demo != Some(true) {
                self.notes.push(format!(
                    "demo: not used: the administrator's {} sets {by}, which fixes the origins \
                     pages may connect from, so demo mode cannot add the demo page's own \
                     (http://127.0.0.1:PORT, http://localhost:PORT); the demo page is not served \
                     (user_may_add_origins = true there would allow it)",
                    admin.display()
                ));
                config.demo = false;
                self.sources.insert("demo", Source::AdminFixedBy(admin, by));
            }
        }
        if self.admin.module_isolation == Some(true) && !config.module_isolation {
            self.notes.push(
                "module_isolation: false not used: the administrator requires libraries to run \
                 in processes of their own"
                    .into(),
            );
            config.module_isolation = true;
            let admin = self.path("module_isolation");
            self.sources
                .insert("module_isolation", Source::Admin(admin));
        }
    }
}

/// The administrator's `p11-kit:NAME` means the system's module of that name, never the one the
/// person's registry names (~/.config/pkcs11/modules); the person's own entries are resolved
/// with the rest, later.
fn system_modules(entries: &[String]) -> Result<Vec<String>, ConfigError> {
    entries
        .iter()
        .map(|entry| {
            crate::p11kit::resolve_system_entry(entry).map_err(|message| ConfigError::P11Kit {
                entry: entry.clone(),
                message,
            })
        })
        .collect()
}

/// How permissive a no-Origin policy is (the administrator's is a ceiling).
fn openness(p: NoOriginPolicy) -> u8 {
    match p {
        NoOriginPolicy::Deny => 0,
        NoOriginPolicy::Consent => 1,
        NoOriginPolicy::Trust => 2,
    }
}
