//! Fuzz the GGUF parser: any byte string must parse or fail with an error — no panic, no
//! out-of-bounds, no huge allocation — and every accepted file must hand out in-bounds tensor
//! slices of the advertised size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llama_core::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else { return };
    assert!(f.data_offset % f.alignment == 0);
    let mut sum = 0u64;
    for t in f.tensors() {
        let d = f.tensor_data(t);
        assert_eq!(d.len() as u64, t.n_bytes, "{}", t.name);
        assert!(t.n_elements() >= t.n_rows());
        assert_eq!(t.n_bytes, t.row_size() * t.n_rows());
        sum = sum.wrapping_add(d.iter().map(|&b| b as u64).sum::<u64>());
        assert!(std::ptr::eq(f.tensor(&t.name).unwrap(), t));
    }
    for (k, v) in f.metadata() {
        // Same entry (by address: NaN values are not == to themselves).
        assert!(std::ptr::eq(f.get(k).unwrap(), v));
        let _ = (f.get_str(k), f.get_u32(k), f.get_u64(k), f.get_f32(k), f.get_bool(k), f.get_arr(k));
    }
    std::hint::black_box(sum);
});
