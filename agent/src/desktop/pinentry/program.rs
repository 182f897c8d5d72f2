//! Which pinentry program: the configured one (a path, or a bare name looked up on `PATH`), else
//! the platform's usual one; whether it draws in a terminal; whether it can show itself where
//! the agent runs.

use super::PinentryKind;
use std::path::{Path, PathBuf};

/// The program: `configured` (a path, or a bare name looked up on `PATH`), else the platform's
/// default ([`default_program`]). `None` if it is not there or not executable.
pub(super) fn locate(configured: Option<&Path>) -> Option<PathBuf> {
    match configured {
        Some(p) if p.is_absolute() || p.components().count() > 1 => {
            is_executable(p).then(|| p.to_path_buf())
        }
        Some(name) => search_path(name.as_os_str()),
        None => default_program(),
    }
}

/// Whether a pinentry of this kind can show itself here: a graphical one where there is a
/// display, a terminal one only when the agent's stdin is a terminal.
pub(super) fn can_show(kind: PinentryKind) -> bool {
    let set = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    match kind {
        PinentryKind::Graphical => {
            cfg!(any(target_os = "macos", windows)) || set("DISPLAY") || set("WAYLAND_DISPLAY")
        }
        PinentryKind::Terminal => agent_tty().is_some(),
    }
}

/// The agent's terminal, if its stdin is one.
pub(super) fn agent_tty() -> Option<String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return None;
    }
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; ttyname_r writes a NUL-terminated name.
        let rc = unsafe { libc::ttyname_r(0, buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
        if rc != 0 {
            return None;
        }
        let end = buf.iter().position(|&b| b == 0)?;
        String::from_utf8(buf[..end].to_vec()).ok()
    }
    #[cfg(not(unix))]
    None
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    true
}

/// `name` in one of `PATH`'s folders (with `.exe` on Windows).
fn search_path(name: &std::ffi::OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Some(candidate);
        }
        if cfg!(windows) {
            let mut exe = candidate.into_os_string();
            exe.push(".exe");
            let exe = PathBuf::from(exe);
            if is_executable(&exe) {
                return Some(exe);
            }
        }
    }
    None
}

/// The pinentry used when none is configured.
fn default_program() -> Option<PathBuf> {
    if cfg!(target_os = "macos") {
        search_path("pinentry-mac".as_ref())
            .or_else(|| search_path("pinentry".as_ref()))
            .or_else(|| {
                [
                    "/opt/homebrew/bin/pinentry-mac",
                    "/usr/local/bin/pinentry-mac",
                    "/usr/local/MacGPG2/libexec/pinentry-mac.app/Contents/MacOS/pinentry-mac",
                ]
                .iter()
                .map(PathBuf::from)
                .find(|p| is_executable(p))
            })
    } else if cfg!(windows) {
        search_path("pinentry".as_ref()).or_else(|| {
            [
                r"C:\Program Files (x86)\Gpg4win\bin\pinentry.exe",
                r"C:\Program Files\Gpg4win\bin\pinentry.exe",
                r"C:\Program Files (x86)\GnuPG\bin\pinentry-basic.exe",
                r"C:\Program Files\GnuPG\bin\pinentry-basic.exe",
            ]
            .iter()
            .map(PathBuf::from)
            .find(|p| is_executable(p))
        })
    } else {
        search_path("pinentry".as_ref())
    }
}

/// Terminal if the program, symlinks resolved (Debian's `pinentry` is a symlink through
/// `/etc/alternatives`), is a curses or tty pinentry.
pub(super) fn kind_of(program: &Path) -> PinentryKind {
    let real = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
    let name = real
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.contains("curses") || name.contains("tty") {
        PinentryKind::Terminal
    } else {
        PinentryKind::Graphical
    }
}

#[cfg(test)]
mod tests {
    /// Through [`Pinentry::find`](crate::desktop::pinentry::Pinentry::find), which asks
    /// [`locate`](super::locate) and [`kind_of`](super::kind_of).
    #[cfg(unix)]
    #[test]
    fn find_checks_the_file_and_tells_terminals_apart() {
        use crate::desktop::pinentry::{Pinentry, PinentryKind};
        use std::os::unix::fs::{symlink, PermissionsExt};
        use std::path::Path;
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        let gtk = make("pinentry-gtk2", 0o755);
        let tty = make("pinentry-tty", 0o755);
        let curses = make("pinentry-curses", 0o755);
        let plain = make("not-executable", 0o644);
        // Debian's `pinentry` → /etc/alternatives/pinentry → pinentry-curses.
        let alt = dir.path().join("alternative");
        symlink(&curses, &alt).unwrap();
        let pinentry = dir.path().join("pinentry");
        symlink(&alt, &pinentry).unwrap();

        let p = Pinentry::find(Some(&gtk)).unwrap();
        assert_eq!(p.kind(), PinentryKind::Graphical);
        assert_eq!(p.program(), gtk);
        assert_eq!(
            Pinentry::find(Some(&tty)).unwrap().kind(),
            PinentryKind::Terminal
        );
        let p = Pinentry::find(Some(&pinentry)).unwrap();
        assert_eq!(p.kind(), PinentryKind::Terminal);
        assert_eq!(
            p.program(),
            pinentry,
            "the configured path, not the resolved one"
        );
        assert!(Pinentry::find(Some(&plain)).is_none());
        assert!(Pinentry::find(Some(dir.path())).is_none(), "a folder");
        assert!(Pinentry::find(Some(&dir.path().join("missing"))).is_none());
        assert!(Pinentry::find(Some(Path::new("keyport-no-such-pinentry"))).is_none());
        // A bare name is looked up on PATH.
        if let Some(sh) = Pinentry::find(Some(Path::new("sh"))) {
            assert!(sh.program().is_absolute());
        }
    }
}
