//! scratch: pp/tg timing. bench_model MODEL [pp] [tg] [reps] [threads]; wall and CPU time (all threads).
use llama_core::model::{Context, ContextParams, KvType, Model, ModelParams};
use std::time::Instant;
fn cpu_ns() -> u64 {
    let mut t = 0;
    for e in std::fs::read_dir("/proc/self/task").unwrap() {
        let p = e.unwrap().path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(p) {
            t += s.split_whitespace().next().unwrap().parse::<u64>().unwrap();
        }
    }
    t
}
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let path = &a[1];
    let pp: usize = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
    let tg: usize = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(32);
    let reps: usize = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(3);
    let th: usize = a.get(5).and_then(|s| s.parse().ok()).unwrap_or(1);
    let model = Model::load(std::path::Path::new(path), &ModelParams::default()).unwrap();
    let nv = model.n_vocab() as u32;
    let toks: Vec<u32> = (0..pp as u32).map(|i| (i * 7919 + 13) % nv.min(30000)).collect();
    let params = ContextParams {
        n_ctx: pp + tg + 8,
        n_batch: 512,
        n_threads: th,
        kv_type: KvType::F16,
        type_v: None,
        flash_attn: false,
        logits_all: false,
        n_seq_max: 1,
        embeddings: false,
    };
    let mut ctx = Context::new(&model, params).unwrap();
    let (mut pp_w, mut tg_w, mut pp_c, mut tg_c) = (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..reps {
        let (t0, c0) = (Instant::now(), cpu_ns());
        ctx.eval(&model, &toks, 0).unwrap();
        pp_w = pp_w.min(t0.elapsed().as_secs_f64());
        pp_c = pp_c.min((cpu_ns() - c0) as f64 * 1e-9);
        let (t1, c1) = (Instant::now(), cpu_ns());
        for i in 0..tg {
            ctx.eval(&model, &[(i as u32 * 31 + 7) % nv], pp + i).unwrap();
        }
        tg_w = tg_w.min(t1.elapsed().as_secs_f64());
        tg_c = tg_c.min((cpu_ns() - c1) as f64 * 1e-9);
    }
    let name = std::path::Path::new(path).file_stem().unwrap().to_string_lossy();
    println!(
        "{name} t{th}: pp{pp} {:.1} tok/s ({:.2} cpu-ms/tok), tg{tg} {:.1} tok/s ({:.2} cpu-ms/tok)",
        pp as f64 / pp_w,
        1e3 * pp_c / pp as f64,
        tg as f64 / tg_w,
        1e3 * tg_c / tg as f64
    );
}
