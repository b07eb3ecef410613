//! Threads kept between images for the second half of a two-thread decode (the RLE decoder's
//! high segment, `rle::Frame::band_sums`). A thread started afresh for each image began 1.5–4
//! ms late in 19 of 30 back-to-back calls on this 2-core VM (sharing the caller's core at
//! first), a kept thread woken through a channel 0.03–0.13 ms late in every call
//! (docs/benchmarks.md, "DICOM").

use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, MutexGuard, PoisonError};

type Job = Box<dyn FnOnce() + Send>;

/// A set of kept helper threads.
pub struct Helpers {
    /// Helpers waiting for a job, the one that finished last at the end. A helper comes back
    /// here when its job is done, so there are never more helpers than jobs that once ran at
    /// the same time (counting those whose helper had not yet come back).
    idle: Mutex<Vec<Sender<Job>>>,
}

/// The decoders' helpers.
pub static HELPERS: Helpers = Helpers::new();

impl Helpers {
    /// No helpers yet: the first job starts one.
    pub const fn new() -> Self {
        Helpers {
            idle: Mutex::new(Vec::new()),
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Sender<Job>>> {
        // Nothing panics while the list is held; were it poisoned, the list is still whole.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `job` on an idle helper thread, else on a new one, else (no thread could be
    /// started) here and now: so `job` must never wait on its caller.
    pub fn run(&'static self, job: impl FnOnce() + Send + 'static) {
        let job: Job = Box::new(job);
        let waiting = self.idle().pop();
        let job = match waiting {
            // A helper is only listed while it waits on its channel, so the job reaches it.
            Some(helper) => match helper.send(job) {
                Ok(()) => return,
                Err(unsent) => unsent.0,
            },
            None => job,
        };
        let (give, take) = mpsc::channel::<Job>();
        let own = give.clone();
        let started = std::thread::Builder::new()
            .name("decode-helper".into())
            .spawn(move || {
                for job in take {
                    job();
                    self.idle().push(own.clone());
                }
            });
        let sent = match started {
            Ok(_) => give.send(job).map_err(|unsent| unsent.0),
            Err(_) => Err(job),
        };
        if let Err(job) = sent {
            job();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A set of helpers of the test's own (threads live as long as the test binary).
    fn helpers() -> &'static Helpers {
        Box::leak(Box::new(Helpers::new()))
    }

    /// The thread `helpers` ran a job on.
    fn thread_of(helpers: &'static Helpers) -> std::thread::ThreadId {
        let (tx, rx) = mpsc::channel();
        helpers.run(move || tx.send(std::thread::current().id()).unwrap());
        rx.recv().unwrap()
    }

    #[test]
    fn a_helper_that_finished_takes_the_next_job() {
        let helpers = helpers();
        let first = thread_of(helpers);
        assert_ne!(first, std::thread::current().id());
        let back = || {
            // Wait for the helper to list itself as idle again (it does so after its job).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while helpers.idle().is_empty() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the helper never came back"
                );
                std::thread::yield_now();
            }
        };
        back();
        assert_eq!(thread_of(helpers), first);
        back();
        assert_eq!(helpers.idle().len(), 1, "no second thread was started");
    }

    #[test]
    fn jobs_at_the_same_time_run_on_different_threads() {
        let helpers = helpers();
        let (release, wait) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        let busy = tx.clone();
        helpers.run(move || {
            busy.send(std::thread::current().id()).unwrap();
            wait.recv().unwrap();
        });
        let blocked = rx.recv().unwrap();
        // The first helper is busy until released: this job needs another one.
        helpers.run(move || tx.send(std::thread::current().id()).unwrap());
        let other = rx.recv().unwrap();
        release.send(()).unwrap();
        assert_ne!(blocked, other);
    }
}
