//! Q4_1: 4-bit with scale and minimum per 32 weights.

use half::f16;
#[allow(unused_imports)]
use super::QK_K;

/// 32 weights: x = d * q + m, q in 0..16; nibble layout as Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
