//! Q4_0: 4-bit, one f16 scale per 32 weights.

use half::f16;
#[allow(unused_imports)]
use super::QK_K;

/// 32 weights: x = d * (q - 8), q in 0..16; qs[j] holds element j (low nibble) and j+16 (high).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
