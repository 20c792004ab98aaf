//! Q5_0: 5-bit, one f16 scale per 32 weights; the fifth bits packed in qh.

use half::f16;
#[allow(unused_imports)]
use super::QK_K;

/// 32 weights: x = d * (q - 16), q = nibble | (bit of qh) << 4.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
