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
//!
//! Warming: `run_warming` also hands each thread byte ranges that the *next* job will read first.
//! A thread that has finished its share (and the workers between jobs, while the caller does the
//! serial work of the forward pass) asks the cache for them instead of only spinning, so the
//! memory bus keeps streaming weights through the gaps between a token's matmuls.

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

/// Most byte ranges one thread warms for the next job (a job's first claims take at most 4, what
/// is read between the two jobs, the attention's keys and values, the rest).
pub const WARM_SEGS: usize = 8;

/// One byte range to warm: (address, length). Only ever prefetched, never read: an address that
/// is stale by the time it is warmed costs a wasted request, not a fault.
pub type WarmSeg = (usize, usize);

/// Cache lines a waiting thread asks for between two looks at the job state: a few requests
/// keep the line-fill buffers busy without delaying the thread's reaction to a new job.
const WARM_LINES: usize = 8;

/// A worker's ranges for the next job, published by `run_warming` (generation bumped after the
/// ranges are written; a worker that reads a torn set only warms a wrong range).
struct Warm {
    gen: AtomicUsize,
    segs: [[AtomicUsize; 2]; WARM_SEGS],
}

/// How far one thread got through its ranges: round-robin over them, line by line, so each
/// range's beginning (what its stream reads first) is warm before any range's end.
#[derive(Default)]
struct Warmer {
    gen: usize,
    segs: [WarmSeg; WARM_SEGS],
    line: usize,
    lines: usize,
}

impl Warmer {
    fn start(&mut self, gen: usize, segs: [WarmSeg; WARM_SEGS]) {
        self.gen = gen;
        self.segs = segs;
        self.line = 0;
        self.lines = segs.iter().map(|s| s.1.div_ceil(64)).max().unwrap_or(0);
    }

    /// Asks for the next `WARM_LINES` lines or so (`ask(address)` each); false when nothing is left.
    fn step_with(&mut self, mut ask: impl FnMut(usize)) -> bool {
        let mut asked = 0;
        while asked < WARM_LINES && self.line < self.lines {
            let off = 64 * self.line;
            for &(a, n) in &self.segs {
                if off < n {
                    ask(a.wrapping_add(off));
                    asked += 1;
                }
            }
            self.line += 1;
        }
        asked > 0
    }

    fn step(&mut self) -> bool {
        self.step_with(super::prefetch_line)
    }
}

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
    /// [n_threads]: what thread ith warms for the next job (entry 0, the caller's, unused).
    warm: Vec<Warm>,
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
            warm: (0..n_threads)
                .map(|_| Warm {
                    gen: AtomicUsize::new(0),
                    segs: std::array::from_fn(|_| [AtomicUsize::new(0), AtomicUsize::new(0)]),
                })
                .collect(),
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
        self.run_warming(&[], f)
    }

    /// `run`, and then thread ith warms `warm[ith]` (the ranges it will read first in the next
    /// job) while it waits: the caller for the others at this job's end, a worker until the next
    /// job. Threads without an entry warm nothing.
    pub fn run_warming<F: Fn(usize, usize) + Sync>(&self, warm: &[[WarmSeg; WARM_SEGS]], f: F) {
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
        // after the bump: a worker still warming for this job keeps at it until it sees the job
        for (w, segs) in sh.warm.iter().zip(warm).skip(1) {
            for (slot, &(a, n)) in w.segs.iter().zip(segs) {
                slot[0].store(a, Ordering::Relaxed);
                slot[1].store(n, Ordering::Relaxed);
            }
            w.gen.fetch_add(1, Ordering::Release);
        }
        let mut warmer = Warmer::default();
        if let Some(&segs) = warm.first() {
            warmer.start(1, segs);
        }

        IN_JOB.with(|c| c.set(true));
        let mine = catch_unwind(AssertUnwindSafe(|| f(0, nth)));
        IN_JOB.with(|c| c.set(false));

        // Wait for the workers: spin, then park.
        let mut spins = 0u32;
        while sh.remaining.load(Ordering::Acquire) != 0 {
            if warmer.step() {
                continue;
            }
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
    let mut warmer = Warmer::default();
    let warm = &sh.warm[ith];
    loop {
        // Wait for a new epoch: warm what the next job reads first, spin, then park.
        let mut spins = 0u32;
        loop {
            if sh.shutdown.load(Ordering::Acquire) {
                return;
            }
            if sh.epoch.load(Ordering::Acquire) != seen {
                break;
            }
            let gen = warm.gen.load(Ordering::Acquire);
            if gen != warmer.gen {
                let segs = std::array::from_fn(|i| {
                    let s = &warm.segs[i];
                    (s[0].load(Ordering::Relaxed), s[1].load(Ordering::Relaxed))
                });
                warmer.start(gen, segs);
            }
            if warmer.step() {
                continue;
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `r` followed by empty ranges: one thread's warm set (the tests of `matmul.rs` too).
    pub(crate) fn segs(r: &[WarmSeg]) -> [WarmSeg; WARM_SEGS] {
        std::array::from_fn(|i| r.get(i).copied().unwrap_or((0, 0)))
    }

    #[test]
    fn warmer_asks_every_line_once_round_robin() {
        let mut w = Warmer::default();
        assert!(!w.step_with(|_| panic!("nothing published")));
        w.start(1, segs(&[(1000, 100), (0, 0), (5000, 300), (9000, 64)]));
        let mut got = Vec::new();
        while w.step_with(|a| got.push(a)) {}
        // each range's first line before any range's second; a partial last line counts
        assert_eq!(got, [1000, 5000, 9000, 1064, 5064, 5128, 5192, 5256]);
        assert!(!w.step_with(|a| panic!("asked {a} after the end")));
        w.start(2, segs(&[(64, 64 * 20)]));
        let mut n = 0;
        assert!(w.step_with(|_| n += 1));
        assert_eq!(n, WARM_LINES, "one step asks a bounded number of lines");
    }
}
