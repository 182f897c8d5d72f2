//! Who holds a TCP port: for "address already in use" to say *which* program (another Keyport,
//! another person's Keyport on a shared machine, or something else), and for `keyport doctor`.
//!
//! Linux only (`/proc/net/tcp{,6}` gives the listening socket's inode and owner; the process is
//! the one with that socket among its descriptors, visible for one's own processes, or all of
//! them as root). Elsewhere nothing is known and the plain error stays.

/// A program listening on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The socket's owner.
    pub uid: u32,
    /// The process, when it can be seen.
    pub pid: Option<u32>,
    /// Its command name (`/proc/PID/comm`).
    pub name: Option<String>,
}

impl Holder {
    /// A sentence: "another Keyport (pid 42)", "another user's program (uid 1001)", …
    pub fn describe(&self) -> String {
        let me = current_uid();
        let what = match (&self.name, self.pid) {
            (Some(n), Some(pid)) => format!("{n} (pid {pid})"),
            _ => "a program".to_string(),
        };
        let keyport = self.name.as_deref() == Some("keyport");
        match (keyport, Some(self.uid) == me) {
            (true, true) => format!("another Keyport is already running: {what}"),
            (true, false) => format!(
                "another user's Keyport (uid {}) holds it: on a shared machine each person needs \
                 a port of their own (`listen` in the configuration)",
                self.uid
            ),
            (false, true) => format!("it is used by {what}"),
            (false, false) => format!("it is used by another user's {what} (uid {})", self.uid),
        }
    }
}

/// This process's user (None where it cannot be told).
#[cfg(target_os = "linux")]
pub fn current_uid() -> Option<u32> {
    // SAFETY: getuid has no preconditions and cannot fail.
    Some(unsafe { libc::getuid() })
}

#[cfg(not(target_os = "linux"))]
pub fn current_uid() -> Option<u32> {
    None
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
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|s| s.trim().to_string())
    });
    Some(Holder { uid, pid, name })
}

#[cfg(not(target_os = "linux"))]
pub fn holder(_port: u16) -> Option<Holder> {
    None
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

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_found_holding_its_own_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = holder(port).expect("found");
        assert_eq!(h.pid, Some(std::process::id()));
        assert_eq!(Some(h.uid), current_uid());
        assert!(h
            .describe()
            .contains(&format!("pid {}", std::process::id())));
    }
}
