//! One persistent helper thread for the cold path. Work handed to it is taken back and run by the caller when the
//! helper has not started it yet, so on a busy machine a verification never waits for the helper to get a core: the
//! worst case is the cost of one queue push and one wake-up.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

type Task = Box<dyn FnOnce() + Send + 'static>;
type Work<R> = Box<dyn FnOnce() -> R + Send + 'static>;
type Outcome<R> = std::thread::Result<R>;

enum State<R> {
    /// Not started; whoever takes it first runs it.
    Queued(Work<R>),
    /// The helper is running it.
    Running,
    /// The helper finished it.
    Done(Outcome<R>),
    /// The caller took it back, or collected the result.
    Taken,
}

struct Slot<R> {
    state: Mutex<State<R>>,
    done: Condvar,
}

/// Work handed to the helper; [`Handoff::join`] returns its result.
pub(crate) struct Handoff<R> {
    slot: Arc<Slot<R>>,
}

/// The helper's queue, or `None` when no thread could be started (everything then runs in the caller).
fn queue() -> Option<&'static Mutex<Sender<Task>>> {
    static QUEUE: OnceLock<Option<Mutex<Sender<Task>>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = channel::<Task>();
            std::thread::Builder::new()
                .name("dcap-verify-helper".into())
                .spawn(move || {
                    while let Ok(task) = rx.recv() {
                        task();
                    }
                })
                .ok()
                .map(|_| Mutex::new(tx))
        })
        .as_ref()
}

/// Hands `f` to the helper thread. It runs there if the helper gets to it before [`Handoff::join`], else in the
/// caller of `join`.
pub(crate) fn offload<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Handoff<R> {
    let slot = Arc::new(Slot {
        state: Mutex::new(State::Queued(Box::new(f))),
        done: Condvar::new(),
    });
    if let Some(q) = queue() {
        let s = Arc::clone(&slot);
        let task: Task = Box::new(move || {
            let work = {
                let mut st = s.state.lock().unwrap_or_else(PoisonError::into_inner);
                match std::mem::replace(&mut *st, State::Running) {
                    State::Queued(w) => w,
                    other => {
                        *st = other;
                        return;
                    }
                }
            };
            let out = catch_unwind(AssertUnwindSafe(work));
            *s.state.lock().unwrap_or_else(PoisonError::into_inner) = State::Done(out);
            s.done.notify_all();
        });
        // A helper that is gone leaves the work queued: the caller runs it in `join`.
        let _ = q.lock().unwrap_or_else(PoisonError::into_inner).send(task);
    }
    Handoff { slot }
}

impl<R> Handoff<R> {
    /// The result: taken back and run here if the helper has not started it, else waited for.
    pub(crate) fn join(self) -> R {
        let mut st = self
            .slot
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            match std::mem::replace(&mut *st, State::Taken) {
                State::Queued(work) => {
                    drop(st);
                    return work();
                }
                State::Running => {
                    *st = State::Running;
                    st = self
                        .slot
                        .done
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                State::Done(Ok(r)) => return r,
                State::Done(Err(panic)) => resume_unwind(panic),
                // `join` consumes the handoff, so nothing else takes it.
                State::Taken => unreachable_taken(),
            }
        }
    }
}

#[cold]
fn unreachable_taken() -> ! {
    // Only `join` (which consumes `self`) moves a slot to `Taken` while a `Handoff` exists.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_whoever_runs_the_work() {
        let handoffs: Vec<_> = (0..64u64).map(|i| offload(move || i * i)).collect();
        let got: Vec<u64> = handoffs.into_iter().map(Handoff::join).collect();
        assert_eq!(got, (0..64u64).map(|i| i * i).collect::<Vec<_>>());
    }

    #[test]
    fn the_caller_takes_back_work_the_helper_has_not_started() {
        // Keep the helper busy until released, so the next handoff is still queued when joined.
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let g = Arc::clone(&gate);
        let blocker = offload(move || {
            let (m, cv) = &*g;
            let mut open = m.lock().unwrap_or_else(PoisonError::into_inner);
            while !*open {
                open = cv.wait(open).unwrap_or_else(PoisonError::into_inner);
            }
            std::thread::current().name().map(str::to_owned)
        });
        // Wait until the helper is inside the blocker (or the blocker is still queued, if no helper exists).
        let queued = offload(|| std::thread::current().id());
        let ran_on = queued.join();
        assert_eq!(ran_on, std::thread::current().id());
        *gate.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
        gate.1.notify_all();
        let name = blocker.join();
        assert!(
            name.as_deref() == Some("dcap-verify-helper")
                || name == std::thread::current().name().map(str::to_owned)
        );
    }

    #[test]
    #[allow(clippy::panic)]
    fn a_panic_in_the_work_reaches_the_caller() {
        let h = offload(|| -> u8 { std::panic::panic_any("boom") });
        let r = catch_unwind(AssertUnwindSafe(|| h.join()));
        assert!(r.is_err());
    }
}
