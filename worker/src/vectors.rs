//! Embeddings as stored: little-endian f32 bytes.

pub fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Half-precision little-endian bytes (round to nearest): half the size
/// of [`to_bytes`], for vectors kept only to be read again by a head.
pub fn to_f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect()
}

/// The vector [`to_f16_bytes`] stored.
pub fn from_f16_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

/// Dot product in eight independent lanes, which the compiler turns into
/// SIMD (a single running sum cannot be reordered, so it stays scalar).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Scales to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// A vector in int8 with one scale: `v ≈ scale × values`, each component
/// off by at most `scale / 2`. Scans read these (a quarter of the bytes of
/// f32) and re-score exactly only what the error bound cannot decide.
#[derive(Debug, Clone)]
pub struct Quantized {
    pub values: Vec<i8>,
    pub scale: f32,
    /// Σ|v_i| of the original vector.
    pub l1: f32,
    /// Σ|scale × values_i|: the query side of the error bound.
    pub l1_quantized: f32,
}

/// Slack for f32 rounding in the exact and the approximate dot products
/// (384 terms of unit vectors round off by well under 1e-4).
const ROUNDING_SLACK: f32 = 1e-3;

impl Quantized {
    pub fn new(v: &[f32]) -> Self {
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        let values: Vec<i8> = v
            .iter()
            .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
            .collect();
        let l1_quantized = values.iter().map(|q| f32::from(*q).abs() * scale).sum();
        Self {
            values,
            scale,
            l1: v.iter().map(|x| x.abs()).sum(),
            l1_quantized,
        }
    }

    /// `self · other` from the int8 forms, and a bound on its distance from
    /// the exact f32 dot product of the originals. With q = s_q·q8 + e_q and
    /// v = s_v·v8 + e_v (|e| ≤ s/2 per component):
    /// q·v − s_q·s_v·(q8·v8) = s_q·q8·e_v + e_q·v, bounded by
    /// s_v/2·Σ|s_q·q8| + s_q/2·Σ|v|.
    #[inline]
    pub fn dot_bounded(&self, other: &[i8], other_scale: f32, other_l1: f32) -> (f32, f32) {
        let approx = self.scale * other_scale * dot_i8(&self.values, other) as f32;
        let bound =
            other_scale * 0.5 * self.l1_quantized + self.scale * 0.5 * other_l1 + ROUNDING_SLACK;
        (approx, bound)
    }
}

/// Integer dot product of int8 vectors (components in −127..=127).
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return simd::dot_i8_avx2(a, b);
    }
    dot_i8_portable(a, b)
}

/// Sixteen independent lanes of i16 products, which the compiler
/// vectorises without any target feature (one running sum would not be).
fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0i32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            lanes[i] += i32::from(i16::from(x[i]) * i16::from(y[i]));
        }
    }
    lanes.iter().sum::<i32>() + tail
}

/// The one place the project uses `unsafe`: an AVX2 kernel, called only
/// after run-time detection.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use std::arch::x86_64::{
        __m256i, _mm_add_epi32, _mm_cvtsi128_si32, _mm_shuffle_epi32, _mm256_add_epi32,
        _mm256_castsi256_si128, _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_madd_epi16,
        _mm256_maddubs_epi16, _mm256_set1_epi16, _mm256_setzero_si256, _mm256_sign_epi8,
    };

    pub(super) fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: the caller checked that the CPU has AVX2.
        unsafe { kernel(a, b) }
    }

    #[target_feature(enable = "avx2")]
    fn kernel(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let blocks = n / 32;
        let mut acc = _mm256_setzero_si256();
        let ones = _mm256_set1_epi16(1);
        for i in 0..blocks {
            // SAFETY: i * 32 + 32 <= n, within both slices; loadu has no
            // alignment requirement.
            let (va, vb) = unsafe {
                (
                    _mm256_loadu_si256(a.as_ptr().add(i * 32).cast::<__m256i>()),
                    _mm256_loadu_si256(b.as_ptr().add(i * 32).cast::<__m256i>()),
                )
            };
            // |a| × (b with a's sign): maddubs wants unsigned × signed. Pairs
            // sum to at most 2 × 127 × 127, inside i16.
            let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(va, va), _mm256_sign_epi8(vb, va));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
        }
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256::<1>(acc),
        );
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        let mut total = _mm_cvtsi128_si32(s);
        for i in blocks * 32..n {
            total += i32::from(a[i]) * i32::from(b[i]);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let v = vec![0.5f32, -1.25, 3.0];
        assert_eq!(from_bytes(&to_bytes(&v)), v);
        let mut u = vec![3.0f32, 4.0];
        normalize(&mut u);
        assert!((dot(&u, &u) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn f16_bytes_are_half_the_size_and_close() {
        let mut v = pseudo_random(7, 384);
        normalize(&mut v);
        let b = to_f16_bytes(&v);
        assert_eq!(b.len(), 2 * v.len());
        let back = from_f16_bytes(&b);
        assert_eq!(back.len(), v.len());
        // f16 keeps 11 significant bits: within 2^-11 of each component.
        for (a, x) in back.iter().zip(&v) {
            assert!((a - x).abs() <= x.abs() / 2048.0 + 1e-7, "{a} vs {x}");
        }
        assert_eq!(from_f16_bytes(&to_f16_bytes(&[0.5, -1.25])), [0.5, -1.25]);
    }

    fn pseudo_random(seed: u64, n: usize) -> Vec<f32> {
        let mut x = seed | 1;
        let mut v: Vec<f32> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 20_001) as f32 / 10_000.0 - 1.0
            })
            .collect();
        normalize(&mut v);
        v
    }

    #[test]
    fn int8_kernels_agree() {
        for n in [0, 1, 31, 32, 33, 384, 1000] {
            let a = Quantized::new(&pseudo_random(n as u64 + 7, n)).values;
            let b = Quantized::new(&pseudo_random(n as u64 + 99, n)).values;
            let expected: i32 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| i32::from(*x) * i32::from(*y))
                .sum();
            assert_eq!(dot_i8_portable(&a, &b), expected, "n = {n}");
            assert_eq!(dot_i8(&a, &b), expected, "n = {n}");
        }
        let extreme = vec![127i8; 64];
        let negative = vec![-127i8; 64];
        assert_eq!(dot_i8(&extreme, &negative), -127 * 127 * 64);
    }

    #[test]
    fn int8_bound_holds() {
        for seed in 0..200u64 {
            let q = pseudo_random(seed * 2 + 1, 384);
            let v = pseudo_random(seed * 2 + 2, 384);
            let (qq, vq) = (Quantized::new(&q), Quantized::new(&v));
            let (approx, bound) = qq.dot_bounded(&vq.values, vq.scale, vq.l1);
            let exact = dot(&q, &v);
            assert!(
                (exact - approx).abs() <= bound,
                "seed {seed}: {exact} vs {approx} ± {bound}"
            );
            assert!(bound < 0.1, "bound {bound} too loose to be useful");
        }
    }
}
