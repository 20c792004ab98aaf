//! The random numbers llama.cpp's samplers draw: `std::mt19937` and libstdc++'s (GCC 12)
//! `generate_canonical`, `uniform_real_distribution` and `discrete_distribution` on top of it.
//! Same seed, same stream of draws as llama-cpp-python's.

/// `std::mt19937` (32-bit Mersenne Twister, the standard's parameters).
#[derive(Clone, Debug)]
pub struct Mt19937 {
    mt: [u32; 624],
    idx: usize,
}

impl Mt19937 {
    pub fn new(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = seed;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32.wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { mt, idx: 624 }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for i in 0..624 {
            let y = (self.mt[i] & UPPER) | (self.mt[(i + 1) % 624] & LOWER);
            let mut v = self.mt[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.mt[i] = v;
        }
        self.idx = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.idx >= 624 {
            self.twist();
        }
        let mut z = self.mt[self.idx];
        self.idx += 1;
        z ^= z >> 11;
        z ^= (z << 7) & 0x9d2c_5680;
        z ^= (z << 15) & 0xefc6_0000;
        z ^= z >> 18;
        z
    }

    /// `std::generate_canonical<double, 53>`: two 32-bit draws, low word first, summed in double.
    pub fn canonical_f64(&mut self) -> f64 {
        let lo = self.next_u32() as f64;
        let hi = self.next_u32() as f64;
        let r = (lo + hi * 4_294_967_296.0) / 18_446_744_073_709_551_616.0;
        if r >= 1.0 {
            1.0 - f64::EPSILON / 2.0 // nextafter(1.0, 0.0)
        } else {
            r
        }
    }

    /// `std::generate_canonical<float, 24>`: one 32-bit draw, rounded to float first.
    pub fn canonical_f32(&mut self) -> f32 {
        let r = self.next_u32() as f32 / 4_294_967_296.0f32;
        if r >= 1.0 {
            1.0 - f32::EPSILON / 2.0
        } else {
            r
        }
    }
}

/// The seed llama.cpp's samplers start from: `LLAMA_DEFAULT_SEED` (0xFFFFFFFF) means "random"
/// (llama.cpp then reads std::random_device); any other value is used as it is.
pub const DEFAULT_SEED: u32 = 0xFFFF_FFFF;

pub fn resolve_seed(seed: u32) -> u32 {
    if seed != DEFAULT_SEED {
        return seed;
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let x = (t as u64) ^ (t >> 64) as u64 ^ ((std::process::id() as u64) << 32);
    (x ^ (x >> 32)) as u32
}

/// `std::discrete_distribution<int>(probs…)(rng)` as libstdc++ computes it: weights widened to
/// double, normalized by their sum, a running sum whose last entry is forced to 1, and the first
/// cumulative ≥ a canonical draw. Fewer than two weights: 0, without drawing.
pub fn discrete(probs: impl Iterator<Item = f32>, rng: &mut Mt19937, cp: &mut Vec<f64>) -> usize {
    cp.clear();
    cp.extend(probs.map(|p| p as f64));
    if cp.len() < 2 {
        return 0;
    }
    let sum: f64 = cp.iter().fold(0.0, |a, &b| a + b);
    let mut run = 0.0f64;
    for x in cp.iter_mut() {
        run += *x / sum;
        *x = run;
    }
    let n = cp.len();
    cp[n - 1] = 1.0;
    let p = rng.canonical_f64();
    cp.partition_point(|&c| c < p)
}

/// C's `int(x)` for a float as x86 computes it (cvttss2si): truncation toward zero, and
/// INT_MIN for NaN and anything out of range (where Rust's `as` would saturate). llama.cpp relies
/// on it where a huge mirostat k or an infinite logit reaches `int(...)`.
pub fn c_int(x: f32) -> i32 {
    if !(-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        i32::MIN
    } else {
        x as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_standard() {
        // [rand.predef]: the 10000th invocation of a default-constructed mt19937 (seed 5489)
        // produces 4123659995.
        let mut g = Mt19937::new(5489);
        let mut x = 0;
        for _ in 0..10000 {
            x = g.next_u32();
        }
        assert_eq!(x, 4_123_659_995);
    }

    #[test]
    fn c_int_is_cvttss2si() {
        assert_eq!(c_int(2.9), 2);
        assert_eq!(c_int(-2.9), -2);
        assert_eq!(c_int(f32::INFINITY), i32::MIN);
        assert_eq!(c_int(f32::NAN), i32::MIN);
        assert_eq!(c_int(3.0e9), i32::MIN);
    }

    #[test]
    fn discrete_follows_the_weights() {
        let mut g = Mt19937::new(1);
        let mut cp = Vec::new();
        let mut hits = [0usize; 3];
        for _ in 0..30000 {
            hits[discrete([1.0f32, 2.0, 3.0].into_iter(), &mut g, &mut cp)] += 1;
        }
        for (h, w) in hits.iter().zip([1.0, 2.0, 3.0]) {
            assert!((*h as f64 / 30000.0 - w / 6.0).abs() < 0.01, "{hits:?}");
        }
        assert_eq!(discrete([5.0f32].into_iter(), &mut g, &mut cp), 0);
    }
}
