//! The sites the person chose to "always allow", kept in a file they own (written so that a
//! crash leaves the old list or the new one, never a mix).

use crate::origin::Origin;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Origins the person chose to always allow, optionally persisted as JSON in a file they own.
#[derive(Debug, Default)]
pub struct RememberedSites {
    sites: Mutex<BTreeSet<Origin>>,
    file: Option<PathBuf>,
}

impl RememberedSites {
    pub fn load(file: Option<PathBuf>) -> Self {
        let sites = file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|text| serde_json::from_str::<StateFile>(&text).ok())
            .map(|s| {
                s.always_allow
                    .iter()
                    .filter_map(|o| Origin::parse(o).ok())
                    .collect()
            })
            .unwrap_or_default();
        RememberedSites {
            sites: Mutex::new(sites),
            file,
        }
    }

    pub fn contains(&self, origin: &Origin) -> bool {
        self.lock().contains(origin)
    }

    pub fn list(&self) -> Vec<String> {
        self.lock().iter().map(Origin::to_string).collect()
    }

    pub fn add(&self, origin: &Origin) {
        let mut sites = self.lock();
        if sites.insert(origin.clone()) {
            self.save(&sites);
        }
    }

    /// Forget `origin` (as [`Self::list`] wrote it); false if it was not remembered.
    pub fn revoke(&self, origin: &str) -> bool {
        let Ok(origin) = Origin::parse(origin) else {
            return false;
        };
        let mut sites = self.lock();
        let removed = sites.remove(&origin);
        if removed {
            self.save(&sites);
        }
        removed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<Origin>> {
        self.sites.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, sites: &BTreeSet<Origin>) {
        let Some(file) = &self.file else { return };
        let state = StateFile {
            always_allow: sites.iter().map(Origin::to_string).collect(),
        };
        let result = serde_json::to_vec_pretty(&state)
            .map_err(std::io::Error::from)
            .and_then(|bytes| replace_file(file, &bytes));
        if let Err(e) = result {
            tracing::warn!(file = %file.display(), error = %e, "cannot save remembered sites");
        }
    }
}

/// Replace `file`'s content with `bytes` so that a crash or power cut leaves either the old
/// content or the new, never a mix or an empty file: a temporary file in the same directory,
/// written and flushed to disk, then renamed over `file`; then the directory is flushed too, so
/// that the rename itself is on disk (best effort: not every file system can flush a directory).
///
/// The file is created with mode 0600 (tempfile's default on Unix) and keeps it: it is the
/// person's and lists the sites they trust, so nobody else needs to read it.
fn replace_file(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // On failure the temporary file is removed when the error drops it.
    tmp.persist(file).map_err(|e| e.error)?;
    #[cfg(unix)]
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %e, "cannot flush the directory");
    }
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StateFile {
    always_allow: Vec<String>,
}
