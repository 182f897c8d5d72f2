//! What a request costs in counts, not microseconds: context switches and CPU time of the agent
//! and of its module hosts, thread by thread (`/proc/PID/task/TID/status` and `schedstat`), and
//! the PKCS #11 calls a module saw (the fault module's call log, `log_all=1`).
//!
//! Timings on a shared 2-core machine move by ±50% from run to run; these counts do not.

use std::collections::{BTreeMap, HashMap};

/// One thread's counters at one moment.
#[derive(Debug, Clone)]
struct ThreadUse {
    /// `agent` or `host`, and the thread's name with its number left out
    /// (`host: keyport-host-*`).
    group: String,
    host: bool,
    switches: u64,
    /// Of `switches`, those where the thread was preempted (it did not wait for anything).
    preempted: u64,
    cpu_ns: u64,
}

/// Every thread of the agent and of its children (the module hosts) at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(HashMap<(u32, u32), ThreadUse>);

/// What the agent and its hosts did between two snapshots.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub agent_switches: u64,
    pub host_switches: u64,
    /// Of those switches, the preemptions (nonvoluntary: another thread wanted the CPU, so they
    /// depend on the machine's load); the rest are waits (voluntary).
    pub preempted: u64,
    pub agent_cpu_ns: u64,
    pub host_cpu_ns: u64,
    /// Waits (voluntary switches) of each thread that waited, by group and rank within it
    /// (`agent: tokio-rt-worker #1` waited most often of its group): who sleeps, and so who
    /// is woken, per request.
    pub by_thread: BTreeMap<String, u64>,
}

fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A thread's name without its number: `keyport-host-12` is `keyport-host-*`.
fn group_name(comm: &str) -> String {
    let trimmed = comm.trim_end_matches(|c: char| c.is_ascii_digit());
    if trimmed.len() < comm.len() {
        format!("{trimmed}*")
    } else {
        comm.to_string()
    }
}

fn threads_of(pid: u32, host: bool, into: &mut HashMap<(u32, u32), ThreadUse>) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let dir = task.path();
        let (Ok(status), Ok(comm)) = (
            std::fs::read_to_string(dir.join("status")),
            std::fs::read_to_string(dir.join("comm")),
        ) else {
            continue;
        };
        // Nanoseconds on a CPU: the first field of schedstat.
        let cpu_ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let role = if host { "host" } else { "agent" };
        into.insert(
            (pid, tid),
            ThreadUse {
                group: format!("{role}: {}", group_name(comm.trim())),
                host,
                switches: field(&status, "voluntary_ctxt_switches:")
                    + field(&status, "nonvoluntary_ctxt_switches:"),
                preempted: field(&status, "nonvoluntary_ctxt_switches:"),
                cpu_ns,
            },
        );
    }
}

impl Snapshot {
    /// The agent `pid` and its children (module hosts), now.
    pub fn of(pid: u32) -> Snapshot {
        let mut all = HashMap::new();
        threads_of(pid, false, &mut all);
        for (child, _) in crate::children(pid) {
            threads_of(child, true, &mut all);
        }
        Snapshot(all)
    }

    /// What happened since `before` (threads started meanwhile count from zero; threads that
    /// ended meanwhile are not seen: the benchmark keeps its runs short enough for none to).
    pub fn since(&self, before: &Snapshot) -> Usage {
        let mut u = Usage::default();
        let mut threads: Vec<(&String, u64)> = Vec::new();
        for (key, now) in &self.0 {
            let (sw, pre, ns) = match before.0.get(key) {
                Some(b) => (
                    now.switches.saturating_sub(b.switches),
                    now.preempted.saturating_sub(b.preempted),
                    now.cpu_ns.saturating_sub(b.cpu_ns),
                ),
                None => (now.switches, now.preempted, now.cpu_ns),
            };
            u.preempted += pre;
            if now.host {
                u.host_switches += sw;
                u.host_cpu_ns += ns;
            } else {
                u.agent_switches += sw;
                u.agent_cpu_ns += ns;
            }
            if sw > pre {
                threads.push((&now.group, sw - pre));
            }
        }
        // Each thread on its own, numbered within its group from the one that waited most.
        threads.sort_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
        let mut n = 0;
        for (i, (group, sw)) in threads.iter().enumerate() {
            n = if i > 0 && threads[i - 1].0 == *group {
                n + 1
            } else {
                1
            };
            u.by_thread.insert(format!("{group} #{n}"), *sw);
        }
        u
    }
}

/// The PKCS #11 functions in fault-module log lines (`C_Sign rv=0x0` is `C_Sign`), without the
/// module's own notes (`card epoch ...`).
pub fn call_names(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("C_"))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_numbers_are_grouped() {
        assert_eq!(group_name("keyport-host-12"), "keyport-host-*");
        assert_eq!(group_name("tokio-runtime-w"), "tokio-runtime-w");
    }

    #[test]
    fn this_process_switches_when_it_sleeps() {
        let me = std::process::id();
        let mut before = HashMap::new();
        threads_of(me, false, &mut before);
        for _ in 0..5 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let mut after = HashMap::new();
        threads_of(me, false, &mut after);
        let used = Snapshot(after).since(&Snapshot(before));
        assert!(used.agent_switches >= 5, "{used:?}");
    }

    #[test]
    fn only_calls_are_named() {
        let lines = [
            "C_SignInit rv=0x0",
            "card epoch 2: every session closed",
            "C_Sign rv=0x0",
        ];
        let lines: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        assert_eq!(call_names(&lines), ["C_SignInit", "C_Sign"]);
    }
}
