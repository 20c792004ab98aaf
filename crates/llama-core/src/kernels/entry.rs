//! The safe table entries of the SIMD kernels, one macro per signature, shared by the x86 and NEON
//! modules: each checks every buffer length, then calls the `#[target_feature]` body, which is
//! reachable only through a table built after run-time detection of its features.

/// `dot_entry!(name, inner, block_elems, weight_block_bytes, act_block_bytes, "features")`:
/// `fn name` (a `VecDotFn`) checking both rows cover `n` elements, then `inner(n, w, a)`.
macro_rules! dot_entry {
    ($name:ident, $inner:ident, $bs:expr, $wts:expr, $ats:expr, $why:literal) => {
        fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let nb = n / $bs;
            assert!(w.len() >= nb * $wts && a.len() >= nb * $ats, "vec_dot: row shorter than {n} elements");
            // SAFETY: reachable only through the kernel table of this ISA, handed out after
            // run-time detection of the features in `$why` (those of `$inner`); the pointer ranges
            // read (nb blocks of each row) are checked just above.
            unsafe { $inner(n, w.as_ptr(), a.as_ptr()) }
        }
    };
}

/// `from_float_entry!(name, inner, block_elems, block_bytes, "features")`: `fn name` (a
/// `FromFloatFn`) checking `out` holds the blocks of `x`, then `inner(x, out)`.
macro_rules! from_float_entry {
    ($name:ident, $inner:ident, $bs:expr, $ts:expr, $why:literal) => {
        fn $name(x: &[f32], out: &mut [u8]) {
            assert!(x.len() % $bs == 0 && out.len() >= x.len() / $bs * $ts, "from_float: bad row length");
            // SAFETY: reachable only through the kernel table of this ISA, handed out after
            // run-time detection of the features in `$why`; lengths checked above.
            unsafe { $inner(x, out) }
        }
    };
}

/// `gemm_split_entry!(name, inner, type, part_rows, pass, "features")`: `fn name` (a `GemmR16Fn`)
/// for the R16 kernels that split a 16-row group into parts of `part_rows` rows (AVX2: two halves
/// of 8, NEON: four quarters of 4) and tokens into passes of `pass` (≤ 4): checks every buffer
/// length, then runs `inner::<T>(c)` (`c`: the pass's `shared::R16Call`) for each part and each
/// pass. `inner::<_, G..>` names a kernel with more const parameters after `T`.
macro_rules! gemm_split_entry {
    ($name:ident, $inner:ident $(::<_ $(, $g:tt)*>)?, $t:expr, $part:expr, $pass:expr, $why:literal) => {
        fn $name(nb: usize, w: &[u8], a: &[u8], a_stride: usize, nt: usize, out: &mut [f32], out_stride: usize) {
            $crate::kernels::shared::gemm_r16_check($t, nb, w, a, a_stride, nt, out, out_stride);
            let (w, a, o) = (w.as_ptr(), a.as_ptr(), out.as_mut_ptr());
            let mut t0 = 0;
            while t0 < nt {
                let n = $pass.min(nt - t0);
                for part in 0..$crate::quant::repack::R / $part {
                    // SAFETY: reachable only through the kernel table of this ISA, handed out after
                    // run-time detection of the features in `$why`; the group, the nt activation
                    // rows and the nt output rows were checked above, and each part reads and
                    // writes only inside them.
                    unsafe {
                        let (a, out) = (a.add(t0 * a_stride), o.add(t0 * out_stride + part * $part));
                        let c = $crate::kernels::shared::R16Call { nb, w, part, a, as_: a_stride, out, os: out_stride };
                        match n {
                            1 => $inner::<1 $($(, $g)*)?>(c),
                            2 => $inner::<2 $($(, $g)*)?>(c),
                            3 => $inner::<3 $($(, $g)*)?>(c),
                            _ => $inner::<4 $($(, $g)*)?>(c),
                        }
                    }
                }
                t0 += n;
            }
        }
    };
}

/// `panel_entry!(name, check, T, "features", |n, src, stride, rows, out| body)`: `fn name` (an
/// `AttnKtFn` or `AttnVfFn` over `T` rows) checking both buffers with
/// `check(n, src_len, stride, rows, out_len)`, then running `body` (on the raw pointers `src`,
/// `out`) in a `#[target_feature(enable = "features")]` fn.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_macros))] // the attention panels are x86's
macro_rules! panel_entry {
    ($name:ident, $check:path, $t:ty, $feat:literal, |$n:ident, $src:ident, $s:ident, $rows:ident, $out:ident| $body:expr) => {
        pub(crate) fn $name(n: usize, src: &[$t], stride: usize, rows: usize, out: &mut [f32]) {
            #[target_feature(enable = $feat)]
            /// # Safety
            /// The CPU must support this function's target features (`$feat`); `src`, `out` must
            /// cover what `$check(n, src_len, stride, rows, out_len)` requires.
            unsafe fn inner($n: usize, $src: *const $t, $s: usize, $rows: usize, $out: *mut f32) {
                // SAFETY: the caller upholds this function's `# Safety` contract (target features,
                // pointer ranges), which covers every unsafe operation of the body.
                unsafe { $body }
            }
            $check(n, src.len(), stride, rows, out.len());
            // SAFETY: reachable only through the kernel table of this ISA, handed out after
            // run-time detection of the features in `$feat`; every element read or written is in
            // bounds by the check just above.
            unsafe { inner(n, src.as_ptr(), stride, rows, out.as_mut_ptr()) }
        }
    };
}

/// `gather_entry!(name, panels, T, "features", |n, src, stride, cells, out| body)`: `fn name` (an
/// `AttnKtGatherFn` when `panels`, else an `AttnVfGatherFn`, over `T` rows) checking every named
/// row and the output with `attn_gather_check`, then running `body` (on the raw pointers `src`,
/// `out` and the checked `cells`) in a `#[target_feature(enable = "features")]` fn.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_macros))]
macro_rules! gather_entry {
    ($name:ident, $panels:expr, $t:ty, $feat:literal, |$n:ident, $src:ident, $s:ident, $cells:ident, $out:ident| $body:expr) => {
        pub(crate) fn $name(n: usize, src: &[$t], stride: usize, cells: &[usize], out: &mut [f32]) {
            #[target_feature(enable = $feat)]
            /// # Safety
            /// The CPU must support this function's target features (`$feat`); `src`, `cells`,
            /// `out` must pass `attn_gather_check(n, src_len, stride, cells, out_len, $panels)`.
            unsafe fn inner($n: usize, $src: *const $t, $s: usize, $cells: &[usize], $out: *mut f32) {
                // SAFETY: the caller upholds this function's `# Safety` contract (target features,
                // pointer ranges), which covers every unsafe operation of the body.
                unsafe { $body }
            }
            $crate::kernels::shared::attn_gather_check(n, src.len(), stride, cells, out.len(), $panels);
            // SAFETY: reachable only through the kernel table of this ISA, handed out after
            // run-time detection of the features in `$feat`; every element read or written is in
            // bounds by the check just above.
            unsafe { inner(n, src.as_ptr(), stride, cells, out.as_mut_ptr()) }
        }
    };
}
