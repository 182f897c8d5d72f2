//! Who holds a TCP port: for "address already in use" to say *which* program (another Keyport,
//! another person's Keyport on a shared machine, or something else), and for `keyport doctor`.
//!
//! Linux: `/proc/net/tcp{,6}` gives the listening socket's inode and owner; the process is the
//! one with that socket among its descriptors, visible for one's own processes, or all of them
//! as root. Windows: the IP Helper's table of listeners gives the process, and its token the
//! user (`ports/windows.rs`). Elsewhere nothing is known and the plain error stays.
//!
//! A command name is whatever its program set (`prctl(PR_SET_NAME)`, an executable's file
//! name), terminal escape sequences included, and it is printed on a terminal (`keyport doctor`,
//! the start-up error): it is read through [`printable_name`], which blanks what the prompts
//! blank and caps it.

#[cfg(windows)]
mod windows;

/// A program listening on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Whether it runs as the same user as this process (None: that cannot be told).
    pub mine: Option<bool>,
    /// Its user, as a sentence names it: "uid 1001", "another account".
    pub owner: String,
    /// The process, when it can be seen.
    pub pid: Option<u32>,
    /// Its command name (`/proc/PID/comm`, or the executable's name without `.exe`),
    /// printable ([`printable_name`]).
    pub name: Option<String>,
}

impl Holder {
    /// A sentence: "another Keyport (pid 42)", "another user's program (uid 1001)", …
    pub fn describe(&self) -> String {
        let what = match (&self.name, self.pid) {
            (Some(n), Some(pid)) => format!("{n} (pid {pid})"),
            (None, Some(pid)) => format!("program (pid {pid})"),
            _ => "program".to_string(),
        };
        let mine = self.mine != Some(false);
        match (self.is_keyport(), mine) {
            (true, true) => format!("another Keyport is already running: {what}"),
            (true, false) => format!(
                "another user's Keyport ({}) holds it: on a shared machine each person needs \
                 a port of their own (`listen` in the configuration)",
                self.owner
            ),
            (false, true) => format!("it is used by {}", with_article(&what)),
            (false, false) => format!("it is used by another user's {what} ({})", self.owner),
        }
    }

    /// Whether it is a Keyport agent.
    pub fn is_keyport(&self) -> bool {
        self.name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case("keyport"))
    }
}

/// "a program (pid 7)", but "keyport (pid 7)".
fn with_article(what: &str) -> String {
    match what.starts_with("program") {
        true => format!("a {what}"),
        false => what.to_string(),
    }
}

/// Who listens on TCP `port` (any local address), if that can be found out.
#[cfg(target_os = "linux")]
pub fn holder(port: u16) -> Option<Holder> {
    let (uid, inode) = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|text| listening(&text, port))?;
    let pid = owner_of(inode);
    let name = pid.and_then(|pid| {
        std::fs::read(format!("/proc/{pid}/comm"))
            .ok()
            .map(|comm| printable_name(&comm))
    });
    // SAFETY: getuid has no preconditions and cannot fail.
    let me = unsafe { libc::getuid() };
    Some(Holder {
        mine: Some(uid == me),
        owner: format!("uid {uid}"),
        pid,
        name,
    })
}

#[cfg(windows)]
pub use windows::holder;

#[cfg(not(any(target_os = "linux", windows)))]
pub fn holder(_port: u16) -> Option<Holder> {
    None
}

/// The most characters of a command name shown (Linux keeps 15 bytes of it; more is cut).
pub const MAX_NAME: usize = 32;

/// A command name as `/proc/PID/comm` gives it (ending in a line feed), made safe to print: not
/// UTF-8 → replacement characters; every control, format or separator character (the prompts'
/// rule, [`crate::consent::text::is_hidden`]: ESC, BEL, CSI, bidi overrides, …) → `?`, as `ps`
/// shows them; at most [`MAX_NAME`] characters, then `…`.
pub fn printable_name(comm: &[u8]) -> String {
    let comm = comm.strip_suffix(b"\n").unwrap_or(comm);
    let text = String::from_utf8_lossy(comm);
    let mut name: String = text
        .chars()
        .take(MAX_NAME)
        .map(|c| {
            if crate::consent::text::is_hidden(c) {
                '?'
            } else {
                c
            }
        })
        .collect();
    if text.chars().nth(MAX_NAME).is_some() {
        name.push('…');
    }
    name
}

/// The (uid, inode) of the socket listening on `port` in a `/proc/net/tcp` table.
pub fn listening(table: &str, port: u16) -> Option<(u32, u64)> {
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" {
            continue;
        }
        let local_port = f[1].rsplit(':').next()?;
        if u16::from_str_radix(local_port, 16).ok()? != port {
            continue;
        }
        return Some((f[7].parse().ok()?, f[9].parse().ok()?));
    }
    None
}

#[cfg(target_os = "linux")]
fn owner_of(inode: u64) -> Option<u32> {
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_socket_of_a_port_is_found_in_the_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:28CB 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000\n\
           1: 0100007F:28CB 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0000\n";
        assert_eq!(listening(table, 10443), Some((1000, 4242)));
        assert_eq!(listening(table, 10444), None);
    }

    /// Issue 19, finding 11: a command name with terminal escapes was printed raw.
    #[test]
    fn command_names_are_printed_without_escapes_and_capped() {
        assert_eq!(printable_name(b"keyport\n"), "keyport");
        assert_eq!(
            printable_name(b"\x1b]0;pwn\x07\x1b[31mX\n"),
            "?]0;pwn??[31mX"
        );
        assert_eq!(
            printable_name("\u{9b}2J\u{202e}tropyek\u{85}".as_bytes()),
            "?2J?tropyek?"
        );
        assert_eq!(printable_name(b"a\xffb\n\n"), "a\u{fffd}b?");
        assert_eq!(printable_name(b""), "");
        let long = "x".repeat(100);
        assert_eq!(
            printable_name(long.as_bytes()),
            format!("{}…", "x".repeat(MAX_NAME))
        );
        let h = Holder {
            mine: Some(false),
            owner: "uid 4294967295".into(),
            pid: Some(7),
            name: Some(printable_name(b"\x1b[2Jevil\n")),
        };
        assert!(!h.describe().contains('\x1b'), "{}", h.describe());
        assert!(
            h.describe().contains("?[2Jevil (pid 7)"),
            "{}",
            h.describe()
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_found_holding_its_own_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = holder(port).expect("found");
        assert_eq!(h.pid, Some(std::process::id()));
        assert_eq!(h.mine, Some(true));
        assert!(h.is_keyport() || h.name.is_some());
        assert!(h
            .describe()
            .contains(&format!("pid {}", std::process::id())));
    }
}
