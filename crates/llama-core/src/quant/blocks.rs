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

/// Bytes of a huge page: transparent huge pages come in aligned runs of this size.
const HUGE_PAGE: usize = 2 << 20;

/// Zeroed storage for a big, read-mostly buffer (a repacked weight matrix, read in 64-byte vector
/// loads): an anonymous mapping (page aligned, so 64-byte aligned) whose whole 2 MiB pages are
/// advised as transparent huge pages on Linux. A GEMV streams its weights once per token, and
/// with 4 KiB pages the hardware prefetchers restart at every page: a two-thread read of 4 KiB
/// pages ran at 27 GB/s on the Xeon of docs/PERFORMANCE.md, of huge pages at 34. The advice is
/// a hint: where THP is off ("never") the buffer is ordinary pages; only whole huge pages inside
/// the buffer are advised, so a matrix never makes a partly used huge page resident.
pub struct HugeBuf {
    map: Option<memmap2::MmapMut>,
    /// the buffer's start inside `map`: the first huge-page boundary when the mapping has room
    off: usize,
    len: usize,
}

impl HugeBuf {
    /// `len` zero bytes; `Err` when the system has no memory for them.
    pub fn zeroed(len: usize) -> std::io::Result<HugeBuf> {
        if len == 0 {
            return Ok(HugeBuf { map: None, off: 0, len });
        }
        // A buffer of at least one huge page gets one page more, so its start can move to a
        // huge-page boundary (the slack is never touched, so never resident).
        let huge = len >= HUGE_PAGE;
        let map = memmap2::MmapOptions::new().len(if huge { len + HUGE_PAGE } else { len }).map_anon()?;
        let mut off = 0;
        if huge {
            let addr = map.as_ptr() as usize;
            off = addr.next_multiple_of(HUGE_PAGE) - addr;
            #[cfg(target_os = "linux")]
            {
                // only failure: a kernel without THP, where the hint has nothing to do
                let _ = map.advise_range(memmap2::Advice::HugePage, off, len / HUGE_PAGE * HUGE_PAGE);
            }
        }
        Ok(HugeBuf { map: Some(map), off, len })
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.map {
            Some(m) => &m[self.off..self.off + self.len],
            None => &[],
        }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.map {
            Some(m) => &mut m[self.off..self.off + self.len],
            None => &mut [],
        }
    }
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
