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
/// Buffers above this size take huge pages only while their faults are cheap (`HugeBuf`).
const HUGE_CHECKED_ABOVE: usize = 1 << 30;
/// Huge pages such a buffer advises and faults in at a time, timed.
const HUGE_CHECK_PAGES: usize = 16;
/// A huge-page fault slower than this waits on something other than zeroing 2 MiB (~0.1–0.3 ms);
/// faulting the same bytes as 4 KiB pages takes ~0.4 ms.
const HUGE_FAULT_SLOW: std::time::Duration = std::time::Duration::from_millis(2);

/// Advises and faults in `whole` bytes of `map` from `off` as huge pages, `HUGE_CHECK_PAGES` at a
/// time, and stops after the first run of them whose faults took more than `slow` a page (or
/// whose advice failed): the rest stays on 4 KiB pages (advised so, for THP "always"). Returns
/// the bytes advised. Slow faults
/// come in streaks (the host backs memory it had taken back), often after a few cheap ones
/// (memory the guest freed recently), so one look at the start would not tell.
#[cfg(target_os = "linux")]
fn advise_while_cheap(map: &mut memmap2::MmapMut, off: usize, whole: usize, slow: std::time::Duration) -> usize {
    let run = HUGE_CHECK_PAGES * HUGE_PAGE;
    for start in (off..off + whole).step_by(run) {
        let n = run.min(off + whole - start);
        if map.advise_range(memmap2::Advice::HugePage, start, n).is_err() {
            return start - off;
        }
        let t0 = std::time::Instant::now();
        for page in (start..start + n).step_by(HUGE_PAGE) {
            // a write fault maps the page (a zero written into zeroed memory changes nothing)
            map[page] = 0;
        }
        if t0.elapsed() > slow * (n / HUGE_PAGE) as u32 {
            // where THP is "always" the kernel would give the rest huge pages unasked
            let rest = start + n;
            if rest < off + whole {
                let _ = map.advise_range(memmap2::Advice::NoHugePage, rest, off + whole - rest);
            }
            return rest - off;
        }
    }
    whole
}

/// Zeroed storage for a big, read-mostly buffer (a repacked weight matrix, read in 64-byte vector
/// loads): an anonymous mapping (page aligned, so 64-byte aligned) whose whole 2 MiB pages are
/// advised as transparent huge pages on Linux. A GEMV streams its weights once per token, and
/// with 4 KiB pages the hardware prefetchers restart at every page: a two-thread read of 4 KiB
/// pages ran at 27 GB/s on the Xeon of docs/PERFORMANCE.md, of huge pages at 34. The advice is
/// a hint: where THP is off ("never") the buffer is ordinary pages; only whole huge pages inside
/// the buffer are advised, so a matrix never makes a partly used huge page resident.
///
/// A buffer bigger than `HUGE_CHECKED_ABOVE` takes huge pages only while their faults are cheap
/// (`advise_while_cheap`): on a virtual machine that hands freed memory back to its host
/// (virtio-balloon free page reporting works in huge-page-sized blocks, exactly what a huge-page
/// fault takes) each fault can wait on the host, 3–8 ms per 2 MiB against 0.13 ms, and 0.38 ms
/// for the same bytes in 4 KiB pages (docs/PERFORMANCE.md, session 25). There a 7B file's
/// repack took 5–12 s instead of 1.5 s, to gain ~1.5 % in decode. Smaller buffers (models up to
/// ~1.5B parameters, whose narrow matrices lose ~11 % of decode speed on 4 KiB pages) take the
/// huge pages whatever their faults cost.
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
        #[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
        let mut map = memmap2::MmapOptions::new().len(if huge { len + HUGE_PAGE } else { len }).map_anon()?;
        let mut off = 0;
        if huge {
            let addr = map.as_ptr() as usize;
            off = addr.next_multiple_of(HUGE_PAGE) - addr;
            #[cfg(target_os = "linux")]
            {
                let whole = len / HUGE_PAGE * HUGE_PAGE;
                if whole > HUGE_CHECKED_ABOVE {
                    advise_while_cheap(&mut map, off, whole, HUGE_FAULT_SLOW);
                } else {
                    // only failure: a kernel without THP, where the hint has nothing to do
                    let _ = map.advise_range(memmap2::Advice::HugePage, off, whole);
                }
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn huge_pages_stop_at_the_first_slow_run_and_the_bytes_stay_zero() {
        let whole = (2 * HUGE_CHECK_PAGES + 3) * HUGE_PAGE; // two full runs and a short one
        let fresh = || memmap2::MmapOptions::new().len(whole + HUGE_PAGE).map_anon().unwrap();
        // faults never that slow: every run advised
        let mut map = fresh();
        assert_eq!(advise_while_cheap(&mut map, HUGE_PAGE, whole, Duration::from_secs(3600)), whole);
        assert!(map.iter().step_by(4096).all(|&b| b == 0));
        // every fault "slow": the first run only
        let mut map = fresh();
        assert_eq!(advise_while_cheap(&mut map, 0, whole, Duration::ZERO), HUGE_CHECK_PAGES * HUGE_PAGE);
        assert!(map.iter().step_by(4096).all(|&b| b == 0));
    }

    #[test]
    fn huge_buf_is_zeroed_and_writable_across_sizes() {
        for len in [1, 4095, HUGE_PAGE - 1, HUGE_PAGE, 3 * HUGE_PAGE + 17] {
            let mut b = HugeBuf::zeroed(len).unwrap();
            assert_eq!(b.bytes().len(), len);
            assert!(b.bytes().iter().all(|&x| x == 0));
            b.bytes_mut()[len - 1] = 7;
            assert_eq!(b.bytes()[len - 1], 7);
            assert_eq!(b.bytes().as_ptr() as usize % 64, 0);
        }
    }
}
