//! The engine executor: one dedicated thread owns the compute device and runs
//! work items (sprint batches now; inference and validation requests later)
//! from a priority queue, so several engines — and several submitters — share
//! one GPU or CPU without fighting over it.
//!
//! Work items are closures over an [`ExecContext`] (the device, torch's
//! thread count and the engines' state, which never leaves the executor
//! thread). They run one at a time, highest [`Priority`] first and in
//! submission order within a priority. Long computations are submitted as
//! many short items (a sprint slice is one item per round of batches), so a
//! more urgent item waits for at most one of them.
//!
//! Each submission returns a [`WorkHandle`] for its result. An item that
//! fails hands its error to its submitter; one that panics does too (its
//! engines' state is dropped, since a panic may have left it half-updated),
//! and the executor goes on with the next item. [`EngineExecutor::shutdown`]
//! (or dropping the last handle to the executor) lets the running item
//! finish, cancels everything still queued and joins the thread.

use std::any::{Any, TypeId};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};

use anyhow::{Context, Result};

use crate::device::ComputeDevice;

/// How urgent a work item is; the executor always runs the most urgent
/// queued item next (declaration order: later is more urgent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Sprint nonce batches: keep the device busy when nothing else waits.
    Sprint,
    /// Recomputing another host's opening for a vote (a stage deadline).
    Validation,
    /// Inference requests (a user is waiting).
    Inference,
}

/// Why a work item produced no result of its own.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The executor shut down before the item ran.
    #[error("the engine executor shut down before running this work item")]
    Cancelled,
    /// The item panicked; the executor dropped its engines' state and went on.
    #[error("work item panicked on the engine executor: {0}")]
    Panicked(String),
}

/// What a work item sees: the device the executor owns and the engines'
/// state kept on the executor thread between items.
pub struct ExecContext {
    device: ComputeDevice,
    threads: usize,
    state: HashMap<TypeId, Box<dyn Any>>,
}

impl ExecContext {
    fn new(device: ComputeDevice, threads: usize) -> Self {
        ExecContext {
            device,
            threads,
            state: HashMap::new(),
        }
    }

    pub fn device(&self) -> ComputeDevice {
        self.device
    }

    /// Torch's intra-op thread count the executor set on its thread.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The executor-side state of type `T` (an engine cache), created with
    /// `T::default()` on first use. Kept until the executor stops or an item
    /// panics.
    pub fn state<T: Default + 'static>(&mut self) -> &mut T {
        self.state
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut::<T>()
            .expect("state is keyed by its type")
    }

    /// Drops every engine's state (after a panic).
    fn reset(&mut self) {
        self.state.clear();
    }
}

type Job = Box<dyn FnOnce(&mut ExecContext) + Send>;

struct Queued {
    priority: Priority,
    seq: u64,
    job: Job,
}

impl Ord for Queued {
    /// `BinaryHeap` pops the greatest: higher priority, then lower sequence.
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Queued {}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Queued>,
    next_seq: u64,
    closed: bool,
    /// Live [`SprintHold`]s: while any is held, queued `Sprint` items wait.
    sprint_holds: usize,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Jobs never run under the lock, so a poisoned lock still holds a
        // consistent queue.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses new items and returns the queued ones (dropped by the caller
    /// outside the lock, which cancels them).
    fn close(&self) -> Vec<Queued> {
        let drained = {
            let mut q = self.lock();
            q.closed = true;
            std::mem::take(&mut q.heap).into_vec()
        };
        self.ready.notify_all();
        drained
    }
}

struct Inner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
    device: ComputeDevice,
}

impl Inner {
    fn shutdown(&self) {
        drop(self.shared.close());
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            // A work item that shuts its own executor down cannot join it.
            if std::thread::current().id() != self.thread_id {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Handle to the executor thread; clones share it. The thread stops when
/// [`EngineExecutor::shutdown`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct EngineExecutor {
    inner: Arc<Inner>,
}

impl EngineExecutor {
    /// Starts the executor thread for `device`; it sets torch's intra-op
    /// thread count to `threads` on itself once, before any work item.
    pub fn start(device: ComputeDevice, threads: usize) -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let threads = threads.max(1);
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("engine-executor".into())
            .spawn(move || run(&thread_shared, device, threads))
            .context("cannot start the engine executor thread")?;
        let thread_id = handle.thread().id();
        Ok(EngineExecutor {
            inner: Arc::new(Inner {
                shared,
                thread: Mutex::new(Some(handle)),
                thread_id,
                device,
            }),
        })
    }

    pub fn device(&self) -> ComputeDevice {
        self.inner.device
    }

    /// Queues `work` at `priority`; the handle yields its result. After
    /// shutdown the handle yields [`ExecError::Cancelled`].
    pub fn submit<T, F>(&self, priority: Priority, work: F) -> WorkHandle<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut ExecContext) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel::<Result<T>>(1);
        let job: Job = Box::new(move |ctx: &mut ExecContext| {
            let result = match catch_unwind(AssertUnwindSafe(|| work(ctx))) {
                Ok(r) => r,
                Err(payload) => {
                    ctx.reset();
                    let msg = panic_message(payload.as_ref());
                    tracing::error!(panic = %msg, "a work item panicked on the engine executor; its engines' state was dropped");
                    Err(ExecError::Panicked(msg).into())
                }
            };
            // The submitter may have stopped waiting.
            let _ = tx.send(result);
        });
        let mut q = self.inner.shared.lock();
        if !q.closed {
            let seq = q.next_seq;
            q.next_seq += 1;
            q.heap.push(Queued { priority, seq, job });
            drop(q);
            self.inner.shared.ready.notify_one();
        }
        // When closed, `job` (and with it the sender) is dropped here: the
        // handle reports the item cancelled.
        WorkHandle { rx }
    }

    /// [`EngineExecutor::submit`] and wait for the result.
    pub fn run<T, F>(&self, priority: Priority, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut ExecContext) -> Result<T> + Send + 'static,
    {
        self.submit(priority, work).wait()
    }

    /// Keeps `Sprint` items from starting while the returned guard lives
    /// (they stay queued; more urgent items run as usual). The inference
    /// engine holds one while it has requests in flight: otherwise the
    /// always-queued sprint round would run between every two decode steps
    /// and a request would wait a whole round per token (measured: requests
    /// 3× slower, `examples/inference_cost_to_sprint.rs`).
    pub fn hold_sprint(&self) -> SprintHold {
        self.inner.shared.lock().sprint_holds += 1;
        SprintHold {
            shared: self.inner.shared.clone(),
        }
    }

    /// Items queued and not started yet.
    pub fn queued(&self) -> usize {
        self.inner.shared.lock().heap.len()
    }

    /// Lets the running item finish, cancels the queued ones, refuses new
    /// ones and joins the executor thread. Idempotent.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

/// See [`EngineExecutor::hold_sprint`]; dropping it lets sprint items run again.
pub struct SprintHold {
    shared: Arc<Shared>,
}

impl Drop for SprintHold {
    fn drop(&mut self) {
        {
            let mut q = self.shared.lock();
            q.sprint_holds = q.sprint_holds.saturating_sub(1);
        }
        self.shared.ready.notify_all();
    }
}

/// The result of one submitted work item.
pub struct WorkHandle<T> {
    rx: mpsc::Receiver<Result<T>>,
}

impl<T> WorkHandle<T> {
    /// Blocks until the item ran: its own result, or [`ExecError`] when it
    /// panicked or was cancelled.
    pub fn wait(self) -> Result<T> {
        self.rx
            .recv()
            .unwrap_or_else(|_| Err(ExecError::Cancelled.into()))
    }

    /// The result if the item already finished (or was cancelled).
    pub fn try_wait(&self) -> Option<Result<T>> {
        match self.rx.try_recv() {
            Ok(r) => Some(r),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Err(ExecError::Cancelled.into())),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// The executor thread: the only thread that runs engines' work.
fn run(shared: &Shared, device: ComputeDevice, threads: usize) {
    tch::set_num_threads(threads as i32);
    let mut ctx = ExecContext::new(device, threads);
    loop {
        let next = {
            let mut q = shared.lock();
            loop {
                if q.closed {
                    break None;
                }
                // The heap's top is its most urgent item: when that is a
                // sprint item and the sprint is held, nothing may run yet.
                let held = q.sprint_holds > 0
                    && q.heap.peek().map(|i| i.priority) == Some(Priority::Sprint);
                if !held {
                    if let Some(item) = q.heap.pop() {
                        break Some(item);
                    }
                }
                q = shared.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Some(item) = next else { return };
        (item.job)(&mut ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_sprint_hold_keeps_sprint_items_queued_but_not_more_urgent_ones() {
        let exec = executor();
        let hold = exec.hold_sprint();
        let sprint = exec.submit(Priority::Sprint, |_| Ok("sprint"));
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            sprint.try_wait().is_none(),
            "a held sprint item must not run"
        );
        assert_eq!(
            exec.run(Priority::Validation, |_| Ok("validation"))
                .unwrap(),
            "validation"
        );
        assert!(sprint.try_wait().is_none(), "still held");
        let second = exec.hold_sprint();
        drop(hold);
        std::thread::sleep(Duration::from_millis(100));
        assert!(sprint.try_wait().is_none(), "one hold is still alive");
        drop(second);
        assert_eq!(sprint.wait().unwrap(), "sprint");
    }

    fn executor() -> EngineExecutor {
        EngineExecutor::start(ComputeDevice::cpu_f32(), 1).unwrap()
    }

    /// Occupies the executor until the returned sender is used (or dropped).
    fn block(exec: &EngineExecutor) -> (mpsc::Sender<()>, WorkHandle<()>) {
        let (release, wait) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let h = exec.submit(Priority::Sprint, move |_| {
            started_tx.send(()).unwrap();
            let _ = wait.recv();
            Ok(())
        });
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        (release, h)
    }

    #[test]
    fn runs_the_most_urgent_item_first_and_fifo_within_a_priority() {
        let exec = executor();
        let (release, gate) = block(&exec);
        let order = Arc::new(Mutex::new(Vec::new()));
        let items = [
            (Priority::Sprint, "s1"),
            (Priority::Validation, "v1"),
            (Priority::Sprint, "s2"),
            (Priority::Inference, "i1"),
            (Priority::Validation, "v2"),
            (Priority::Sprint, "s3"),
            (Priority::Inference, "i2"),
        ];
        let handles: Vec<_> = items
            .iter()
            .map(|&(p, name)| {
                let order = order.clone();
                exec.submit(p, move |_| {
                    order.lock().unwrap().push(name);
                    Ok(name)
                })
            })
            .collect();
        assert_eq!(exec.queued(), items.len());
        release.send(()).unwrap();
        gate.wait().unwrap();
        for (h, (_, name)) in handles.into_iter().zip(items) {
            assert_eq!(h.wait().unwrap(), name);
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["i1", "i2", "v1", "v2", "s1", "s2", "s3"]
        );
    }

    #[test]
    fn an_urgent_item_runs_between_the_batches_of_a_long_computation() {
        let exec = executor();
        let (release, gate) = block(&exec);
        let order = Arc::new(Mutex::new(Vec::new()));
        let batch = |i: usize| {
            let order = order.clone();
            move |_: &mut ExecContext| -> Result<()> {
                order.lock().unwrap().push(format!("batch {i}"));
                Ok(())
            }
        };
        let mut handles = vec![exec.submit(Priority::Sprint, batch(0))];
        release.send(()).unwrap();
        gate.wait().unwrap();
        // Batch 0 runs; a second gate holds the executor while the remaining
        // batches are queued and an inference request arrives behind them.
        let (release, gate) = block(&exec);
        handles.extend((1..4).map(|i| exec.submit(Priority::Sprint, batch(i))));
        let o = order.clone();
        let urgent = exec.submit(Priority::Inference, move |_| {
            o.lock().unwrap().push("inference".into());
            Ok(())
        });
        release.send(()).unwrap();
        gate.wait().unwrap();
        urgent.wait().unwrap();
        for h in handles {
            h.wait().unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["batch 0", "inference", "batch 1", "batch 2", "batch 3"]
        );
    }

    #[test]
    fn failing_and_panicking_items_report_to_their_submitter_and_the_executor_goes_on() {
        let exec = executor();
        let err = exec
            .run(Priority::Sprint, |_| -> Result<()> {
                anyhow::bail!("the engine said no")
            })
            .unwrap_err();
        assert_eq!(format!("{err:#}"), "the engine said no");

        // State survives items that succeed or fail, not a panic.
        exec.run(Priority::Sprint, |ctx| {
            *ctx.state::<u32>() = 7;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            exec.run(Priority::Sprint, |ctx| Ok(*ctx.state::<u32>()))
                .unwrap(),
            7
        );
        let err = exec
            .run(Priority::Validation, |_| -> Result<()> {
                panic!("bad tensor shape")
            })
            .unwrap_err();
        match err.downcast_ref::<ExecError>() {
            Some(ExecError::Panicked(msg)) => assert!(msg.contains("bad tensor shape"), "{msg}"),
            other => panic!("expected a panic error, got {other:?}"),
        }
        assert_eq!(
            exec.run(Priority::Sprint, |ctx| Ok(*ctx.state::<u32>()))
                .unwrap(),
            0,
            "a panic drops the engines' state"
        );
        let r = exec.run(Priority::Sprint, |ctx| Ok(ctx.device()));
        assert_eq!(r.unwrap(), ComputeDevice::cpu_f32());
    }

    #[test]
    fn shutdown_finishes_the_running_item_and_cancels_the_queued_ones() {
        let exec = executor();
        let (release, gate) = block(&exec);
        let ran = Arc::new(Mutex::new(Vec::new()));
        let queued: Vec<_> = (0..3)
            .map(|i| {
                let ran = ran.clone();
                exec.submit(Priority::Validation, move |_| {
                    ran.lock().unwrap().push(i);
                    Ok(i)
                })
            })
            .collect();
        let stopper = {
            let exec = exec.clone();
            std::thread::spawn(move || exec.shutdown())
        };
        // The shutdown waits for the running item.
        std::thread::sleep(Duration::from_millis(50));
        assert!(!stopper.is_finished());
        release.send(()).unwrap();
        stopper.join().unwrap();
        gate.wait().unwrap();
        for h in queued {
            let err = h.wait().unwrap_err();
            assert!(
                matches!(err.downcast_ref::<ExecError>(), Some(ExecError::Cancelled)),
                "{err:#}"
            );
        }
        assert!(ran.lock().unwrap().is_empty());
        // Closed for good: new items are cancelled at once.
        let late = exec.submit(Priority::Inference, |_| Ok(()));
        assert!(matches!(
            late.wait().unwrap_err().downcast_ref::<ExecError>(),
            Some(ExecError::Cancelled)
        ));
        exec.shutdown();
    }

    #[test]
    fn dropping_the_last_handle_stops_the_thread() {
        let exec = executor();
        let weak = Arc::downgrade(&exec.inner.shared);
        let h = exec.submit(Priority::Sprint, |_| Ok(1));
        assert_eq!(h.wait().unwrap(), 1);
        drop(exec);
        assert!(weak.upgrade().is_none(), "the executor thread has exited");
    }
}
