//! The engine seam: what a metadata engine must provide, and what it
//! promises.

use crate::cf::Cf;

/// What an engine reports. Callers tell the cases apart:
/// [`KvError::Conflict`] and [`KvError::Unavailable`] may succeed when the
/// whole read-check-write sequence is tried again ([`KvError::is_retryable`]);
/// [`KvError::Engine`] will not.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// A condition of the batch did not hold when it was checked, or a key
    /// it names was written by another writer between the check and the
    /// commit. Nothing of the batch was applied. Re-read and try again.
    #[error("write conflict: a key read by this write changed")]
    Conflict,
    /// The engine could not do it now (busy, timed out, connection lost
    /// before the write was sent). Nothing was applied; trying again later
    /// may succeed.
    #[error("metadata engine unavailable: {0}")]
    Unavailable(String),
    /// The engine's disk is full: nothing was applied; writes work again
    /// once space is freed.
    #[error("metadata engine out of space: {0}")]
    NoSpace(String),
    /// Anything else: I/O errors, corruption, a missing column family.
    /// Whether a failed write was applied is unknown only if the engine says
    /// so in the message; RocksDB applies all of a batch or nothing.
    #[error("metadata engine error: {0}")]
    Engine(String),
}

impl KvError {
    /// Whether running the same transaction again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, KvError::Conflict | KvError::Unavailable(_))
    }
}

/// The smallest key greater than every key starting with `prefix`, if any
/// (none when the prefix is empty or all `0xff`): a scan's upper bound.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Key-value rows as returned by [`KvStore::scan`].
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// One write of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
    /// Add to a counter: an 8-byte little-endian `i64`, absent = 0. Blind:
    /// concurrent adds never conflict and none is lost (RocksDB: a merge
    /// operator; PostgreSQL: `v = v + delta`). Only in [`Cf::Counters`].
    Add(Cf, Vec<u8>, i64),
}

/// The value of a counter as stored ([`Op::Add`]).
pub fn counter_value(v: Option<&[u8]>) -> i64 {
    v.and_then(|b| b.try_into().ok())
        .map(i64::from_le_bytes)
        .unwrap_or(0)
}

/// A condition a batch is applied under: the key holds exactly `expect`
/// (`None`: the key is absent) at the moment the batch commits.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub cf: Cf,
    pub key: Vec<u8>,
    pub expect: Option<Vec<u8>>,
}

/// An atomic group of writes, applied only if every condition holds.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub ops: Vec<Op>,
    /// Checked atomically with the writes (see [`KvStore::write`]).
    pub conds: Vec<Cond>,
    /// Skip the flush for this batch: it becomes durable with the next
    /// flushed write (the log is written in order), or is lost with the
    /// machine before that. For records whose loss costs nothing
    /// acknowledged, such as a new, empty upload session.
    pub no_sync: bool,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(cf, key.into(), value.into()));
    }
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(cf, key.into()));
    }
    /// Add `delta` to a counter (see [`Op::Add`]).
    pub fn add(&mut self, cf: Cf, key: impl Into<Vec<u8>>, delta: i64) {
        self.ops.push(Op::Add(cf, key.into(), delta));
    }
    /// Apply the batch only if `key` holds `expect` (`None`: is absent).
    pub fn expect(&mut self, cf: Cf, key: impl Into<Vec<u8>>, expect: Option<Vec<u8>>) {
        self.conds.push(Cond {
            cf,
            key: key.into(),
            expect,
        });
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The metadata engine contract. Every engine passes the suite in
/// `contract.rs` (run for RocksDB and the in-memory engine).
///
/// Ordering: keys within a column family are ordered bytewise; column
/// families are independent key spaces.
///
/// Visibility: a read sees every write that returned `Ok` before the read
/// started (read-your-writes across threads of one process, and across
/// processes for a shared engine). Reads are not a snapshot: two reads may
/// see different states. Consistency between reads and a later write comes
/// only from conditions ([`Batch::conds`]); `Meta::transact` builds them.
///
/// Errors: every method returns [`KvError::Engine`] for failures that a
/// retry will not fix, [`KvError::Unavailable`] for ones it may; only
/// [`KvStore::write`] returns [`KvError::Conflict`].
pub trait KvStore: Send + Sync + 'static {
    /// The value of `key`, or `None`.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;

    /// Up to `limit` entries whose key starts with `prefix`, in key order,
    /// starting strictly after `start_after` when given (which must itself
    /// start with `prefix`). Costs one seek plus the rows returned,
    /// however many keys the column family holds.
    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, KvError>;

    /// Apply a batch atomically: every condition is checked and every op
    /// applied, in order (a later op on a key wins), as one step that no
    /// other write interleaves with. If a condition does not hold, or
    /// another writer changed a key a condition names between its check and
    /// the commit, nothing is applied and the result is
    /// [`KvError::Conflict`].
    ///
    /// Durability: on `Ok` the batch survives a crash of the process or the
    /// machine right after, unless it is `no_sync`: then it survives a crash
    /// of the process, and of the machine once a later flushed write has
    /// returned. (An engine configured without flushes, `storage.sync =
    /// false`, gives the `no_sync` guarantee to every batch.)
    ///
    /// On any error other than `Ok`, nothing of the batch is visible —
    /// except a [`KvError::Engine`] error of a failed flush, where the
    /// batch may be visible but not durable (RocksDB's group commit,
    /// `rocks.rs`; the store then refuses every write until reopened).
    fn write(&self, batch: Batch) -> Result<(), KvError>;

    /// Make every write that has returned `Ok` durable, `no_sync` ones
    /// included (a flush of the log). A no-op for an engine that flushes
    /// every write, or is configured not to flush at all.
    fn flush(&self) -> Result<(), KvError> {
        Ok(())
    }

    /// Whether reads are cheap enough to run on the async executor's
    /// threads (an embedded engine: microseconds from memory or local
    /// disk). A networked engine says `false`, and `Meta::read` sends its
    /// reads to the blocking pool instead.
    fn inline_reads(&self) -> bool {
        true
    }

    /// Counts an engine can report cheaply (for `/metrics`): estimated keys
    /// per column family and engine-specific figures, as (name, value).
    /// Estimates, not exact counts.
    fn stats(&self) -> Vec<(String, f64)> {
        Vec::new()
    }
}
