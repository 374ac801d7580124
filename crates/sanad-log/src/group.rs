//! Group commit without a writer thread: callers queue their appends, and the caller at the
//! front of the queue becomes the *leader*. The leader takes every append waiting (up to the
//! batch limits), writes them as one commit — one sled batch, one fsync, carrying the latest
//! checkpoint the integrator has signed — and hands each follower its result. Followers sleep until their result is
//! there, or until they reach the front and lead the next commit.
//!
//! This is the writer queue of LevelDB and RocksDB. Compared with a dedicated writer thread it
//! saves two thread hand-overs per commit, and a lone caller commits on its own thread with no
//! hand-over at all. Only one leader exists at a time, so commits stay strictly ordered.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex};

use crate::limits::{BATCH_BYTES_MAX, BATCH_ENTRIES_MAX};
use crate::{Error, lock};

/// One queued operation.
pub(crate) enum Operation {
    /// Entries to append.
    Append { entries: Vec<Vec<u8>> },
    /// A key rotation, which always commits on its own.
    RotateKey,
}

impl Operation {
    fn bytes(&self) -> usize {
        match self {
            Self::Append { entries, .. } => entries.iter().map(|e| e.len() + 2).sum(),
            Self::RotateKey => 0,
        }
    }

    fn entries_count(&self) -> usize {
        match self {
            Self::Append { entries, .. } => entries.len(),
            Self::RotateKey => 0,
        }
    }
}

/// What an operation's caller gets back.
pub(crate) enum Outcome {
    /// Appended: index of the first entry, tree size after the commit.
    Appended { first_index: u64, tree_size: u64 },
    /// The key was rotated to this verifier key.
    Rotated(Box<sanad_tlog::NoteVerifier>),
}

struct State {
    next_ticket: u64,
    waiting: VecDeque<(u64, Operation)>,
    leading: bool,
    done: HashMap<u64, Result<Outcome, Error>>,
    /// Set after a failed commit: nothing more is accepted until the log is reopened.
    stopped: bool,
    /// Operations in the last group: how many callers are likely to come back soon.
    last_group_len: usize,
}

pub(crate) struct Queue {
    state: Mutex<State>,
    /// Signalled when outcomes are handed out or a leader steps down.
    changed: Condvar,
    /// Signalled when an operation is queued; only a leader gathering its group waits on it.
    grew: Condvar,
}

/// How long a leader may wait for the callers of the previous group to queue again before it
/// commits: a fraction of one fsync, so that concurrent callers share commits instead of each
/// paying for one, while a lone caller never waits (its previous group was itself).
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(150);

/// A group of operations taken by a leader, in queue order.
pub(crate) type Group = Vec<(u64, Operation)>;

impl Queue {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                next_ticket: 0,
                waiting: VecDeque::new(),
                leading: false,
                done: HashMap::new(),
                stopped: false,
                last_group_len: 1,
            }),
            changed: Condvar::new(),
            grew: Condvar::new(),
        }
    }

    /// Refuses everything from now on (after a failed write outside a group).
    pub(crate) fn stop(&self) {
        lock(&self.state).stopped = true;
        self.changed.notify_all();
    }

    /// Whether the queue has stopped after a failure.
    pub(crate) fn is_stopped(&self) -> bool {
        lock(&self.state).stopped
    }

    /// Queues `operation` and returns its outcome; `commit` is called by whichever caller leads
    /// a group, with the group, and must return one outcome per operation, in order (or one
    /// error for all, after which the queue stops).
    pub(crate) fn submit(
        &self,
        operation: Operation,
        commit: impl FnOnce(Group) -> Result<Vec<Outcome>, Error>,
    ) -> Result<Outcome, Error> {
        let mut state = lock(&self.state);
        if state.stopped {
            return Err(Error::WriterStopped);
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back((ticket, operation));
        self.grew.notify_one();
        loop {
            if let Some(outcome) = state.done.remove(&ticket) {
                return outcome;
            }
            if state.stopped {
                return Err(Error::WriterStopped);
            }
            let at_front = state.waiting.front().is_some_and(|(t, _)| *t == ticket);
            if !state.leading && at_front {
                break;
            }
            state = self.changed.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }

        // Lead: give the previous group's callers a moment to queue again, take the group,
        // commit without holding the lock, hand out the outcomes.
        state.leading = true;
        let deadline = std::time::Instant::now() + GATHER_WAIT;
        while state.waiting.len() < state.last_group_len {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .grew
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        let group = take_group(&mut state.waiting);
        state.last_group_len = group.len();
        drop(state);
        let tickets: Vec<u64> = group.iter().map(|(ticket, _)| *ticket).collect();
        let result = commit(group);
        let mut state = lock(&self.state);
        state.leading = false;
        match result {
            Ok(outcomes) => {
                assert_eq!(outcomes.len(), tickets.len(), "one outcome per operation");
                for (ticket, outcome) in tickets.into_iter().zip(outcomes) {
                    state.done.insert(ticket, Ok(outcome));
                }
            }
            Err(error) => {
                // After a failed write the store's state is unknown: refuse everything from
                // now on, so nothing more is acknowledged on it.
                state.stopped = true;
                for ticket in tickets {
                    state.done.insert(ticket, Err(error.clone()));
                }
            }
        }
        self.changed.notify_all();
        state.done.remove(&ticket).unwrap_or(Err(Error::WriterStopped))
    }
}

/// The operations at the front of the queue that fit in one commit: a rotation alone, or
/// appends up to the batch limits (always at least one).
fn take_group(waiting: &mut VecDeque<(u64, Operation)>) -> Group {
    let mut group = Vec::new();
    let (mut entries, mut bytes) = (0usize, 0usize);
    while let Some((_, operation)) = waiting.front() {
        let is_rotation = matches!(operation, Operation::RotateKey);
        if !group.is_empty()
            && (is_rotation
                || entries + operation.entries_count() > BATCH_ENTRIES_MAX
                || bytes + operation.bytes() > BATCH_BYTES_MAX)
        {
            break;
        }
        entries += operation.entries_count();
        bytes += operation.bytes();
        let Some(item) = waiting.pop_front() else { break };
        group.push(item);
        if is_rotation {
            break;
        }
    }
    group
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(count: usize) -> Operation {
        Operation::Append { entries: vec![vec![0; 10]; count] }
    }

    #[test]
    fn groups_respect_limits_and_rotations_commit_alone() {
        let mut waiting: VecDeque<(u64, Operation)> = VecDeque::new();
        waiting.push_back((0, append(3)));
        waiting.push_back((1, append(BATCH_ENTRIES_MAX - 3)));
        waiting.push_back((2, append(1)));
        waiting.push_back((3, Operation::RotateKey));
        waiting.push_back((4, append(1)));
        let tickets = |group: Group| group.into_iter().map(|(t, _)| t).collect::<Vec<_>>();
        assert_eq!(tickets(take_group(&mut waiting)), vec![0, 1]);
        assert_eq!(tickets(take_group(&mut waiting)), vec![2]);
        assert_eq!(tickets(take_group(&mut waiting)), vec![3]);
        assert_eq!(tickets(take_group(&mut waiting)), vec![4]);
        assert!(take_group(&mut waiting).is_empty());
    }

    #[test]
    fn a_failed_commit_stops_the_queue() {
        let queue = Queue::new();
        let failed = queue.submit(append(1), |_| Err(Error::BadAppend("simulated failure")));
        assert!(matches!(failed, Err(Error::BadAppend(_))));
        let after = queue.submit(append(1), |_| unreachable!("the queue stopped"));
        assert!(matches!(after, Err(Error::WriterStopped)));
    }

    #[test]
    fn concurrent_submitters_are_grouped_and_each_answered_once() {
        let queue = std::sync::Arc::new(Queue::new());
        let commits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let size = std::sync::Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (queue, commits, size) = (queue.clone(), commits.clone(), size.clone());
                std::thread::spawn(move || {
                    (0..50)
                        .map(|_| {
                            let outcome = queue.submit(append(2), |group| {
                                commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                std::thread::sleep(std::time::Duration::from_micros(200));
                                let mut size = lock(&size);
                                let mut outcomes = Vec::new();
                                for (_, operation) in group {
                                    outcomes.push(Outcome::Appended {
                                        first_index: *size,
                                        tree_size: 0,
                                    });
                                    *size += operation.entries_count() as u64;
                                }
                                Ok(outcomes)
                            });
                            match outcome {
                                Ok(Outcome::Appended { first_index, .. }) => first_index,
                                _ => panic!("append failed"),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut firsts: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        firsts.sort_unstable();
        assert_eq!(firsts, (0..400).map(|i| i * 2).collect::<Vec<_>>());
        let commits = commits.load(std::sync::atomic::Ordering::Relaxed);
        assert!(commits < 400, "no grouping happened: {commits} commits for 400 appends");
    }
}
