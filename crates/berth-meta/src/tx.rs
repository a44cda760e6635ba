//! Transactions: read, check and write as one atomic step, retried on
//! conflict (garage's `Db::transaction` shape over the conditional batches
//! of [`KvStore::write`]).
//!
//! A [`Tx`] records the value of every key it reads with [`Tx::get`]; at
//! commit those become the batch's conditions, so the writes apply only if
//! nothing read has changed since — the result is as if the transaction ran
//! alone at the moment it committed. [`Meta::transact`] runs the closure
//! again, from fresh reads, when another writer got there first.
//!
//! Three ways to read, by what the transaction may tolerate:
//! - [`Tx::get`]: the value is a condition of the commit.
//! - [`Tx::peek`]: a current value that may change before the commit
//!   without harm (a timestamp the transaction overwrites anyway). Two
//!   transactions that only peek at and blindly write a key never conflict.
//! - [`Tx::scan`]: committed rows of a range, not conditions: a row added to
//!   the range after the scan does not stop the commit. A transaction that
//!   depends on what a range holds also reads (with `get`) a *guard key*
//!   that every writer of that range writes. The guards used in `Meta`:
//!   the repository record for everything in a repository, the manifest
//!   record for the tags pointing at it, the blob record for the links to a
//!   blob, the registry record for its users.

use crate::cf::Cf;
use crate::kv::{Batch, KvStore, Op, Rows};
use crate::meta::{dec, enc, Meta, MetaError};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::time::Duration;

type Result<T> = std::result::Result<T, MetaError>;

/// How many times a conflicting transaction is run at least before giving
/// up with [`MetaError::Contended`] ...
pub const MAX_ATTEMPTS: u32 = 64;
/// ... and for how long at least: over a networked engine an attempt takes
/// a millisecond or more, and many writers of one key (two replicas
/// hammering one counter) could otherwise starve one of them within 64.
pub const MIN_PERSISTENCE: Duration = Duration::from_secs(3);

/// One attempt of a transaction. Built by [`Meta::transact`].
pub struct Tx<'a> {
    kv: &'a dyn KvStore,
    /// Keys read with `get`, and what they held: the commit's conditions.
    read: HashMap<(Cf, Vec<u8>), Option<Vec<u8>>>,
    /// This transaction's writes so far, for reads of keys it wrote.
    written: HashMap<(Cf, Vec<u8>), Option<Vec<u8>>>,
    ops: Vec<Op>,
    no_sync: bool,
}

impl<'a> Tx<'a> {
    fn new(kv: &'a dyn KvStore) -> Tx<'a> {
        Tx {
            kv,
            read: HashMap::new(),
            written: HashMap::new(),
            ops: Vec::new(),
            no_sync: false,
        }
    }

    /// Read `key`; the commit requires it to hold the same value then. A key
    /// this transaction wrote reads as written.
    pub fn get(&mut self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let k = (cf, key.to_vec());
        if let Some(v) = self.written.get(&k) {
            return Ok(v.clone());
        }
        if let Some(v) = self.read.get(&k) {
            return Ok(v.clone());
        }
        let v = self.kv.get(cf, key)?;
        self.read.insert(k, v.clone());
        Ok(v)
    }

    /// Read `key` without making its value a condition of the commit.
    pub fn peek(&mut self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let k = (cf, key.to_vec());
        if let Some(v) = self.written.get(&k).or_else(|| self.read.get(&k)) {
            return Ok(v.clone());
        }
        Ok(self.kv.get(cf, key)?)
    }

    /// [`Tx::get`], decoded.
    pub fn get_as<T: DeserializeOwned>(&mut self, cf: Cf, key: &[u8]) -> Result<Option<T>> {
        self.get(cf, key)?.map(|v| dec(cf, &v)).transpose()
    }

    /// [`Tx::peek`], decoded.
    pub fn peek_as<T: DeserializeOwned>(&mut self, cf: Cf, key: &[u8]) -> Result<Option<T>> {
        self.peek(cf, key)?.map(|v| dec(cf, &v)).transpose()
    }

    /// Committed rows of a range (see the module docs: not conditions, and
    /// this transaction's own writes are not merged in).
    pub fn scan(
        &mut self,
        cf: Cf,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows> {
        Ok(self.kv.scan(cf, prefix, start_after, limit)?)
    }

    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let (key, value) = (key.into(), value.into());
        self.written.insert((cf, key.clone()), Some(value.clone()));
        self.ops.push(Op::Put(cf, key, value));
    }

    /// [`Tx::put`] of a record, encoded.
    pub fn put_as<T: Serialize>(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: &T) {
        self.put(cf, key, enc(value));
    }

    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.written.insert((cf, key.clone()), None);
        self.ops.push(Op::Delete(cf, key));
    }

    /// Add to a counter (blind: never a conflict; see [`crate::Op::Add`]).
    /// A `get` of the counter in this transaction does not see the add.
    pub fn add(&mut self, cf: Cf, key: impl Into<Vec<u8>>, delta: i64) {
        self.ops.push(Op::Add(cf, key.into(), delta));
    }

    /// Commit without waiting for the disk (see [`Batch::no_sync`]).
    pub fn no_sync(&mut self) {
        self.no_sync = true;
    }

    fn into_batch(self) -> Batch {
        let mut b = Batch {
            ops: self.ops,
            conds: Vec::with_capacity(self.read.len()),
            no_sync: self.no_sync,
        };
        for ((cf, key), expect) in self.read {
            b.expect(cf, key, expect);
        }
        // A transaction that writes nothing is checked, not flushed.
        if b.ops.is_empty() {
            b.no_sync = true;
        }
        b
    }
}

/// Reads for a check that runs inside a transaction (a [`Tx`]: what it
/// reads with `read` becomes a condition of the commit) and outside one (an
/// engine: a filter or an estimate), so that both are one piece of code.
pub(crate) trait Reads {
    fn read(&mut self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Committed rows with this prefix, at most `n`.
    fn range(&mut self, cf: Cf, prefix: &[u8], n: usize) -> Result<Rows>;
}

impl Reads for Tx<'_> {
    fn read(&mut self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get(cf, key)
    }
    fn range(&mut self, cf: Cf, prefix: &[u8], n: usize) -> Result<Rows> {
        self.scan(cf, prefix, None, n)
    }
}

impl Reads for &dyn KvStore {
    fn read(&mut self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get(cf, key)?)
    }
    fn range(&mut self, cf: Cf, prefix: &[u8], n: usize) -> Result<Rows> {
        Ok(self.scan(cf, prefix, None, n)?)
    }
}

/// Pause before attempt `n` (from 1): exponential from 50 µs, capped at
/// 10 ms, with jitter so that colliding writers spread out.
fn backoff(n: u32) {
    let cap = (50u64 << n.min(8)).min(10_000);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    std::thread::sleep(Duration::from_micros(cap / 2 + jitter % (cap / 2 + 1)));
}

impl Meta {
    /// Run `f` as one transaction: its `get`s are checked and its writes
    /// applied atomically and durably, or not at all. On a conflict with
    /// another writer (or an engine that is briefly unavailable) `f` runs
    /// again from fresh reads, until it has run [`MAX_ATTEMPTS`] times and
    /// for [`MIN_PERSISTENCE`]; then the result is [`MetaError::Contended`]. An error from `f` aborts: nothing
    /// is written.
    ///
    /// `f` may run more than once, so it must not have effects outside the
    /// transaction. Blocking: call from a blocking context ([`Meta::run`]).
    pub fn transact<T, E>(
        &self,
        mut f: impl FnMut(&mut Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<MetaError>,
    {
        let mut attempt = 0;
        let started = std::time::Instant::now();
        loop {
            attempt += 1;
            let mut tx = Tx::new(self.kv());
            let out = f(&mut tx)?;
            if tx.ops.is_empty() && tx.read.is_empty() {
                return Ok(out);
            }
            match self.kv().write(tx.into_batch()) {
                Ok(()) => return Ok(out),
                Err(e)
                    if e.is_retryable()
                        && (attempt < MAX_ATTEMPTS || started.elapsed() < MIN_PERSISTENCE) =>
                {
                    tracing::debug!(attempt, error = %e, "metadata transaction retried");
                    backoff(attempt);
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(attempts = attempt, error = %e, "metadata transaction gave up");
                    return Err(MetaError::Contended(attempt).into());
                }
                Err(e) => return Err(MetaError::from(e).into()),
            }
        }
    }
}
