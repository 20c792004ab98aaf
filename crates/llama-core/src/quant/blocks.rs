//! Viewing raw tensor bytes as block structs, and the small numeric helpers every format shares.
//!
//! Tensor bytes come from an mmap (32-byte aligned at tensor starts only) or from arbitrary Vecs, so a
//! row may start at any address. Blocks with align 1–2 are almost always aligned in practice, but
//! BlockQ8K (align 4) and f32 rows can sit at odd offsets: `read_blocks` borrows when the address is
//! aligned and copies into an aligned Vec otherwise, so callers never see a misaligned reference.

use std::borrow::Cow;

use half::{bf16, f16};

use super::GgmlType;
use super::{BlockIQ1M, BlockIQ1S, BlockIQ2S, BlockIQ2XS, BlockIQ2XXS, BlockIQ3S, BlockIQ3XXS};
use super::{BlockIQ4NL, BlockIQ4XS, BlockTQ1_0, BlockTQ2_0};
use super::{BlockMXFP4, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};
use super::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};

#[cfg(target_endian = "big")]
compile_error!("llama-core reads ggml blocks in place and assumes a little-endian host");

/// A ggml storage unit: one quant block, or one scalar for the float types.
///
/// # Safety
/// Implementors must be `#[repr(C)]` (or transparent) plain data without padding, for which every
/// bit pattern is a valid value (integers, integer arrays, f16/bf16/f32), and `size_of::<Self>()`
/// must equal `TYPE.type_size()`.
pub unsafe trait Block: Copy + 'static {
    /// The ggml type whose block this is.
    const TYPE: GgmlType;
}

macro_rules! impl_block {
    ($($t:ty => $g:ident),* $(,)?) => {$(
        // SAFETY: each of these is repr(C)/repr(transparent) over integers and f16/f32 only; the size
        // asserts next to the struct definitions prove there is no padding (sum of fields == size).
        unsafe impl Block for $t { const TYPE: GgmlType = GgmlType::$g; }
        const _: () = assert!(std::mem::size_of::<$t>() == GgmlType::$g.block_layout().1);
    )*};
}

impl_block!(
    f32 => F32, f16 => F16, bf16 => BF16,
    BlockQ4_0 => Q4_0, BlockQ4_1 => Q4_1, BlockQ5_0 => Q5_0, BlockQ5_1 => Q5_1,
    BlockQ8_0 => Q8_0, BlockQ8_1 => Q8_1,
    BlockQ2K => Q2_K, BlockQ3K => Q3_K, BlockQ4K => Q4_K, BlockQ5K => Q5_K, BlockQ6K => Q6_K,
    BlockQ8K => Q8_K, BlockMXFP4 => MXFP4,
    BlockIQ2XXS => IQ2_XXS, BlockIQ2XS => IQ2_XS, BlockIQ2S => IQ2_S, BlockIQ3XXS => IQ3_XXS,
    BlockIQ3S => IQ3_S, BlockIQ1S => IQ1_S, BlockIQ1M => IQ1_M,
    BlockIQ4NL => IQ4_NL, BlockIQ4XS => IQ4_XS, BlockTQ1_0 => TQ1_0, BlockTQ2_0 => TQ2_0,
);

/// Borrows `bytes` as blocks when its address is aligned for `T`; `None` if misaligned or if the
/// length is not a whole number of blocks.
pub fn cast_blocks<T: Block>(bytes: &[u8]) -> Option<&[T]> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size) || bytes.as_ptr().align_offset(std::mem::align_of::<T>()) != 0 {
        return None;
    }
    // SAFETY: the pointer is aligned for T (checked above), the length covers exactly
    // len/size values of T, and `Block` guarantees every bit pattern is a valid T.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, bytes.len() / size) })
}

/// Mutable twin of [`cast_blocks`].
pub fn cast_blocks_mut<T: Block>(bytes: &mut [u8]) -> Option<&mut [T]> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size) || bytes.as_ptr().align_offset(std::mem::align_of::<T>()) != 0 {
        return None;
    }
    // SAFETY: as in `cast_blocks`; the exclusive borrow of `bytes` is transferred to the result.
    Some(unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut T, bytes.len() / size) })
}

/// The bytes of a block slice (for writing quantized data out).
pub fn blocks_as_bytes<T: Block>(blocks: &[T]) -> &[u8] {
    // SAFETY: `Block` types have no padding, so every byte of the slice is initialised; u8 has
    // align 1 and the length is exactly the slice's size in bytes.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr() as *const u8, std::mem::size_of_val(blocks)) }
}

fn blocks_as_bytes_mut<T: Block>(blocks: &mut [T]) -> &mut [u8] {
    // SAFETY: as in `blocks_as_bytes`; any byte pattern written back is a valid T (`Block`).
    unsafe { std::slice::from_raw_parts_mut(blocks.as_mut_ptr() as *mut u8, std::mem::size_of_val(blocks)) }
}

/// A block vector filled with zero bytes.
pub fn zeroed_blocks<T: Block>(n: usize) -> Vec<T> {
    // SAFETY: all-zero bytes are a valid T (`Block`: every bit pattern is valid).
    vec![unsafe { std::mem::zeroed::<T>() }; n]
}

/// Blocks of `bytes`, borrowed when aligned, else copied. The caller checked the length is a whole
/// number of blocks; a ragged tail is ignored.
pub fn read_blocks<T: Block>(bytes: &[u8]) -> Cow<'_, [T]> {
    match cast_blocks(bytes) {
        Some(b) => Cow::Borrowed(b),
        None => {
            let n = bytes.len() / std::mem::size_of::<T>();
            let mut v = zeroed_blocks::<T>(n);
            let dst = blocks_as_bytes_mut(&mut v);
            dst.copy_from_slice(&bytes[..dst.len()]);
            Cow::Owned(v)
        }
    }
}

/// Runs `f` on `bytes` viewed as mutable blocks; when misaligned, `f` fills a scratch Vec that is
/// then copied into `bytes`.
pub fn write_blocks<T: Block>(bytes: &mut [u8], f: impl FnOnce(&mut [T])) {
    if let Some(b) = cast_blocks_mut::<T>(bytes) {
        f(b);
        return;
    }
    let n = bytes.len() / std::mem::size_of::<T>();
    let mut v = zeroed_blocks::<T>(n);
    f(&mut v);
    let src = blocks_as_bytes(&v);
    bytes[..src.len()].copy_from_slice(src);
}

/// 64 bytes aligned to 64: storage for data read in 64-byte vector loads (`repack::Packed`).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct Line64(pub [u8; 64]);

/// The bytes of a `Line64` slice.
pub fn lines_as_bytes(lines: &[Line64]) -> &[u8] {
    // SAFETY: `Line64` is 64 plain bytes with no padding (size 64 = align 64); u8 has align 1.
    unsafe { std::slice::from_raw_parts(lines.as_ptr() as *const u8, std::mem::size_of_val(lines)) }
}

/// Mutable twin of [`lines_as_bytes`].
pub fn lines_as_bytes_mut(lines: &mut [Line64]) -> &mut [u8] {
    // SAFETY: as in `lines_as_bytes`; any byte pattern is a valid `Line64`.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr() as *mut u8, std::mem::size_of_val(lines)) }
}

/// ggml's `nearest_int`: adding 1.5·2^23 puts the integer part in the low mantissa bits, which
/// rounds half to even. Only valid for |x| ≤ 2^22, as in ggml (the callers' values are bounded by
/// construction; outside that range the result is garbage there too, never UB here).
#[inline(always)]
pub fn nearest_int(x: f32) -> i32 {
    let v = x + 12582912.0f32;
    (v.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// ggml's FP32_TO_FP16: IEEE round to nearest even (half's software and F16C paths both do that).
#[inline(always)]
pub fn fp16(x: f32) -> f16 {
    f16::from_f32(x)
}
