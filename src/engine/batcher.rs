//! Dynamic batching: a bounded queue of single images that engine workers drain in batches of
//! up to `max_batch`, waiting at most `max_delay` (from the oldest image's arrival) for a batch
//! to fill. Work whose caller went away is dropped, and work past its deadline is answered with
//! [`EngineError::Expired`], before either reaches the model.

use super::backend::ImageOutputs;
use super::EngineError;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// One image's outputs and what it waited for.
#[derive(Debug, Clone)]
pub struct ImageResult {
    pub outputs: ImageOutputs,
    /// Enqueue to the start of its engine run.
    pub queue: Duration,
    /// The engine run it was part of.
    pub inference: Duration,
}

/// A queued image: its preprocessed tensor and where its answer goes.
pub struct Item {
    pub input: Vec<f32>,
    pub enqueued: Instant,
    /// Past this instant the item is answered with [`EngineError::Expired`] instead of run.
    pub deadline: Option<Instant>,
    pub reply: oneshot::Sender<Result<ImageResult, EngineError>>,
}

impl Item {
    /// An item enqueued now, and the receiver of its answer.
    pub fn new(
        input: Vec<f32>,
        deadline: Option<Instant>,
    ) -> (Item, oneshot::Receiver<Result<ImageResult, EngineError>>) {
        let (reply, answer) = oneshot::channel();
        let item = Item {
            input,
            enqueued: Instant::now(),
            deadline,
            reply,
        };
        (item, answer)
    }
}

/// The shared queue between request handlers and engine workers.
pub struct Queue {
    state: Mutex<State>,
    /// Signalled when items arrive or the queue closes.
    arrived: Condvar,
    /// Signalled when items leave (for blocking producers).
    left: Condvar,
    capacity: usize,
    max_batch: usize,
    max_delay: Duration,
}

struct State {
    items: VecDeque<Item>,
    closed: bool,
}

impl Queue {
    /// A queue holding at most `capacity` images, handing out batches of at most `max_batch`.
    pub fn new(capacity: usize, max_batch: usize, max_delay: Duration) -> Queue {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            arrived: Condvar::new(),
            left: Condvar::new(),
            capacity: capacity.max(1),
            max_batch: max_batch.max(1),
            max_delay,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked cannot leave the queue half-updated: every change is one call.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Images waiting now.
    pub fn depth(&self) -> usize {
        self.lock().items.len()
    }

    /// Enqueues all of `items` or none: [`EngineError::Overloaded`] when they do not fit.
    pub fn push_all(&self, items: Vec<Item>) -> Result<(), EngineError> {
        let mut state = self.lock();
        if state.closed {
            return Err(EngineError::Stopped);
        }
        if state.items.len() + items.len() > self.capacity {
            return Err(EngineError::Overloaded(self.capacity));
        }
        state.items.extend(items);
        drop(state);
        self.arrived.notify_all();
        Ok(())
    }

    /// Like [`Queue::push_all`], but waits for room instead of refusing (offline callers).
    pub fn push_all_blocking(&self, items: Vec<Item>) -> Result<(), EngineError> {
        let needed = items.len().min(self.capacity);
        let mut state = self.lock();
        while !state.closed && state.items.len() + needed > self.capacity {
            state = self.left.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.closed {
            return Err(EngineError::Stopped);
        }
        state.items.extend(items);
        drop(state);
        self.arrived.notify_all();
        Ok(())
    }

    /// Stops the queue: producers get [`EngineError::Stopped`]; workers finish what is queued
    /// and then get `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_all();
        self.left.notify_all();
    }

    /// Blocks until a batch is ready: `max_batch` live images, or the oldest has waited
    /// `max_delay`, or the queue closed with images left. `None` once closed and empty.
    pub fn next_batch(&self) -> Option<Vec<Item>> {
        let mut state = self.lock();
        let mut batch = Vec::new();
        loop {
            self.take_live(&mut state, &mut batch);
            if batch.len() == self.max_batch || (state.closed && state.items.is_empty()) {
                break;
            }
            let now = Instant::now();
            let flush_at = batch.first().map(|item| item.enqueued + self.max_delay);
            match flush_at {
                Some(at) if now >= at => break,
                Some(at) => {
                    state = self
                        .arrived
                        .wait_timeout(state, at - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => state = self.arrived.wait(state).unwrap_or_else(|e| e.into_inner()),
            }
        }
        drop(state);
        self.left.notify_all();
        (!batch.is_empty()).then_some(batch)
    }

    /// Moves queued items into `batch` up to `max_batch`, dropping cancelled ones and
    /// answering expired ones.
    fn take_live(&self, state: &mut State, batch: &mut Vec<Item>) {
        let now = Instant::now();
        while batch.len() < self.max_batch {
            let Some(item) = state.items.pop_front() else {
                break;
            };
            if item.reply.is_closed() {
                continue; // the caller went away: do not spend the engine on it
            }
            if item.deadline.is_some_and(|d| now >= d) {
                let waited = now - item.enqueued;
                let _ = item.reply.send(Err(EngineError::Expired(waited)));
                continue;
            }
            batch.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn item(tag: f32) -> (Item, oneshot::Receiver<Result<ImageResult, EngineError>>) {
        Item::new(vec![tag], None)
    }

    fn tags(batch: &[Item]) -> Vec<f32> {
        batch.iter().map(|i| i.input[0]).collect()
    }

    #[test]
    fn fills_to_max_batch_in_arrival_order() {
        let q = Queue::new(64, 4, Duration::from_secs(10));
        let mut answers = Vec::new();
        for t in 0..6 {
            let (it, rx) = item(t as f32);
            q.push_all(vec![it]).unwrap();
            answers.push(rx);
        }
        // A full batch does not wait for the (long) delay.
        let started = Instant::now();
        assert_eq!(tags(&q.next_batch().unwrap()), [0.0, 1.0, 2.0, 3.0]);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(q.depth(), 2);
    }

    #[test]
    fn flushes_a_partial_batch_after_the_delay() {
        let delay = Duration::from_millis(50);
        let q = Queue::new(64, 8, delay);
        let (a, _ra) = item(1.0);
        q.push_all(vec![a]).unwrap();
        let started = Instant::now();
        let batch = q.next_batch().unwrap();
        assert_eq!(tags(&batch), [1.0]);
        assert!(started.elapsed() >= delay - Duration::from_millis(5));
    }

    #[test]
    fn gathers_items_that_arrive_during_the_delay() {
        // The delay is far longer than the test: the batch can only end by filling up.
        let q = Arc::new(Queue::new(64, 2, Duration::from_secs(600)));
        let (a, _ra) = item(1.0);
        q.push_all(vec![a]).unwrap();
        let consumer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || q.next_batch().map(|b| tags(&b)))
        };
        let (b, _rb) = item(2.0);
        q.push_all(vec![b]).unwrap();
        assert_eq!(consumer.join().unwrap().unwrap(), [1.0, 2.0]);
    }

    #[test]
    fn drops_cancelled_work_and_answers_expired_work() {
        let q = Queue::new(64, 8, Duration::ZERO);
        let (gone, rx_gone) = item(1.0);
        drop(rx_gone);
        let (late, mut rx_late) = Item::new(vec![2.0], Some(Instant::now()));
        let (live, _rx_live) = item(3.0);
        q.push_all(vec![gone, late, live]).unwrap();
        assert_eq!(tags(&q.next_batch().unwrap()), [3.0]);
        assert!(matches!(
            rx_late.try_recv(),
            Ok(Err(EngineError::Expired(_)))
        ));
    }

    #[test]
    fn refuses_all_or_nothing_when_full() {
        let q = Queue::new(3, 8, Duration::ZERO);
        let (a, _ra) = item(1.0);
        q.push_all(vec![a]).unwrap();
        let (b, _rb) = item(2.0);
        let (c, _rc) = item(3.0);
        let (d, _rd) = item(4.0);
        assert!(matches!(
            q.push_all(vec![b, c, d]),
            Err(EngineError::Overloaded(3))
        ));
        assert_eq!(q.depth(), 1, "a refused request leaves nothing behind");
    }

    #[test]
    fn close_drains_then_ends() {
        let q = Queue::new(8, 8, Duration::from_secs(10));
        let (a, _ra) = item(1.0);
        q.push_all(vec![a]).unwrap();
        q.close();
        assert_eq!(tags(&q.next_batch().unwrap()), [1.0]);
        assert!(q.next_batch().is_none());
        let (b, _rb) = item(2.0);
        assert!(matches!(q.push_all(vec![b]), Err(EngineError::Stopped)));
    }
}
