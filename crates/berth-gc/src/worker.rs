//! Where the collector's metadata work runs: one thread of its own at the
//! lowest CPU priority (nice 19), so that pushes and pulls get the CPU
//! first and a collection takes what they leave. Every page of a run is one
//! job; jobs of concurrent runs (an instance run and registry runs) take
//! turns on the thread.

use berth_meta::{Meta, MetaError};
use berth_storage::{BlobStore, WriteActivity};
use std::future::Future;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Blob deletes sent as one step: between steps a collection yields to
/// pushes (see [`paced`]).
pub(crate) const PACED_DELETES: usize = 32;

/// After a step during which blobs were written, the collector waits this
/// many times the step's length before the next: deletes and pushes share
/// one disk's journal, and a nice value does not order I/O.
const PAUSE_FACTOR: u32 = 5;

/// The longest wait between two steps.
const MAX_PAUSE: Duration = Duration::from_secs(2);

type Job = Box<dyn FnOnce() + Send>;

fn queue() -> &'static mpsc::Sender<Job> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("berth-gc".into())
            .spawn(move || {
                lower_priority();
                for job in rx {
                    // a panicking job fails its run (its answer is dropped),
                    // not the thread
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .expect("the garbage collector's thread");
        tx
    })
}

/// Run `f` on the collector's thread and wait for it.
pub(crate) async fn run<T: Send + 'static>(
    meta: &Meta,
    f: impl FnOnce(&Meta) -> Result<T, MetaError> + Send + 'static,
) -> Result<T, MetaError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let m = meta.clone();
    let job: Job = Box::new(move || {
        let _ = tx.send(f(&m));
    });
    queue()
        .send(job)
        .map_err(|_| MetaError::Task("the garbage collector's thread is gone".into()))?;
    rx.await
        .map_err(|_| MetaError::Task("a garbage collection step panicked".into()))?
}

/// Run one step of a collection's I/O (`step`, a chunk of deletes), then
/// give way: if blobs were written while it ran, wait (see [`pause`]) so
/// that pushes keep most of the disk. With no pushes, no wait.
pub(crate) async fn paced<T>(blobs: &BlobStore, step: impl Future<Output = T>) -> T {
    let mark = Mark::now(blobs);
    let out = step.await;
    mark.give_way(blobs).await;
    out
}

/// The start of a step whose work is not one future (a page of the blob
/// listing): [`Mark::give_way`] at its end waits as [`paced`] does.
pub(crate) struct Mark {
    before: WriteActivity,
    began: Instant,
}

impl Mark {
    pub(crate) fn now(blobs: &BlobStore) -> Mark {
        Mark {
            before: blobs.writes(),
            began: Instant::now(),
        }
    }

    pub(crate) async fn give_way(self, blobs: &BlobStore) {
        if let Some(wait) = pause(&self.before, &blobs.writes(), self.began.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The wait after a step that took `took`, given the write activity before
/// and after it: none if no write went on, else `PAUSE_FACTOR` times the
/// step, at most `MAX_PAUSE`.
fn pause(before: &WriteActivity, after: &WriteActivity, took: Duration) -> Option<Duration> {
    after
        .since(before)
        .then(|| (took * PAUSE_FACTOR).min(MAX_PAUSE))
        .filter(|d| !d.is_zero())
}

/// This thread's nice value to 19 (on Linux a nice value is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 19) != 0 {
            tracing::warn!("garbage collection runs at normal priority: setpriority failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(begun: u64, in_flight: u64) -> WriteActivity {
        WriteActivity { begun, in_flight }
    }

    #[test]
    fn steps_pause_only_while_writes_go_on() {
        let ms = Duration::from_millis;
        // nothing written: no pause, however long the step
        assert_eq!(pause(&at(5, 0), &at(5, 0), ms(400)), None);
        // a write began and ended during the step
        assert_eq!(pause(&at(5, 0), &at(6, 0), ms(10)), Some(ms(50)));
        // one was in flight before or after it
        assert_eq!(pause(&at(5, 1), &at(5, 1), ms(10)), Some(ms(50)));
        assert_eq!(pause(&at(5, 1), &at(5, 0), ms(10)), Some(ms(50)));
        // a long step waits at most MAX_PAUSE
        assert_eq!(pause(&at(5, 0), &at(9, 2), ms(5000)), Some(MAX_PAUSE));
        // a step of no measurable length has nothing to wait for
        assert_eq!(pause(&at(5, 0), &at(6, 0), Duration::ZERO), None);
    }

    #[test]
    fn the_blob_store_counts_its_writes() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::local(dir.path()).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let start = blobs.writes();
        assert_eq!(start, at(0, 0));
        rt.block_on(async {
            blobs.create_upload("s1").await.unwrap();
            let mut g = blobs.lock_session("s1").await;
            let body =
                futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("layer bytes"))]);
            let n = blobs
                .append("s1", &mut g, 0, body, None, berth_storage::Then::Stage)
                .await
                .unwrap();
            assert_eq!(n, 11);
        });
        let after = blobs.writes();
        assert_eq!(after, at(1, 0), "one append begun, none left in flight");
        assert!(after.since(&start));
        assert!(!after.since(&after));
    }

    #[test]
    fn the_thread_runs_at_nice_19() {
        let nice = tokio::runtime::Runtime::new().unwrap().block_on(async {
            let meta = berth_meta::Meta::new(berth_meta::MemStore::new());
            super::run(&meta, |_| {
                // SAFETY: reads this thread's own nice value
                let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
                Ok(unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) })
            })
            .await
            .unwrap()
        });
        assert_eq!(nice, 19);
    }
}
