//! Reusable byte buffers for the blob paths: a few of each size are kept
//! after use instead of being freed, so steady streaming neither calls the
//! allocator per chunk nor leaves freed chunks scattered over the
//! allocator's per-thread arenas (which is how RSS grows with traffic).

use std::sync::Mutex;

/// Buffers of one size, at most `keep` of them kept.
pub(crate) struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    size: usize,
    keep: usize,
}

impl Pool {
    pub const fn new(size: usize, keep: usize) -> Pool {
        Pool {
            free: Mutex::new(Vec::new()),
            size,
            keep,
        }
    }

    /// A buffer of `size` bytes (zeroed when new, stale when reused).
    pub fn get(&self) -> Vec<u8> {
        let reused = self.free.lock().ok().and_then(|mut f| f.pop());
        reused.unwrap_or_else(|| vec![0u8; self.size])
    }

    /// Give a buffer back (dropped if the pool is full or it is not ours).
    pub fn put(&self, v: Vec<u8>) {
        if v.len() != self.size {
            return;
        }
        if let Ok(mut f) = self.free.lock() {
            if f.len() < self.keep {
                f.push(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Pool;

    #[test]
    fn reuses_up_to_keep() {
        let p = Pool::new(8, 1);
        let a = p.get();
        let ptr = a.as_ptr();
        p.put(a);
        p.put(vec![0u8; 8]); // over `keep`: dropped
        p.put(vec![0u8; 3]); // not this pool's size: dropped
        let b = p.get();
        assert_eq!((b.as_ptr(), b.len()), (ptr, 8));
        assert_eq!(p.get().len(), 8);
    }
}
