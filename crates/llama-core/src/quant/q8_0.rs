//! Q8_0: 8-bit, one f16 scale per 32 weights. Also the activation partner of Q4_0/Q5_0/Q8_0.

use half::f16;
#[allow(unused_imports)]
use super::QK_K;

/// 32 weights: x = d * q.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
