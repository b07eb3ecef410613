//! A backend without a model whose runs a test lets through one by one: queueing, overload,
//! deadlines, cancellation, ordering and shutdown can then be tested on any machine, whatever
//! its speed, without sleeping.

use super::backend::{Backend, BatchOutputs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The test's side: how many runs may finish, and what is waiting.
#[derive(Clone, Default)]
pub struct Gate {
    shared: Arc<(Mutex<State>, Condvar)>,
}

#[derive(Default)]
struct State {
    /// Runs that may still finish before the gate closes again.
    passes: usize,
    /// Every run finishes at once.
    open: bool,
    /// Runs blocked at the gate now.
    waiting: usize,
    /// Images in the runs that finished.
    images: usize,
}

impl Gate {
    /// A closed gate: every run waits for [`Gate::release`] or [`Gate::open`].
    pub fn closed() -> Gate {
        Gate::default()
    }

    /// A gate that lets every run through.
    pub fn opened() -> Gate {
        let gate = Gate::default();
        gate.open();
        gate
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A backend behind this gate answering `classes` logits per image, and an
    /// out-of-distribution score when `ood` is set.
    pub fn backend(&self, classes: usize, ood: bool) -> GateBackend {
        GateBackend {
            gate: self.clone(),
            classes,
            ood,
        }
    }

    /// Lets `runs` more runs finish.
    pub fn release(&self, runs: usize) {
        self.lock().passes += runs;
        self.shared.1.notify_all();
    }

    /// Lets every run finish from now on.
    pub fn open(&self) {
        self.lock().open = true;
        self.shared.1.notify_all();
    }

    /// Images in the runs that have finished so far.
    pub fn images_run(&self) -> usize {
        self.lock().images
    }

    /// Blocks until at least `runs` runs wait at the gate; false if that has not happened
    /// `within` (a test then fails instead of hanging).
    pub fn wait_for_waiting(&self, runs: usize, within: Duration) -> bool {
        self.wait_until(|s| s.waiting >= runs, within)
    }

    /// Blocks until runs of at least `images` images in all have finished; false if that has
    /// not happened `within`.
    pub fn wait_for_finished(&self, images: usize, within: Duration) -> bool {
        self.wait_until(|s| s.images >= images, within)
    }

    fn wait_until(&self, done: impl Fn(&State) -> bool, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut state = self.lock();
        while !done(&state) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .shared
                .1
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// [`Gate::wait_for_waiting`] without blocking an async runtime.
    pub async fn waiting(&self, runs: usize, within: Duration) -> bool {
        let gate = self.clone();
        tokio::task::spawn_blocking(move || gate.wait_for_waiting(runs, within))
            .await
            .unwrap_or(false)
    }

    /// [`Gate::wait_for_finished`] without blocking an async runtime.
    pub async fn finished(&self, images: usize, within: Duration) -> bool {
        let gate = self.clone();
        tokio::task::spawn_blocking(move || gate.wait_for_finished(images, within))
            .await
            .unwrap_or(false)
    }

    /// Waits at the gate until a pass or the open gate lets this run through.
    fn pass(&self, images: usize) {
        let mut state = self.lock();
        state.waiting += 1;
        self.shared.1.notify_all();
        while !state.open && state.passes == 0 {
            state = self.shared.1.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if !state.open {
            state.passes -= 1;
        }
        state.waiting -= 1;
        state.images += images;
        self.shared.1.notify_all();
    }
}

/// The engine's side of a [`Gate`]: answers, once let through, logits that depend on each
/// image's tensor (different images, different answers; the same image, the same answer).
pub struct GateBackend {
    gate: Gate,
    classes: usize,
    ood: bool,
}

impl Backend for GateBackend {
    fn run(&mut self, input: &[f32], n: usize) -> Result<BatchOutputs, String> {
        self.gate.pass(n);
        let len = input.len() / n.max(1);
        let means: Vec<f32> = input
            .chunks_exact(len.max(1))
            .map(|t| t.iter().sum::<f32>() / t.len() as f32)
            .collect();
        let logits = means
            .iter()
            .flat_map(|&m| (0..self.classes).map(move |c| (m * (c as f32 + 1.0)).sin()))
            .collect();
        Ok(BatchOutputs {
            logits,
            classes: self.classes,
            ood_score: self.ood.then_some(means),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_wait_for_their_pass_and_answers_follow_the_input() {
        let gate = Gate::closed();
        let mut backend = gate.backend(3, true);
        let run = std::thread::spawn(move || backend.run(&[1.0, 1.0, 0.0, 0.0], 2));
        assert!(gate.wait_for_waiting(1, Duration::from_secs(30)));
        assert_eq!(gate.images_run(), 0, "nothing finished before the release");
        gate.release(1);
        let outputs = run.join().unwrap().unwrap();
        assert_eq!(gate.images_run(), 2);
        assert_eq!(outputs.ood_score, Some(vec![1.0, 0.0]));
        assert_eq!(outputs.logits[..3], [1f32.sin(), 2f32.sin(), 3f32.sin()]);
        assert_eq!(outputs.logits[3..], [0.0; 3]);
        assert!(!gate.wait_for_waiting(1, Duration::ZERO));
    }
}
