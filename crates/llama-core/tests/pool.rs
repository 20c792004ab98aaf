//! ThreadPool behaviour: every ith runs exactly once per job, jobs are serialized, nested runs and
//! panics neither deadlock nor poison the pool, parked workers wake up.

use llama_core::kernels::ThreadPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[test]
fn each_thread_runs_once_per_job() {
    for n in [1usize, 2, 3, 5] {
        let pool = ThreadPool::new(n);
        assert_eq!(pool.n_threads(), n);
        for _ in 0..2000 {
            let seen = Mutex::new(vec![0usize; n]);
            pool.run(|ith, nth| {
                assert_eq!(nth, n);
                seen.lock().unwrap()[ith] += 1;
            });
            assert_eq!(*seen.lock().unwrap(), vec![1; n]);
        }
    }
}

#[test]
fn results_visible_after_run_and_split_is_complete() {
    let pool = ThreadPool::new(3);
    let data: Vec<u64> = (0..100_003).collect();
    let total = AtomicUsize::new(0);
    pool.run(|ith, nth| {
        let s: u64 = data.iter().skip(ith).step_by(nth).sum();
        total.fetch_add(s as usize, Ordering::Relaxed);
    });
    assert_eq!(total.load(Ordering::Relaxed) as u64, 100_002 * 100_003 / 2);
}

#[test]
fn wakes_after_parking() {
    let pool = ThreadPool::new(3);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(30)); // well past the spin phase: workers are parked
        let count = AtomicUsize::new(0);
        pool.run(|_, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 3);
    }
}

#[test]
fn nested_run_executes_inline() {
    let pool = ThreadPool::new(2);
    let count = AtomicUsize::new(0);
    pool.run(|_, _| {
        pool.run(|ith, nth| {
            assert_eq!((ith, nth), (0, 1));
            count.fetch_add(1, Ordering::Relaxed);
        });
    });
    assert_eq!(count.load(Ordering::Relaxed), 2);
}

#[test]
fn panic_propagates_after_all_threads_finish_and_pool_survives() {
    let pool = ThreadPool::new(3);
    for bad in 0..3 {
        let finished = AtomicUsize::new(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(|ith, _| {
                if ith == bad {
                    panic!("job panic on thread {ith}");
                }
                std::thread::sleep(Duration::from_millis(5));
                finished.fetch_add(1, Ordering::SeqCst);
            })
        }));
        let msg = r.expect_err("panic must propagate");
        let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(msg, format!("job panic on thread {bad}"));
        assert_eq!(finished.load(Ordering::SeqCst), 2, "run returned before the other threads finished");
    }
    let count = AtomicUsize::new(0);
    pool.run(|_, _| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(count.load(Ordering::Relaxed), 3);
}

#[test]
fn concurrent_callers_are_serialized() {
    let pool = ThreadPool::new(2);
    let active = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..200 {
                    pool.run(|_, nth| {
                        let a = active.fetch_add(1, Ordering::SeqCst);
                        assert!(a < nth, "two jobs overlapped");
                        std::hint::spin_loop();
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
        }
    });
}

#[test]
fn warming_any_address_is_harmless() {
    use llama_core::kernels::pool::WARM_SEGS;
    // warm ranges are only prefetched: null, unmapped, kernel-half and freed addresses must
    // neither fault nor change what the jobs compute
    let buf = Vec::<u8>::with_capacity(1 << 20);
    let freed = buf.as_ptr() as usize;
    drop(buf);
    let bad = [(0, 4096), (usize::MAX - 4096, 4096), (0xffff_8000_0000_0000, 1 << 16), (freed, 1 << 20)];
    let ranges: [(usize, usize); WARM_SEGS] = std::array::from_fn(|i| bad[i % bad.len()]);
    for n in [1usize, 2, 3] {
        let pool = ThreadPool::new(n);
        let warm = vec![ranges; n];
        for i in 0..200 {
            let total = AtomicUsize::new(0);
            pool.run_warming(&warm[..(i % (n + 1)).min(n)], |ith, _| {
                total.fetch_add(ith + 1, Ordering::Relaxed);
            });
            assert_eq!(total.load(Ordering::Relaxed), n * (n + 1) / 2);
        }
        std::thread::sleep(Duration::from_millis(5)); // workers warm while idle
        let seen = AtomicUsize::new(0);
        pool.run(|_, _| {
            seen.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(seen.load(Ordering::Relaxed), n);
    }
}
