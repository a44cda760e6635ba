//! Where the collector's metadata work runs: one thread of its own at the
//! lowest CPU priority (nice 19), so that pushes and pulls get the CPU
//! first and a collection takes what they leave. Every page of a run is one
//! job; jobs of concurrent runs (an instance run and registry runs) take
//! turns on the thread.

use berth_meta::{Meta, MetaError};
use std::sync::mpsc;
use std::sync::OnceLock;

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
