use crate::cf::Cf;
use crate::kv::{counter_value, Batch, KvError, KvStore, Op, Rows};
use rocksdb::{
    ColumnFamilyDescriptor, Direction, ErrorKind, IteratorMode, OptimisticTransactionDB,
    OptimisticTransactionOptions, Options, ReadOptions, WriteBatchWithTransaction, WriteOptions,
};
use std::path::Path;

/// The RocksDB engine: one database, one column family per record kind.
///
/// Opened as an `OptimisticTransactionDB`: a batch with conditions runs as
/// a RocksDB optimistic transaction (each condition key read with
/// `get_for_update`, so RocksDB itself detects a write to it between the
/// check and the commit); a batch without conditions is a plain atomic
/// write batch.
///
/// Commits are validated in parallel under striped lock buckets; RocksDB's
/// default of 2^20 costs 40 MiB resident (docs/performance.md, run 6), so
/// Berth opens with [`OCC_LOCK_BUCKETS`] through the vendored crate's
/// `open_cf_descriptors_with_occ_lock_buckets`.
pub struct RocksStore {
    db: OptimisticTransactionDB,
    /// Sync the write-ahead log before a write returns (default). Off: a
    /// write survives a crash of Berth (it is in the kernel) but not of the
    /// machine.
    sync: bool,
    /// The syncs of the log that flushed writes share ([`LogSync`]).
    log: LogSync,
    /// The block cache every column family shares.
    cache: rocksdb::Cache,
}

/// Group commit of the write-ahead log. A flushed write is written without
/// a sync (RocksDB appends it to the log in the kernel and makes it
/// visible), then waits for one sync of the log that began after it was
/// written: one writer runs the sync while those who wrote meanwhile wait
/// for the next, which one of them runs for all. RocksDB's own `sync`
/// writes would hold its write queue through every sync, so that every
/// other write — unflushed ones included — queued behind it (durable
/// 1 MiB pushes at 8 clients ran 1.2–1.3 × as fast with the log synced this
/// way; docs/performance.md).
///
/// A write is visible before its sync returns. That is safe because the
/// log is written in order: whoever acts on what it read makes a flushed
/// write of its own first (or [`KvStore::flush`]es), and that sync covers
/// every write it could have read. Should a sync fail, the writes since the
/// last good one may be visible and not durable: the store then refuses
/// every write until it is reopened (a restart replays the log as far as
/// the disk has it).
#[derive(Default)]
struct LogSync {
    s: std::sync::Mutex<LogSyncState>,
    done: std::sync::Condvar,
}

impl LogSync {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogSyncState> {
        self.s.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct LogSyncState {
    /// Syncs begun, and finished, since the store opened: one is running
    /// while `started > finished` (and none has failed).
    started: u64,
    finished: u64,
    /// The error of a failed sync: every write is refused from then on.
    failed: Option<String>,
}

/// The error of a write whose sync of the log failed, and of every write
/// after it: not retryable (the store stays refusing until reopened), and
/// the batch may be visible though not durable.
fn unflushed(e: &str) -> KvError {
    KvError::Engine(format!(
        "the metadata log could not be flushed ({e}): writes since the last \
         flush may be lost, and every write is refused until Berth restarts"
    ))
}

/// Lock buckets for parallel commit validation: a bucket is held only while
/// a commit checks its keys, so a few thousand keep collisions rare at any
/// concurrency this server sees (about 160 KiB resident).
pub const OCC_LOCK_BUCKETS: u32 = 4096;

fn engine(e: rocksdb::Error) -> KvError {
    match e.kind() {
        // Optimistic transactions report a conflicting write as Busy, and
        // TryAgain when the memtable history is too short to tell.
        ErrorKind::Busy | ErrorKind::TryAgain => KvError::Conflict,
        ErrorKind::TimedOut | ErrorKind::Incomplete => KvError::Unavailable(e.into_string()),
        // RocksDB's IOError subcode kNoSpace is only in the message
        ErrorKind::IOError if e.as_ref().contains("No space left") => {
            KvError::NoSpace(e.into_string())
        }
        _ => KvError::Engine(e.into_string()),
    }
}

/// The metadata store's memory by default (`metadata.memory_bytes`).
pub const DEFAULT_MEMORY_BYTES: usize = 64 << 20;

impl RocksStore {
    /// Open (creating if needed) the database at `path` with the default
    /// memory budget. Fails when another process holds it (RocksDB's LOCK
    /// file).
    pub fn open(path: &Path) -> Result<RocksStore, KvError> {
        RocksStore::open_with_memory(path, DEFAULT_MEMORY_BYTES)
    }

    /// Open with `memory` bytes for RocksDB's caches: half for one block
    /// cache shared by every column family (left to defaults, each would
    /// make its own 32 MiB one), holding data, index and filter blocks; half
    /// for the memtables, whose total starts a flush when it reaches that
    /// (by default each column family could hold 2 × 64 MiB). (Charging the
    /// memtables to the block cache instead was measured to reserve
    /// hundreds of MiB in it for a few MiB of memtables.)
    pub fn open_with_memory(path: &Path, memory: usize) -> Result<RocksStore, KvError> {
        let cache = rocksdb::Cache::new_lru_cache(memory / 2);
        let wbm = rocksdb::WriteBufferManager::new_write_buffer_manager(memory / 2, false);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_write_buffer_manager(&wbm);
        let cfs = Cf::ALL.iter().map(|cf| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            o.set_block_based_table_factory(&table);
            o.set_write_buffer_size(memory / 4);
            if *cf == Cf::Counters {
                o.set_merge_operator_associative("berth_add_i64", add_i64);
                // Hot counters (instance blobs and bytes, a repository's
                // bytes) get a merge in nearly every transaction: collapse
                // them on write, or every read of the key — the commit's
                // conflict check among them — walks all pending operands.
                // Strict: also once the base value has been flushed to an
                // SST file (else a long run of merges after the first
                // memtable flush is quadratic again).
                o.set_max_successive_merges(64);
                o.set_strict_max_successive_merges(true);
            }
            ColumnFamilyDescriptor::new(cf.name(), o)
        });
        let db = OptimisticTransactionDB::open_cf_descriptors_with_occ_lock_buckets(
            &opts,
            path,
            cfs,
            OCC_LOCK_BUCKETS,
        )
        .map_err(engine)?;
        Ok(RocksStore {
            db,
            sync: true,
            log: LogSync::default(),
            cache,
        })
    }

    /// Whether each write syncs the write-ahead log (see the `sync` field).
    pub fn synced(mut self, sync: bool) -> RocksStore {
        self.sync = sync;
        self
    }

    /// Return once a sync of the log that began after this call has
    /// finished: every write that returned before the call is then durable.
    fn sync_log(&self) -> Result<(), KvError> {
        let mut st = self.log.lock();
        // one running now may have begun before the caller's write
        let need = st.started + 1;
        loop {
            if let Some(e) = &st.failed {
                return Err(unflushed(e));
            }
            if st.finished >= need {
                return Ok(());
            }
            if st.started > st.finished {
                st = self.log.done.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.started += 1;
            let mine = st.started;
            drop(st);
            let r = self.db.flush_wal(true);
            st = self.log.lock();
            match r {
                Ok(()) => st.finished = mine,
                Err(e) => st.failed = Some(e.into_string()),
            }
            self.log.done.notify_all();
        }
    }

    /// Refuse writes after a failed sync of the log (see [`LogSync`]).
    fn writable(&self) -> Result<(), KvError> {
        let st = self.log.lock();
        match &st.failed {
            Some(e) => Err(unflushed(e)),
            None => Ok(()),
        }
    }

    /// Apply a batch without syncing the log (RocksDB writes it to the log
    /// in the kernel before the batch becomes visible).
    fn apply(&self, batch: Batch) -> Result<(), KvError> {
        let wo = WriteOptions::default();
        if batch.conds.is_empty() {
            let mut wb = WriteBatchWithTransaction::<true>::default();
            for op in batch.ops {
                match op {
                    Op::Put(cf, k, v) => wb.put_cf(self.handle(cf)?, k, v),
                    Op::Delete(cf, k) => wb.delete_cf(self.handle(cf)?, k),
                    Op::Add(cf, k, d) => wb.merge_cf(self.handle(cf)?, k, d.to_le_bytes()),
                }
            }
            return self.db.write_opt(wb, &wo).map_err(engine);
        }
        let tx = self
            .db
            .transaction_opt(&wo, &OptimisticTransactionOptions::default());
        for c in &batch.conds {
            let now = tx
                .get_pinned_for_update_cf(self.handle(c.cf)?, &c.key, true)
                .map_err(engine)?;
            if now.as_deref() != c.expect.as_deref() {
                // Dropping an uncommitted transaction discards it.
                return Err(KvError::Conflict);
            }
        }
        for op in batch.ops {
            match op {
                Op::Put(cf, k, v) => tx.put_cf(self.handle(cf)?, k, v).map_err(engine)?,
                Op::Delete(cf, k) => tx.delete_cf(self.handle(cf)?, k).map_err(engine)?,
                Op::Add(cf, k, d) => tx
                    .merge_cf(self.handle(cf)?, k, d.to_le_bytes())
                    .map_err(engine)?,
            }
        }
        tx.commit().map_err(engine)
    }

    fn handle(&self, cf: Cf) -> Result<&rocksdb::ColumnFamily, KvError> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| KvError::Engine(format!("missing column family {}", cf.name())))
    }
}

impl KvStore for RocksStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.db.get_cf(self.handle(cf)?, key).map_err(engine)
    }

    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, KvError> {
        let mut ro = ReadOptions::default();
        // Bound the iterator to the prefix so RocksDB stops at its end.
        if let Some(upper) = crate::kv::prefix_end(prefix) {
            ro.set_iterate_upper_bound(upper);
        }
        let from: Vec<u8> = match start_after {
            Some(k) => {
                let mut k = k.to_vec();
                k.push(0); // smallest key strictly greater than start_after
                k
            }
            None => prefix.to_vec(),
        };
        let it = self.db.iterator_cf_opt(
            self.handle(cf)?,
            ro,
            IteratorMode::From(&from, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in it {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(engine)?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    fn write(&self, batch: Batch) -> Result<(), KvError> {
        self.writable()?;
        let flush = self.sync && !batch.no_sync;
        self.apply(batch)?;
        if flush {
            self.sync_log()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), KvError> {
        if self.sync {
            self.sync_log()?;
        }
        Ok(())
    }

    fn stats(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for cf in Cf::ALL {
            let Ok(h) = self.handle(cf) else { continue };
            if let Ok(Some(n)) = self
                .db
                .property_int_value_cf(h, "rocksdb.estimate-num-keys")
            {
                out.push((format!("keys:{}", cf.name()), n as f64));
            }
        }
        for (name, prop) in [
            ("live_data_bytes", "rocksdb.estimate-live-data-size"),
            ("sst_bytes", "rocksdb.total-sst-files-size"),
            ("memtable_bytes", "rocksdb.cur-size-all-mem-tables"),
            (
                "pending_compaction_bytes",
                "rocksdb.estimate-pending-compaction-bytes",
            ),
            ("running_compactions", "rocksdb.num-running-compactions"),
        ] {
            let mut total = 0u64;
            for cf in Cf::ALL {
                if let Ok(h) = self.handle(cf) {
                    total += self
                        .db
                        .property_int_value_cf(h, prop)
                        .ok()
                        .flatten()
                        .unwrap_or(0);
                }
            }
            out.push((name.to_string(), total as f64));
        }
        out.push((
            "block_cache_bytes".to_string(),
            self.cache.get_usage() as f64,
        ));
        // syncs of the log since the store opened: with concurrent
        // writers, fewer than the synced writes (group commit)
        out.push(("log_syncs".to_string(), self.log.lock().finished as f64));
        out
    }
}

/// The counters' merge operator: the sum of little-endian `i64`s.
fn add_i64(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let mut n = counter_value(existing);
    for op in operands {
        n = n.wrapping_add(counter_value(Some(op)));
    }
    Some(n.to_le_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    #[test]
    fn upper_bound() {
        assert_eq!(crate::kv::prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(crate::kv::prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(crate::kv::prefix_end(b"\xff"), None);
        assert_eq!(crate::kv::prefix_end(b""), None);
    }
}

#[cfg(test)]
mod contract_tests {
    use super::RocksStore;

    crate::contract_suite!(|| {
        let dir = tempfile::tempdir().unwrap();
        (RocksStore::open(dir.path()).unwrap(), dir)
    });

    /// One of the store's reported figures, by name.
    fn figure(s: &RocksStore, name: &str) -> f64 {
        use crate::KvStore;
        s.stats()
            .into_iter()
            .find(|(k, _)| k == name)
            .expect("reported")
            .1
    }

    #[test]
    fn survives_reopen_and_refuses_second_opener() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStore::open(dir.path()).unwrap();
            let mut b = crate::Batch::new();
            b.put(crate::cf::Cf::Repos, b"r".to_vec(), b"x".to_vec());
            crate::KvStore::write(&s, b).unwrap();
            assert!(
                RocksStore::open(dir.path()).is_err(),
                "second opener must be refused"
            );
        }
        let s = RocksStore::open(dir.path()).unwrap();
        assert_eq!(
            crate::KvStore::get(&s, crate::cf::Cf::Repos, b"r")
                .unwrap()
                .as_deref(),
            Some(&b"x"[..])
        );
    }

    /// A synced write returns after a sync of the log of its own or shared
    /// with writers beside it; an unsynced one and a read cause none; every
    /// write is there after a reopen.
    #[test]
    fn synced_writes_share_log_syncs() {
        use crate::cf::Cf;
        use crate::KvStore;
        let dir = tempfile::tempdir().unwrap();
        let syncs = |s: &RocksStore| figure(s, "log_syncs") as u64;
        let put = |s: &RocksStore, key: String, no_sync: bool| {
            let mut b = crate::Batch::new();
            b.put(Cf::Repos, key.into_bytes(), b"x".to_vec());
            b.no_sync = no_sync;
            s.write(b).unwrap();
        };
        {
            let s = RocksStore::open(dir.path()).unwrap();
            assert_eq!(syncs(&s), 0);
            // one at a time: each waits for a sync begun after it wrote
            for i in 0..10 {
                put(&s, format!("seq{i}"), false);
            }
            assert_eq!(syncs(&s), 10);
            for i in 0..10 {
                put(&s, format!("unsynced{i}"), true);
                s.get(Cf::Repos, b"seq0").unwrap();
            }
            assert_eq!(syncs(&s), 10);
            s.flush().unwrap();
            assert_eq!(syncs(&s), 11);
            // eight writers at once
            std::thread::scope(|t| {
                for w in 0..8 {
                    let s = &s;
                    t.spawn(move || {
                        for i in 0..100 {
                            put(s, format!("w{w}-{i}"), false);
                        }
                    });
                }
            });
            let n = syncs(&s) - 11;
            assert!((1..=800).contains(&n), "{n} syncs for 800 writes");
        }
        let s = RocksStore::open(dir.path()).unwrap();
        let rows = s.scan(Cf::Repos, b"", None, 10_000).unwrap();
        assert_eq!(rows.len(), 10 + 10 + 800);
    }

    /// `metadata.memory_bytes` bounds the block cache (half of it) and the
    /// memtables (the other half): writing and reading back ten times the
    /// budget over several column families keeps both under their halves,
    /// and everything written is read back.
    #[test]
    fn memory_budget_bounds_cache_and_memtables() {
        use crate::cf::Cf;
        use crate::KvStore;
        let dir = tempfile::tempdir().unwrap();
        let budget = 8 << 20;
        let s = RocksStore::open_with_memory(dir.path(), budget).unwrap();
        let value = vec![0x5a; 1000];
        let key = |cf: usize, i: u32| format!("k{cf}-{i:08}").into_bytes();
        let cfs = [Cf::Repos, Cf::Manifests, Cf::Tags, Cf::Blobs];
        let figure = |name: &str| figure(&s, name) as usize;
        let (mut cache, mut memtables) = (0usize, 0usize);
        for i in 0..20_000u32 {
            let mut b = crate::Batch::new();
            for (n, cf) in cfs.iter().enumerate() {
                b.put(*cf, key(n, i), value.clone());
            }
            s.write(b).unwrap();
            if i % 100 == 0 {
                cache = cache.max(figure("block_cache_bytes"));
                memtables = memtables.max(figure("memtable_bytes"));
            }
        }
        // 80 MB written: ten times the budget
        for i in (0..20_000u32).step_by(7) {
            for (n, cf) in cfs.iter().enumerate() {
                assert_eq!(s.get(*cf, &key(n, i)).unwrap().as_deref(), Some(&value[..]));
            }
            if i % 700 == 0 {
                cache = cache.max(figure("block_cache_bytes"));
            }
        }
        assert!(cache > 0 && memtables > 0, "both used: {cache} {memtables}");
        // a flush starts at half the budget; one memtable more may fill
        // while it runs
        assert!(
            memtables <= budget / 2 + budget / 4,
            "memtables {memtables}, budget {budget}"
        );
        assert!(
            cache <= budget / 2 + (1 << 20),
            "block cache {cache}, budget {budget}"
        );
    }
}
