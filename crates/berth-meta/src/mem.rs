use crate::cf::Cf;
use crate::kv::{counter_value, Batch, KvError, KvStore, Op, Rows};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::RwLock;

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

/// An in-memory engine: the same contract as RocksDB, nothing durable.
#[derive(Default)]
pub struct MemStore {
    cfs: RwLock<HashMap<Cf, Tree>>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }
}

impl KvStore for MemStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let g = self.cfs.read().expect("lock");
        Ok(g.get(&cf).and_then(|m| m.get(key).cloned()))
    }

    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, KvError> {
        let g = self.cfs.read().expect("lock");
        let Some(m) = g.get(&cf) else {
            return Ok(Vec::new());
        };
        let lower = match start_after {
            Some(k) => Bound::Excluded(k.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        Ok(m.range((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(&self, batch: Batch) -> Result<(), KvError> {
        // One write lock for the checks and the writes: nothing interleaves.
        let mut g = self.cfs.write().expect("lock");
        for c in &batch.conds {
            let now = g.get(&c.cf).and_then(|m| m.get(&c.key));
            if now != c.expect.as_ref() {
                return Err(KvError::Conflict);
            }
        }
        for op in batch.ops {
            match op {
                Op::Put(cf, k, v) => {
                    g.entry(cf).or_default().insert(k, v);
                }
                Op::Delete(cf, k) => {
                    if let Some(m) = g.get_mut(&cf) {
                        m.remove(&k);
                    }
                }
                Op::Add(cf, k, delta) => {
                    let m = g.entry(cf).or_default();
                    let n = counter_value(m.get(&k).map(Vec::as_slice)).wrapping_add(delta);
                    m.insert(k, n.to_le_bytes().to_vec());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod contract_tests {
    crate::contract_suite!(|| (super::MemStore::new(), ()));
}
