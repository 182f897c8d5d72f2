//! The fault-injecting PKCS #11 module (`tests/fault-module`) in a private folder.
//!
//! The module reads `fault.conf` beside its own `.so`, so each test gets its own copy of the
//! `.so` in a temporary folder and its own faults; nothing goes through the environment. See
//! the module's documentation (`tests/fault-module/src/lib.rs`) for the keys.
//!
//! ```ignore
//! let module = FaultModule::new();
//! module.set("logout=device_error");
//! // ... start an agent with `--module module.path_str()` ...
//! assert!(module.calls().iter().any(|l| l == "C_Logout rv=0x30 (injected)"));
//! ```
//!
//! Self-contained (std and tempfile only): `tests/fault-module/tests/faults.rs` includes this
//! file too.

use std::path::{Path, PathBuf};

/// The module's file name in `target/<profile>/`: it exports `C_GetFunctionList` only.
pub const FILE_NAME: &str = "libkeyport_fault_module.so";
/// The same module that also exports `C_GetInterface` (`tests/fault-module/v3`), whose answers
/// `get_interface=` chooses.
pub const FILE_NAME_V3: &str = "libkeyport_fault_module_v3.so";

/// A private copy of the fault module, with its control file and call log.
pub struct FaultModule {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    /// Lines every [`FaultModule::set`] keeps (e.g. `softhsm_conf=`).
    base: String,
}

impl FaultModule {
    /// Copy `target/<profile>/libkeyport_fault_module.so` (beside the test executable, or
    /// `$KEYPORT_FAULT_MODULE`) into a new temporary folder. No `fault.conf` yet: no faults.
    pub fn new() -> FaultModule {
        Self::copy_of(FILE_NAME)
    }

    /// Like [`FaultModule::new`], with the build that exports `C_GetInterface` too
    /// (`libkeyport_fault_module_v3.so`, or `$KEYPORT_FAULT_MODULE_V3`).
    pub fn v3() -> FaultModule {
        Self::copy_of(FILE_NAME_V3)
    }

    fn copy_of(file_name: &str) -> FaultModule {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name);
        std::fs::copy(built_module(file_name), &path).expect("copy the fault module");
        FaultModule {
            dir,
            path,
            base: String::new(),
        }
    }

    /// A copy that serves the SoftHSM token store configured by `softhsm_conf` (a
    /// `softhsm2.conf`), not the one of the process's `SOFTHSM2_CONF`: two SoftHSM processes
    /// must not share one store while either writes. No faults yet, but the file is written.
    pub fn for_store(softhsm_conf: &Path) -> FaultModule {
        Self::new().serving(softhsm_conf)
    }

    /// This copy, serving the token store `softhsm_conf` configures (as [`FaultModule::for_store`]).
    pub fn serving(mut self, softhsm_conf: &Path) -> FaultModule {
        self.base = format!("softhsm_conf={}\n", softhsm_conf.display());
        self.set("");
        self
    }

    /// Replace `fault.conf` with these lines (atomically: temporary file + rename, so the
    /// module never reads half a file). Unless `conf` has its own `log=` line, calls are logged
    /// to the folder's `calls.log` (see [`FaultModule::calls`]).
    pub fn set(&self, conf: &str) {
        let mut text = format!("{}{conf}", self.base);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        if !conf.lines().any(|l| l.trim_start().starts_with("log=")) {
            text.push_str(&format!("log={}\n", self.log_path().display()));
        }
        let tmp = self.dir.path().join("fault.conf.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("fault.conf")).unwrap();
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("temporary paths are UTF-8")
    }

    /// Where [`FaultModule::set`] points `log=`.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// The lines logged so far (one per intercepted call, e.g. `C_Sign rv=0x0`); none before
    /// the first [`FaultModule::set`].
    pub fn calls(&self) -> Vec<String> {
        match std::fs::read_to_string(self.log_path()) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Default for FaultModule {
    fn default() -> Self {
        Self::new()
    }
}

fn built_module(file_name: &str) -> PathBuf {
    let (var, package) = match file_name {
        FILE_NAME_V3 => ("KEYPORT_FAULT_MODULE_V3", "keyport-fault-module-v3"),
        _ => ("KEYPORT_FAULT_MODULE", "keyport-fault-module"),
    };
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    // Tests run from target/<profile>/deps/, binaries from target/<profile>/.
    let exe = std::env::current_exe().unwrap();
    let dir: &Path = exe.parent().unwrap();
    let candidates = [dir.join(file_name), dir.parent().unwrap().join(file_name)];
    match candidates.iter().find(|p| p.exists()) {
        Some(p) => p.clone(),
        None => panic!(
            "{} not built: run `cargo build -p {package}` (or cargo build --workspace)",
            candidates[1].display()
        ),
    }
}
