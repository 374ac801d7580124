//! Integration: folding committed entries into the Merkle tree and signing checkpoints, on a
//! thread of its own, so that this CPU work overlaps the next commit's fsync instead of adding
//! to it (the split Tessera calls sequencing and integration).
//!
//! A commit makes entries durable and answers their callers at once; it then hands the entries
//! to the integrator. The integrator hashes them and folds them into the tree's right edge, collects the
//! tiles they complete and signs one checkpoint for everything it has folded in. The result
//! waits in a *slot*: the next commit writes it in its own atomic batch, or, when no commit comes
//! soon, the integrator writes it alone. So:
//! - an acknowledged append is durable, and a checkpoint covering it is durable shortly after
//!   ([`Log::wait_for_checkpoint`](crate::Log::wait_for_checkpoint) waits for it);
//! - proofs and exports always use the latest durable checkpoint;
//! - after a crash, durable entries beyond the stored checkpoint are integrated on open;
//! - a key rotation is integrated synchronously: its entry and the checkpoint both keys sign are
//!   written in one atomic batch, as `keys::finish_rotation` assumes.
//!
//! Every write to storage happens under `Shared::writing`, which also holds the durable size;
//! the slot is only ever emptied under it, so checkpoints are written in integration order.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::Duration;

use sanad_tlog::NoteSigner;
use sanad_tlog::checkpoint::{Checkpoint, SignedCheckpoint};
use sanad_tlog::hash::Hash;
use sanad_tlog::rotation::KeyRotation;
use sanad_tlog::tile::{CompletedTile, TileEdge};

use crate::store::Head;
use crate::{Error, Shared, lock};

/// How long a finished integration waits for a commit to carry it before the integrator writes
/// it alone: longer than one caller takes to prepare its next append (a ledger deciding 8,000
/// transfers takes about 10 ms), short enough that an idle log's checkpoint follows its last
/// append well within a person's patience. At 1 ms, a caller appending a thousand entries at a
/// time paid a second fsync per append: the checkpoint's own write, which its next append
/// then waited behind.
const WRITE_ALONE_AFTER: Duration = Duration::from_millis(20);

/// Tree work done, waiting to be written.
pub(crate) struct Integration {
    pub(crate) head: Head,
    pub(crate) tiles: Vec<CompletedTile>,
}

pub(crate) enum Message {
    /// Committed entries, in order, as the appends that brought them.
    Entries(Vec<Vec<Vec<u8>>>),
    /// Integrate a key rotation entry now, signed by both keys, and answer with the entry and
    /// the integration covering everything up to it; sign later checkpoints with the new key.
    Rotate { next: Box<NoteSigner>, reply: SyncSender<Result<(Vec<u8>, Integration), Error>> },
}

/// Folds `leaves` into `edge` and signs a checkpoint for the result with `signers`.
pub(crate) fn integrate(
    edge: &mut TileEdge,
    leaves: &[Hash],
    signers: &[&NoteSigner],
    tiles: &mut Vec<CompletedTile>,
) -> Result<SignedCheckpoint, Error> {
    for leaf in leaves {
        edge.push(*leaf, tiles);
    }
    let origin = signers.first().map(|s| s.name()).unwrap_or_default();
    Ok(Checkpoint::new(origin, edge.size(), edge.root())?.sign(signers)?)
}

/// The integrator's loop; it ends, after writing its last integration, when the log drops its
/// sender.
pub(crate) fn run(
    shared: &Shared,
    mut signer: NoteSigner,
    mut edge: TileEdge,
    messages: &Receiver<Message>,
) {
    let mut next = None;
    loop {
        let message = match next.take() {
            Some(message) => message,
            None => match messages.recv_timeout(WRITE_ALONE_AFTER) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => {
                    write_alone(shared, false);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    write_alone(shared, true);
                    return;
                }
            },
        };
        match message {
            Message::Entries(batches) => {
                let mut tiles = Vec::new();
                let mut pending = batches;
                // Fold in everything already waiting: one signature for all of it.
                loop {
                    for entry in pending.iter().flatten() {
                        edge.push(sanad_tlog::leaf_hash(entry), &mut tiles);
                    }
                    match messages.try_recv() {
                        Ok(Message::Entries(more)) => pending = more,
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                let result = integrate(&mut edge, &[], &[&signer], &mut tiles).map(|checkpoint| {
                    Integration { head: Head { edge: edge.clone(), checkpoint }, tiles }
                });
                offer(shared, result);
            }
            Message::Rotate { next: next_signer, reply } => {
                let next_signer = *next_signer;
                let result = KeyRotation::sign(&signer, &next_signer)
                    .map_err(Error::from)
                    .and_then(|entry| {
                        let mut tiles = Vec::new();
                        let leaf = sanad_tlog::leaf_hash(&entry);
                        let checkpoint =
                            integrate(&mut edge, &[leaf], &[&signer, &next_signer], &mut tiles)?;
                        Ok((
                            entry,
                            Integration { head: Head { edge: edge.clone(), checkpoint }, tiles },
                        ))
                    });
                if result.is_ok() {
                    signer = next_signer;
                }
                let _ = reply.send(result);
            }
        }
    }
}

/// Puts an integration in the slot, merging it with one not yet written (the newer checkpoint
/// supersedes; the tiles of both are kept).
fn offer(shared: &Shared, result: Result<Integration, Error>) {
    let mut slot = lock(&shared.slot);
    *slot = Some(match (slot.take(), result) {
        (Some(Ok(mut waiting)), Ok(newer)) => {
            waiting.tiles.extend(newer.tiles);
            Ok(Integration { head: newer.head, tiles: waiting.tiles })
        }
        (Some(Err(error)), _) | (_, Err(error)) => Err(error),
        (None, Ok(newer)) => Ok(newer),
    });
}

/// Takes the waiting integration, if any.
pub(crate) fn take(shared: &Shared) -> Result<Option<Integration>, Error> {
    lock(&shared.slot).take().transpose()
}

/// Writes the waiting integration on its own, unless a commit is under way (it will carry it).
/// On the last call (`wait`), waits for the commit instead of leaving the integration behind.
fn write_alone(shared: &Shared, wait: bool) {
    if lock(&shared.slot).is_none() {
        return;
    }
    let durable = if wait {
        lock(&shared.writing)
    } else {
        match shared.writing.try_lock() {
            Ok(guard) => guard,
            Err(_) => return,
        }
    };
    let result = take(shared).and_then(|integration| match integration {
        Some(integration) => write(shared, *durable, &[], Some(integration)),
        None => Ok(()),
    });
    if result.is_err() {
        shared.queue.stop();
    }
}

/// One atomic, durable write of entries and an integration; publishes the integration.
/// Callers hold `Shared::writing`.
pub(crate) fn write(
    shared: &Shared,
    first_index: u64,
    entries: &[&[u8]],
    integration: Option<Integration>,
) -> Result<(), Error> {
    let (tiles, checkpoint) = match &integration {
        Some(i) => (i.tiles.as_slice(), Some(&i.head.checkpoint)),
        None => (&[][..], None),
    };
    shared.store.write(first_index, entries, tiles, checkpoint)?;
    shared.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(integration) = integration {
        shared.publish(integration.head);
    }
    Ok(())
}
