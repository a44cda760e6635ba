use crate::cf::Cf;
use crate::kv::{Batch, KvError, KvStore, Op, Rows};
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteOptions, DB,
};
use std::path::Path;

/// The RocksDB engine: one database, one column family per record kind.
pub struct RocksStore {
    db: DB,
    /// Sync the write-ahead log on every write (default). Off: a write
    /// survives a crash of Berth (it is in the kernel) but not of the machine.
    sync: bool,
}

fn engine(e: rocksdb::Error) -> KvError {
    KvError::Engine(e.into_string())
}

impl RocksStore {
    /// Open (creating if needed) the database at `path`. Fails when another
    /// process holds it (RocksDB's LOCK file).
    pub fn open(path: &Path) -> Result<RocksStore, KvError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = Cf::ALL.iter().map(|cf| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(cf.name(), o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(engine)?;
        Ok(RocksStore { db, sync: true })
    }

    /// Whether each write syncs the write-ahead log (see the `sync` field).
    pub fn synced(mut self, sync: bool) -> RocksStore {
        self.sync = sync;
        self
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
        if let Some(upper) = prefix_upper_bound(prefix) {
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
        let mut wb = WriteBatch::default();
        let sync = self.sync && !batch.no_sync;
        for op in batch.ops {
            match op {
                Op::Put(cf, k, v) => wb.put_cf(self.handle(cf)?, k, v),
                Op::Delete(cf, k) => wb.delete_cf(self.handle(cf)?, k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo).map_err(engine)
    }
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut p = prefix.to_vec();
    while let Some(last) = p.pop() {
        if last < 0xff {
            p.push(last + 1);
            return Some(p);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn upper_bound() {
        assert_eq!(super::prefix_upper_bound(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(super::prefix_upper_bound(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(super::prefix_upper_bound(b"\xff"), None);
        assert_eq!(super::prefix_upper_bound(b""), None);
    }
}

#[cfg(test)]
mod contract_tests {
    use super::RocksStore;

    #[test]
    fn kv_contract() {
        let dir = tempfile::tempdir().unwrap();
        crate::contract::kv_basics(&RocksStore::open(dir.path()).unwrap());
    }

    #[test]
    fn meta_contract() {
        let dir = tempfile::tempdir().unwrap();
        crate::contract::meta_behaviour(RocksStore::open(dir.path()).unwrap());
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
}
