//! Q5_1: 5-bit with scale and minimum per 32 weights.

use half::f16;
#[allow(unused_imports)]
use super::QK_K;

/// 32 weights: x = d * q + m, q = nibble | (bit of qh) << 4.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);
