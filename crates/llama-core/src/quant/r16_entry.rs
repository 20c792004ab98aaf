//! The safe table entry shared by the R16 kernels that split a 16-row group into parts of `$part`
//! rows (AVX2: two halves of 8, NEON: four quarters of 4) and tokens into passes of `$pass`.

/// `gemm_split_entry!(name, inner, type, part_rows, pass)`: defines `fn name` (a `GemmR16Fn`) that
/// checks every buffer length, then runs `inner::<T>(nb, w, part, a, a_stride, out, out_stride)`
/// for each part and each pass of at most `pass` (≤ 4) tokens.
macro_rules! gemm_split_entry {
    ($name:ident, $inner:ident, $t:expr, $part:expr, $pass:expr, $why:literal) => {
        fn $name(nb: usize, w: &[u8], a: &[u8], a_stride: usize, nt: usize, out: &mut [f32], out_stride: usize) {
            check_gemm_args($t, nb, w, a, a_stride, nt, out, out_stride);
            let (w, a, o) = (w.as_ptr(), a.as_ptr(), out.as_mut_ptr());
            let mut t0 = 0;
            while t0 < nt {
                let n = $pass.min(nt - t0);
                for part in 0..R / $part {
                    // SAFETY: reachable only through the kernel table of this ISA, handed out after
                    // run-time detection of the features in `$why`; the group, the nt activation
                    // rows and the nt output rows were checked above, and each part reads and
                    // writes only inside them.
                    unsafe {
                        let (a, o) = (a.add(t0 * a_stride), o.add(t0 * out_stride + part * $part));
                        match n {
                            1 => $inner::<1>(nb, w, part, a, a_stride, o, out_stride),
                            2 => $inner::<2>(nb, w, part, a, a_stride, o, out_stride),
                            3 => $inner::<3>(nb, w, part, a, a_stride, o, out_stride),
                            _ => $inner::<4>(nb, w, part, a, a_stride, o, out_stride),
                        }
                    }
                }
                t0 += n;
            }
        }
    };
}
