//! The one writer. Callers queue jobs; the writer takes every job waiting (up to a batch's
//! worth), decides them in order against the in-memory state (each sees the ones before it),
//! appends all their entries to the log in one append (one commit, one fsync), and only then
//! answers; it records the batch in the account histories after answering, while the callers
//! read their answers. The state lock is held from the first decision until the histories are
//! recorded, so queries never see an unacknowledged change or a batch without its histories.
//! If the append fails, the state is ahead of the log: the writer stops and every later call is
//! refused until the ledger is reopened (which rebuilds the state from what is durable).
//!
//! Each batch is decided in a *turn* of the log (see [`sanad_log::Turn`]). On an embedded
//! store that is only the log's write lock. On a store other processes write too
//! (PostgreSQL), the turn waits for theirs to end and brings the entries they appended, which
//! the writer replays into the state before deciding: so every process decides on the whole
//! log, and their appends form one linear log. When no work comes, the writer still takes a
//! turn every [`REFRESH_EVERY`], so that queries see other processes' writes soon.

use std::sync::{Arc, mpsc};

use sanad_ledger::{Command, Context, Event, GroupRejection, Rejection};

use crate::{Applied, Error, Events, Shared, View};

/// The most commands one call may carry; a batch is at least one call and at most about this
/// many commands (plus expiries), which keeps it within the log's batch limits.
pub const CALL_COMMANDS_MAX: usize = 8_192;

/// The most holds released by expiry in one batch (the rest in the next ones).
pub(crate) const EXPIRIES_PER_BATCH: usize = 1_024;

pub(crate) enum Work {
    /// Independent commands, each answered on its own.
    Each(Vec<Command>),
    /// A linked group: all or nothing.
    Linked(Vec<Command>),
    /// Rotate the log's signing key (an entry of the log's own, committed on its own).
    RotateKey,
    /// Nothing to decide: answered once a turn has brought other processes' entries.
    Sync,
}

impl Work {
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Each(commands) | Self::Linked(commands) => commands.len(),
            Self::RotateKey => 1,
            Self::Sync => 0,
        }
    }
}

/// The answer to one job, before log indexes are known: entry offsets within the batch.
enum Decided {
    Each(Vec<Result<std::ops::Range<usize>, Rejection>>),
    Linked(Result<std::ops::Range<usize>, GroupRejection>),
    Synced,
}

pub(crate) type Reply = Result<Answer, Error>;

/// What a job gets back.
pub(crate) enum Answer {
    Each(Vec<Result<Applied, Rejection>>),
    Linked(Result<Applied, GroupRejection>),
    Rotated(Box<sanad_tlog::NoteVerifier>),
    Synced,
}

pub(crate) struct Job {
    pub(crate) work: Work,
    /// The principal the work comes from; its entries name it.
    pub(crate) by: Option<sanad_money::Id>,
    pub(crate) reply: mpsc::SyncSender<Reply>,
}

/// How long a writer on a shared store waits for work before it takes a turn anyway, to catch
/// up on other processes' entries (and release holds that expired).
pub(crate) const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Takes the jobs to decide next: waits for one, then takes what else is waiting up to the
/// batch size. `None` when the ledger is closing and nothing is left. On a shared store, none
/// after [`REFRESH_EVERY`] without work.
fn take_jobs(shared: &Shared) -> Option<Vec<Job>> {
    let mut jobs = crate::lock(&shared.jobs);
    while jobs.queue.is_empty() {
        if jobs.closing {
            return None;
        }
        if shared.log.is_shared() {
            let (waited, timeout) = shared
                .jobs_ready
                .wait_timeout(jobs, REFRESH_EVERY)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            jobs = waited;
            if timeout.timed_out() && jobs.queue.is_empty() && !jobs.closing {
                return Some(Vec::new());
            }
            continue;
        }
        jobs = shared.jobs_ready.wait(jobs).unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    let mut taken = Vec::new();
    let mut commands = 0;
    while let Some(job) = jobs.queue.front() {
        let rotation = matches!(job.work, Work::RotateKey);
        if !taken.is_empty() && (rotation || commands + job.work.len() > CALL_COMMANDS_MAX) {
            break;
        }
        if rotation {
            // A key rotation is committed on its own.
            taken.extend(jobs.queue.pop_front());
            break;
        }
        commands += job.work.len();
        taken.extend(jobs.queue.pop_front());
    }
    Some(taken)
}

pub(crate) fn run(shared: &Shared) {
    while let Some(jobs) = take_jobs(shared) {
        if let Err(error) = commit(shared, jobs) {
            shared.stop(&error);
            break;
        }
    }
    // Refuse whatever is still queued (after a failure) or arrives late.
    let mut jobs = crate::lock(&shared.jobs);
    jobs.closing = true;
    for job in jobs.queue.drain(..) {
        let _ = job.reply.send(Err(shared.stopped_error()));
    }
}

/// Replays what other writers appended (see [`sanad_log::Turn::caught_up`]) into the view.
fn catch_up(shared: &Shared, view: &mut View, turn: &sanad_log::Turn<'_>) -> Result<(), Error> {
    for (index, entry) in turn.caught_up() {
        crate::replay_one(view, &shared.archive, shared.recent_ids_max, *index, entry)?;
    }
    assert_eq!(view.size, turn.next_index(), "the state reflects the whole log");
    Ok(())
}

/// Rotates the log's key and steps the state over the hand-over entry.
fn rotate(shared: &Shared, job: Job) -> Result<(), Error> {
    let mut view = shared.write_view();
    let rotated = shared.log.begin_turn().map_err(Error::from).and_then(|turn| {
        catch_up(shared, &mut view, &turn)?;
        Ok(turn.rotate_key()?)
    });
    let verifier = match rotated {
        Ok(verifier) => verifier,
        Err(error) => {
            let _ = job.reply.send(Err(error.clone()));
            return Err(error);
        }
    };
    let index = view.size;
    let entry = shared.log.entry(index)?;
    view.state.replay_entry(index, &entry)?;
    view.size += 1;
    drop(view);
    let _ = job.reply.send(Ok(Answer::Rotated(Box::new(verifier))));
    Ok(())
}

fn commit(shared: &Shared, mut jobs: Vec<Job>) -> Result<(), Error> {
    if let [Job { work: Work::RotateKey, .. }] = jobs.as_slice() {
        return rotate(shared, jobs.remove(0));
    }
    let mut view = shared.write_view();
    let turn = shared.log.begin_turn()?;
    catch_up(shared, &mut view, &turn)?;
    assert_eq!(view.state.next_index(), view.size, "the state reflects the whole log");
    let now_ms = (shared.clock)().max(view.at_ms);
    let mut events: Vec<Event> = Vec::new();
    let expire = Command::ExpireDue { at_most: EXPIRIES_PER_BATCH };
    if let Ok(expired) = view.state.execute(&expire, &Context::at(now_ms)) {
        events.extend(expired);
    }
    // Where each job's events start: the expiries before them are the store's own.
    let mut starts = Vec::with_capacity(jobs.len());
    let mut decided = Vec::with_capacity(jobs.len());
    for job in &jobs {
        starts.push(events.len());
        let context = Context { now_ms, by: job.by.clone() };
        decided.push(match &job.work {
            Work::Each(commands) => Decided::Each(
                commands
                    .iter()
                    .map(|command| {
                        let start = events.len();
                        // A reversal of a transfer earlier in this batch: not in the log yet.
                        let filled = command.with_original_among(&events);
                        let command = filled.as_ref().unwrap_or(command);
                        events.extend(view.state.execute(command, &context)?);
                        Ok(start..events.len())
                    })
                    .collect(),
            ),
            Work::Linked(commands) => {
                let start = events.len();
                Decided::Linked(view.state.execute_linked(commands, &context).map(|group| {
                    events.extend(group);
                    start..events.len()
                }))
            }
            Work::Sync => Decided::Synced,
            Work::RotateKey => unreachable!("a key rotation is committed on its own"),
        });
    }
    let first_index = view.size;
    let commands: usize = jobs.iter().map(|job| job.work.len()).sum();
    let events = Arc::new(events);
    if !events.is_empty() {
        let mut entries: Vec<Vec<u8>> = Vec::with_capacity(events.len());
        let mut job_at = 0;
        for (offset, event) in events.iter().enumerate() {
            while job_at < jobs.len() && starts[job_at] <= offset {
                job_at += 1;
            }
            // Job `job_at - 1` caused this event; before the first job's start, the expiries.
            let by = job_at.checked_sub(1).and_then(|job| jobs[job].by.as_ref());
            entries.push(event.to_entry_by(by));
        }
        let count = entries.len() as u64;
        let appended = turn.append(entries).inspect_err(|error| {
            // The state is ahead of the log; answer everyone, then stop.
            for job in &jobs {
                let _ = job.reply.send(Err(Error::Stopped(error.to_string())));
            }
        })?;
        assert_eq!(appended.first_index, first_index, "the turn keeps the log for this batch");
        view.size = first_index + count;
        view.at_ms = now_ms;
    } else {
        turn.end()?;
    }
    // Durable: answer now, and record histories while the callers read their answers. The
    // write lock is still held, so no query sees the batch before its histories.
    // An answered retry names its original's entry (applied earlier, or in this batch).
    // `answered` is asked only for an answered retry: it costs a hash of the id.
    let applied = |range: std::ops::Range<usize>, answered: &dyn Fn() -> Option<u64>| Applied {
        log_index: if range.is_empty() {
            answered()
        } else {
            Some(first_index + range.start as u64)
        },
        events: Events::of(&events, range),
    };
    for (job, decided) in jobs.into_iter().zip(decided) {
        let answer = match (decided, &job.work) {
            (Decided::Each(results), Work::Each(commands)) => Answer::Each(
                results
                    .into_iter()
                    .zip(commands)
                    .map(|(result, command)| {
                        result.map(|range| applied(range, &|| view.state.answer_index(command)))
                    })
                    .collect(),
            ),
            (Decided::Linked(result), Work::Linked(commands)) => {
                Answer::Linked(result.map(|range| {
                    applied(range, &|| commands.iter().find_map(|c| view.state.answer_index(c)))
                }))
            }
            (Decided::Synced, Work::Sync) => Answer::Synced,
            _ => unreachable!("a job is answered as the kind of work it brought"),
        };
        // A caller that gave up waiting is not an error: its work is durable.
        let _ = job.reply.send(Ok(answer));
    }
    let View { state, histories, .. } = &mut *view;
    for (offset, event) in events.iter().enumerate() {
        histories.record(first_index + offset as u64, state, event);
    }
    crate::archive_when_full(&shared.archive, &mut view.state, shared.recent_ids_max)?;
    drop(view);
    if let Some(on_commit) = shared.on_commit.as_ref().filter(|_| commands > 0) {
        on_commit(commands);
    }
    shared.maybe_snapshot()?;
    Ok(())
}
