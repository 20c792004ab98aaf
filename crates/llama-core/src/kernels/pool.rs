//! Persistent thread pool: `n_threads - 1` workers plus the calling thread (ith = 0).
//!
//! A matmul costs a few µs per token at small sizes, so spawning threads per op (≈ 20 µs each) or
//! parking immediately (a futex wake ≈ 5–50 µs) would dominate. Workers therefore spin a bounded
//! number of iterations waiting for the next job, then park on a condvar so an idle pool burns no CPU.
//!
//! Protocol: `run` publishes a type-erased pointer to the closure, sets `remaining = n - 1` and bumps
//! `epoch`. Each worker that sees a new epoch runs the closure with its own `ith`, then decrements
//! `remaining`. `run` returns only when `remaining == 0`, which is what makes lending a stack
//! closure to other threads sound.
//!
//! Re-entrancy: a `run` issued from inside a job on the same pool executes inline on the calling
//! thread as `f(0, 1)` (no deadlock; closures must split work by `(ith, nth)` as usual). Concurrent
//! `run` calls from different threads are serialized by a mutex.
//! Panics: a panicking job is caught on every thread; `run` waits for all threads, then re-raises
//! the first panic on the caller. The pool remains usable afterwards.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Iterations of `spin_loop` before parking. ~2^14 pause instructions ≈ 50–150 µs: long enough to
/// cover the gap between consecutive matmuls of one forward pass, short enough not to burn a core
/// (the machine may be shared) when the model is idle.
const SPIN_ITERS: u32 = 1 << 14;

type Job = dyn Fn(usize, usize) + Sync;

struct Shared {
    /// Incremented once per job; workers compare against the last epoch they served.
    epoch: AtomicUsize,
    /// Workers still running the current job.
    remaining: AtomicUsize,
    /// Number of threads (including caller) taking part in the current job.
    nth: AtomicUsize,
    shutdown: AtomicBool,
    /// The current job. Written by `run` before the epoch bump (Release), read by workers after
    /// they observe the bump (Acquire); only valid while `remaining > 0`.
    job: UnsafeCell<Option<*const Job>>,
    /// First panic payload of the current job.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Parking for workers (waiting for a job) and for the caller (waiting for completion).
    lock: Mutex<()>,
    work_cv: Condvar,
    done_cv: Condvar,
    sleepers: AtomicUsize,
    caller_sleeping: AtomicBool,
}

// SAFETY: `job` is only written by the thread holding `ThreadPool::run_lock` while no worker reads
// it (all workers finished the previous epoch), and read by workers only between the epoch bump and
// their `remaining` decrement, during which the writer is blocked in `run`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

pub struct ThreadPool {
    n_threads: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    run_lock: Mutex<()>,
}

thread_local! {
    /// Set while this thread executes a pool job, so nested `run` calls execute inline.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

impl ThreadPool {
    /// A pool computing with `n_threads` threads in total (the caller counts as one); 0 is taken as 1.
    pub fn new(n_threads: usize) -> Self {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            remaining: AtomicUsize::new(0),
            nth: AtomicUsize::new(n_threads),
            shutdown: AtomicBool::new(false),
            job: UnsafeCell::new(None),
            panic: Mutex::new(None),
            lock: Mutex::new(()),
            work_cv: Condvar::new(),
            done_cv: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            caller_sleeping: AtomicBool::new(false),
        });
        let workers = (1..n_threads)
            .map(|ith| {
                let sh = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("llama-worker-{ith}"))
                    .spawn(move || worker_loop(sh, ith))
                    .expect("failed to spawn a thread-pool worker")
            })
            .collect();
        ThreadPool { n_threads, shared, workers, run_lock: Mutex::new(()) }
    }

    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `f(ith, nth)` on every thread of the pool (caller is ith = 0) and returns when all are
    /// done. Re-raises a panic from any thread after all have finished.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        if self.n_threads == 1 || IN_JOB.with(|c| c.get()) {
            f(0, 1);
            return;
        }
        // A poisoned lock only means an earlier `run` re-raised a job panic; the state is consistent.
        let _guard = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        let sh = &*self.shared;
        let nth = self.n_threads;
        let job: &(dyn Fn(usize, usize) + Sync + '_) = &f;
        // SAFETY: lifetime erasure. The pointer is only dereferenced by workers before they decrement
        // `remaining`, and this function does not return (nor unwind) before `remaining == 0`.
        let job: *const Job = unsafe { std::mem::transmute::<&(dyn Fn(usize, usize) + Sync + '_), &'static Job>(job) };
        // SAFETY: no worker reads `job` now: the previous epoch completed (remaining == 0) and we hold run_lock.
        unsafe { *sh.job.get() = Some(job) };
        sh.nth.store(nth, Ordering::Relaxed);
        sh.remaining.store(nth - 1, Ordering::Relaxed);
        sh.epoch.fetch_add(1, Ordering::SeqCst);
        if sh.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.work_cv.notify_all();
        }

        IN_JOB.with(|c| c.set(true));
        let mine = catch_unwind(AssertUnwindSafe(|| f(0, nth)));
        IN_JOB.with(|c| c.set(false));

        // Wait for the workers: spin, then park.
        let mut spins = 0u32;
        while sh.remaining.load(Ordering::Acquire) != 0 {
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
                spins += 1;
                continue;
            }
            let mut l = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.caller_sleeping.store(true, Ordering::SeqCst);
            while sh.remaining.load(Ordering::SeqCst) != 0 {
                l = sh.done_cv.wait(l).unwrap_or_else(|e| e.into_inner());
            }
            sh.caller_sleeping.store(false, Ordering::SeqCst);
        }
        // SAFETY: all workers are done with the job; clear the dangling pointer.
        unsafe { *sh.job.get() = None };

        let worker_panic = sh.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if let Some(p) = worker_panic {
            resume_unwind(p);
        }
    }
}

fn worker_loop(sh: Arc<Shared>, ith: usize) {
    let mut seen = 0usize;
    loop {
        // Wait for a new epoch: spin, then park.
        let mut spins = 0u32;
        loop {
            if sh.shutdown.load(Ordering::Acquire) {
                return;
            }
            if sh.epoch.load(Ordering::Acquire) != seen {
                break;
            }
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
                spins += 1;
                continue;
            }
            let mut l = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.sleepers.fetch_add(1, Ordering::SeqCst);
            while sh.epoch.load(Ordering::SeqCst) == seen && !sh.shutdown.load(Ordering::SeqCst) {
                l = sh.work_cv.wait(l).unwrap_or_else(|e| e.into_inner());
            }
            sh.sleepers.fetch_sub(1, Ordering::SeqCst);
            spins = 0;
        }
        seen = sh.epoch.load(Ordering::Acquire);
        let nth = sh.nth.load(Ordering::Relaxed);
        // SAFETY: published before the epoch bump we just observed; valid until we decrement `remaining`.
        let job = unsafe { (*sh.job.get()).expect("job published with epoch") };
        if ith < nth {
            IN_JOB.with(|c| c.set(true));
            // SAFETY: see above; `run` keeps the closure alive until remaining reaches 0.
            let r = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(ith, nth) }));
            IN_JOB.with(|c| c.set(false));
            if let Err(p) = r {
                let mut slot = sh.panic.lock().unwrap_or_else(|e| e.into_inner());
                if slot.is_none() {
                    *slot = Some(p);
                }
            }
        }
        if sh.remaining.fetch_sub(1, Ordering::SeqCst) == 1 && sh.caller_sleeping.load(Ordering::SeqCst) {
            let _l = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.done_cv.notify_all();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _l = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.work_cv.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
