//! A first-come, first-served gate for signatures.
//!
//! A software token's signature is CPU work; more signatures at once than the machine has cores
//! only time-slice each other, and they starve the threads that read requests and write
//! answers: the tail grows (RSA-2048 with 8 clients on 2 cores: p99 over 4× p50). The gate
//! lets a few more than the cores in (a hardware token's signature is mostly waiting) and makes
//! the rest queue in arrival order, so no request is overtaken again and again.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

pub(super) struct Gate {
    max: usize,
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    inside: usize,
    next_ticket: u64,
    queue: VecDeque<u64>,
}

/// A place inside the gate, given back on drop.
pub(super) struct Turn<'a>(&'a Gate);

impl Gate {
    pub(super) fn new(max: usize) -> Gate {
        Gate {
            max: max.max(1),
            state: Mutex::new(State {
                inside: 0,
                next_ticket: 0,
                queue: VecDeque::new(),
            }),
            changed: Condvar::new(),
        }
    }

    /// Twice the cores.
    pub(super) fn for_cores() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
    }

    /// Wait for a place, behind everyone who came earlier.
    #[cfg(test)]
    pub(super) fn enter(&self) -> Turn<'_> {
        self.enter_within(Duration::MAX)
            .expect("an unbounded wait ends with a place")
    }

    /// [`Gate::enter`], giving up after `wait` (None: the place was not given in time, and
    /// the ticket is taken out of the queue).
    pub(super) fn enter_within(&self, wait: Duration) -> Option<Turn<'_>> {
        let deadline = Instant::now().checked_add(wait);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        s.queue.push_back(ticket);
        while !(s.inside < self.max && s.queue.front() == Some(&ticket)) {
            s = match deadline {
                None => self.changed.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        s.queue.retain(|t| *t != ticket);
                        drop(s);
                        // Whoever was behind us may be first now.
                        self.changed.notify_all();
                        return None;
                    }
                    self.changed
                        .wait_timeout(s, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        s.queue.pop_front();
        s.inside += 1;
        drop(s);
        // The next in line may fit too.
        self.changed.notify_all();
        Some(Turn(self))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        s.inside -= 1;
        drop(s);
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Queue 6 threads in a known order behind a gate of `max` places held full; returns the
    /// most inside at once and the order they got in.
    fn queue_six(max: usize) -> (usize, Vec<usize>) {
        let gate = Arc::new(Gate::new(max));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        let held: Vec<Turn<'_>> = (0..max).map(|_| gate.enter()).collect();
        let mut threads = Vec::new();
        for n in 0..6 {
            let (g, inside, most, order) =
                (gate.clone(), inside.clone(), most.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let _t = g.enter();
                order.lock().unwrap().push(n);
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(5));
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
            // Wait until it is in the queue before the next one comes.
            while gate.state.lock().unwrap().queue.len() < n + 1 {
                std::thread::yield_now();
            }
        }
        drop(held);
        for t in threads {
            t.join().unwrap();
        }
        let order = order.lock().unwrap().clone();
        (most.load(Ordering::SeqCst), order)
    }

    #[test]
    fn at_most_max_inside_and_first_come_first_served() {
        // One place: the order they got in is exactly the order they queued.
        let (most, order) = queue_six(1);
        assert_eq!(most, 1);
        assert_eq!(order, [0, 1, 2, 3, 4, 5]);
        // Two places: never more than two inside (two let in together may note themselves in
        // either order, so only the bound is checked here).
        let (most, mut order) = queue_six(2);
        assert!(most <= 2, "{most}");
        order.sort_unstable();
        assert_eq!(order, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_bounded_wait_gives_up_and_leaves_the_queue_to_those_behind() {
        let gate = Arc::new(Gate::new(1));
        let held = gate.enter();
        assert!(gate.enter_within(Duration::from_millis(30)).is_none());
        // The one that gave up is out of the queue: the next comes in as soon as the place
        // is free.
        let g = gate.clone();
        let next = std::thread::spawn(move || g.enter_within(Duration::from_secs(10)).is_some());
        while gate.state.lock().unwrap().queue.is_empty() {
            std::thread::yield_now();
        }
        drop(held);
        assert!(next.join().unwrap());
        assert!(gate.state.lock().unwrap().queue.is_empty());
    }
}
