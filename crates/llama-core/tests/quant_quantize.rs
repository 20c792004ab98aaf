//! Quantization against gguf-py's `gguf.quants.quantize` (which mirrors ggml's reference
//! quantizers for F16, BF16, Q4_0 … Q8_0, TQ1_0, TQ2_0) on random rows with awkward cases mixed in.

mod quant_common;

use llama_core::quant::{quantize, GgmlType};
use quant_common::*;

#[test]
fn random_rows_match_gguf_py_quantize() {
    let dir = temp_dir("qnt");
    if run_ref(&["quantize", dir.to_str().unwrap(), "99"]).is_none() {
        return;
    }
    use GgmlType::*;
    for t in [F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, TQ1_0, TQ2_0] {
        let name = format!("{t:?}");
        let src = read_f32(&dir.join(format!("{name}.src.f32")));
        let want = std::fs::read(dir.join(format!("{name}.q"))).unwrap();
        let got = quantize(t, &src).unwrap();
        assert_eq!(got.len(), want.len(), "{t}: size");
        if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
            let bs = t.type_size();
            panic!(
                "{t}: first differing byte {i} (block {}), ours {:?} vs gguf-py {:?}",
                i / bs,
                &got[i / bs * bs..][..bs],
                &want[i / bs * bs..][..bs]
            );
        }
        eprintln!("{t}: {} bytes identical to gguf-py", got.len());
    }
    std::fs::remove_dir_all(&dir).ok();
}
