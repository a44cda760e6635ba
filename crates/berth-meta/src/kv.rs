use crate::cf::Cf;

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("metadata engine error: {0}")]
    Engine(String),
}

/// Key-value rows as returned by [`KvStore::scan`].
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// One write of a batch.
#[derive(Debug, Clone)]
pub enum Op {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
}

/// An atomic group of writes.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub ops: Vec<Op>,
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
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The metadata engine contract.
///
/// - Keys within a column family are ordered bytewise.
/// - [`KvStore::write`] applies every op of the batch or none, in order, and
///   is durable when it returns `Ok` (it survives a crash of the process or
///   the machine right after), unless the batch is `no_sync`: then it
///   survives a crash of the process, and of the machine once a later
///   flushed write has returned.
/// - Reads see every write that returned before they started.
/// - Nothing here serialises read-modify-write sequences: callers that need
///   that (the [`crate::Meta`] layer) hold their own locks.
pub trait KvStore: Send + Sync + 'static {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;

    /// Up to `limit` entries whose key starts with `prefix`, in key order,
    /// starting strictly after `start_after` when given (which must itself
    /// start with `prefix`).
    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, KvError>;

    fn write(&self, batch: Batch) -> Result<(), KvError>;
}
