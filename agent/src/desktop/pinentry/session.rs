//! The pinentry as a child process: started with only the environment it needs, its stderr to
//! `/dev/null`, killed if dropped; one dialog at a time per [`Pinentry`] (and its clones); each
//! dialog bounded by a hard deadline, [`GRACE`] after its time limit, at which the pinentry is
//! killed and reaped.

use super::assuan::{Conn, Failure};
use super::Pinentry;
use std::ffi::OsString;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;
use tokio::process::{ChildStdin, ChildStdout};
use tokio::time::Instant;

/// The environment variables a pinentry gets from the agent's (when set); nothing else, so that
/// no secret of the agent's environment reaches another program. Display and session:
/// `DISPLAY`, `WAYLAND_DISPLAY`, `XAUTHORITY` (X11 and Wayland), `DBUS_SESSION_BUS_ADDRESS` and
/// `XDG_RUNTIME_DIR` (pinentry-gnome3's system prompter, Qt on Wayland); `HOME` and `PATH` (its
/// toolkit's settings, and finding helpers); `LANG`, `LANGUAGE`, `LC_*` (the dialog's language
/// and the charset of what is typed); `TERM` (pinentry-curses draws with it). On Windows a
/// program cannot start without `SystemRoot`, and its toolkit looks for its settings in the
/// user's folders: `SYSTEMDRIVE`, `USERPROFILE`, `APPDATA`, `LOCALAPPDATA`, `TEMP`, `TMP`.
/// `GNUPGHOME` is not needed: a pinentry does not read GnuPG's files.
pub const PINENTRY_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_RUNTIME_DIR",
    "LANG",
    "LANGUAGE",
    "TERM",
    "SystemRoot",
    "SYSTEMDRIVE",
    "USERPROFILE",
    "APPDATA",
    "LOCALAPPDATA",
    "TEMP",
    "TMP",
];

/// Prefixes of the other variables a pinentry gets (`LC_ALL`, `LC_CTYPE`, …).
pub const PINENTRY_ENV_PREFIXES: &[&str] = &["LC_"];

/// The hard deadline is this much after the time limit: a pinentry's own `SETTIMEOUT` counts from
/// when its dialog shows, after the program started, and should normally win.
pub const GRACE: Duration = Duration::from_secs(1);

/// The connection to a running pinentry: what a dialog talks over.
pub(super) type Pipes = Conn<ChildStdout, ChildStdin>;

/// A dialog's conversation: a future that holds the connection's loan (`'s`).
pub(super) type Talk<'s, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, Failure>> + Send + 's>>;

/// One dialog, in turn: start the pinentry, hold `talk` to the hard deadline (`timeout` +
/// [`GRACE`]), then say goodbye. A pinentry that fails is killed and reaped (`Err`, naming
/// only the program), one that does not answer in time likewise (`Ok(timed_out)`).
pub(super) async fn one_dialog<'a, T>(
    p: &'a Pinentry,
    timeout: Duration,
    timed_out: T,
    silence: &str,
    // The marker's type says `'a: 's`: what `talk` borrows outlives the session's loan.
    talk: impl for<'s> FnOnce(&'s mut Pipes, PhantomData<&'s &'a ()>) -> Talk<'s, T>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout + GRACE;
    let Ok(_turn) = tokio::time::timeout_at(deadline, p.turn.lock()).await else {
        tracing::debug!("no pinentry dialog in time: another one was up");
        return Ok(timed_out);
    };
    let mut session = Session::start(p)?;
    let answer = match tokio::time::timeout_at(deadline, talk(&mut session.conn, PhantomData)).await
    {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            session.kill().await;
            tracing::warn!(program = %p.program.display(), "pinentry failed: {e}");
            return Err(format!("pinentry {}: {e}", p.program.display()));
        }
        Err(_) => {
            tracing::info!(pid = session.pid, "{silence}: pinentry stopped");
            session.kill().await;
            return Ok(timed_out);
        }
    };
    session.finish(deadline).await;
    Ok(answer)
}

/// The environment of the child: the allowed part of the agent's, then the extra variables.
fn child_env(extra: &[(OsString, OsString)]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| {
            let Some(k) = k.to_str() else { return false };
            PINENTRY_ENV.contains(&k) || PINENTRY_ENV_PREFIXES.iter().any(|p| k.starts_with(p))
        })
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .collect();
    env.extend(extra.iter().cloned());
    env
}

/// A running pinentry and the conversation with it.
struct Session {
    child: tokio::process::Child,
    conn: Pipes,
    pid: Option<u32>,
}

impl Session {
    fn start(p: &Pinentry) -> Result<Session, String> {
        let mut cmd = tokio::process::Command::new(&p.program);
        cmd.env_clear()
            .envs(child_env(&p.extra_env))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            tracing::warn!(program = %p.program.display(), error = %e, "cannot start pinentry");
            format!("cannot start pinentry {}: {e}", p.program.display())
        })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("pinentry started without its pipes".to_string());
        };
        let pid = child.id();
        tracing::debug!(program = %p.program.display(), pid, "pinentry started");
        Ok(Session {
            child,
            conn: Conn::new(stdout, stdin),
            pid,
        })
    }

    /// Say goodbye and let it exit (within the deadline, at most a second); else kill it.
    async fn finish(mut self, deadline: Instant) {
        let end = deadline.min(Instant::now() + Duration::from_secs(1));
        let bye = async {
            let _ = self.conn.transact("BYE").await;
            self.child.wait().await
        };
        if tokio::time::timeout_at(end, bye).await.is_err() {
            self.kill().await;
        }
    }

    /// Kill it and reap it (no zombie is left behind).
    async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_the_allowed_part_plus_the_extra() {
        let env = child_env(&[("EXTRA".into(), "1".into()), ("PATH".into(), "/x".into())]);
        for (k, _) in &env {
            let k = k.to_str().unwrap();
            assert!(
                PINENTRY_ENV.contains(&k) || k.starts_with("LC_") || k == "EXTRA",
                "{k} passed"
            );
        }
        let path: Vec<_> = env.iter().filter(|(k, _)| k == "PATH").collect();
        assert_eq!(path.len(), 1);
        assert_eq!(path[0].1, "/x");
    }
}
