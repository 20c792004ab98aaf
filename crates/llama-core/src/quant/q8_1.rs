//! Q8_1: 8-bit with the scaled sum; the activation partner of Q4_1/Q5_1.

use half::f16;
#[allow(unused_imports)]
use super::QK_K;

/// 32 values: x = d * q; s = d * sum(q) (lets Q4_1/Q5_1 dots fold in the minimum).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; 32],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);
