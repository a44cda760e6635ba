//! Moving an instance's metadata from one engine to another
//! (`berth migrate --from rocksdb --to postgres`, and back): every row of
//! every column family, in pages, into an engine that holds nothing yet,
//! then both read again side by side and compared row by row.

use crate::cf::Cf;
use crate::kv::{Batch, KvError, KvStore};

/// Rows per page read and per batch written.
const PAGE: usize = 1000;

/// Why a copy did not happen or did not match.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "the destination already holds metadata ({0} is not empty): copy only into an empty store"
    )]
    NotEmpty(&'static str),
    #[error("after the copy, {cf} differs at row {row}: the source changed during the copy, or the destination was written to")]
    Differs { cf: &'static str, row: u64 },
    #[error(transparent)]
    Kv(#[from] KvError),
}

/// Rows copied per column family (those with any).
#[derive(Debug, Default, PartialEq)]
pub struct Copied {
    pub rows: Vec<(&'static str, u64)>,
}

impl Copied {
    pub fn total(&self) -> u64 {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

/// Every row of `from` into `to`, which must be empty; then both compared.
/// `progress` is told each column family's count as it finishes. The
/// source must not change meanwhile (a stopped server).
pub fn copy_store(
    from: &dyn KvStore,
    to: &dyn KvStore,
    mut progress: impl FnMut(&'static str, u64),
) -> Result<Copied, CopyError> {
    for cf in Cf::ALL {
        if !to.scan(cf, b"", None, 1)?.is_empty() {
            return Err(CopyError::NotEmpty(cf.name()));
        }
    }
    let mut out = Copied::default();
    for cf in Cf::ALL {
        let mut after: Option<Vec<u8>> = None;
        let mut n = 0u64;
        loop {
            let rows = from.scan(cf, b"", after.as_deref(), PAGE)?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            after = Some(last.clone());
            let full = rows.len() == PAGE;
            n += rows.len() as u64;
            let mut b = Batch::new();
            for (k, v) in rows {
                b.put(cf, k, v);
            }
            to.write(b)?;
            if !full {
                break;
            }
        }
        if n > 0 {
            out.rows.push((cf.name(), n));
        }
        progress(cf.name(), n);
    }
    to.flush()?;
    for cf in Cf::ALL {
        let mut after: Option<Vec<u8>> = None;
        let mut row = 0u64;
        loop {
            let a = from.scan(cf, b"", after.as_deref(), PAGE)?;
            let b = to.scan(cf, b"", after.as_deref(), PAGE)?;
            for (x, y) in a.iter().zip(&b) {
                if x != y {
                    return Err(CopyError::Differs { cf: cf.name(), row });
                }
                row += 1;
            }
            if a.len() != b.len() {
                return Err(CopyError::Differs { cf: cf.name(), row });
            }
            match a.last() {
                Some((k, _)) if a.len() == PAGE => after = Some(k.clone()),
                _ => break,
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;

    #[test]
    fn copies_every_row_then_refuses_a_second_time() {
        let from = MemStore::new();
        let mut b = Batch::new();
        for i in 0..2500u32 {
            b.put(Cf::Tags, format!("r/app\0t{i:05}"), vec![i as u8]);
        }
        b.put(Cf::Registries, "r", "{}");
        b.add(Cf::Counters, "blobs", 7);
        from.write(b).unwrap();
        let to = MemStore::new();
        let mut seen = Vec::new();
        let c = copy_store(&from, &to, |cf, n| seen.push((cf, n))).unwrap();
        assert_eq!(c.total(), 2502);
        assert!(c.rows.contains(&("tags", 2500)));
        assert_eq!(seen.len(), Cf::ALL.len());
        assert_eq!(
            to.scan(Cf::Tags, b"r/app\0", None, 5000).unwrap(),
            from.scan(Cf::Tags, b"r/app\0", None, 5000).unwrap()
        );
        assert_eq!(
            crate::counter_value(to.get(Cf::Counters, b"blobs").unwrap().as_deref()),
            7
        );
        assert!(matches!(
            copy_store(&from, &to, |_, _| {}),
            Err(CopyError::NotEmpty("tags"))
        ));
    }
}
