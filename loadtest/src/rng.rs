//! A small seeded random number generator and the distributions the
//! population model needs.
//!
//! Our own (SplitMix64) rather than a crate's, so that a case and a seed give
//! the same events on every version of every dependency: generated load is
//! data, and runs are compared across releases. Not for cryptography.

/// SplitMix64: a 64-bit state, one add and a mix per draw.
#[derive(Clone, Debug)]
pub struct Rng(u64);

/// Mixes a value into a well-spread 64-bit hash (the SplitMix64 finaliser).
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash of several keys (seed, stream name, member, day...).
pub fn hash(keys: &[u64]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for &k in keys {
        h = mix(h ^ k.wrapping_add(0x9e37_79b9_7f4a_7c15));
    }
    h
}

impl Rng {
    /// A generator whose stream is fixed by `keys`.
    pub fn keyed(keys: &[u64]) -> Rng {
        Rng(hash(keys))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Exponential with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f64()).ln()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal with the given median and shape `sigma`.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Poisson with the given mean (Knuth below 30, normal approximation above).
    pub fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean < 30.0 {
            let l = (-mean).exp();
            let mut k = 0u64;
            let mut p = 1.0;
            loop {
                p *= self.f64();
                if p <= l {
                    return k;
                }
                k += 1;
            }
        }
        (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64
    }

    /// An index drawn by cumulative weights (`cum` ascending, last = total).
    pub fn pick(&mut self, cum: &[f64]) -> usize {
        let total = cum.last().copied().unwrap_or(0.0);
        let x = self.f64() * total;
        cum.partition_point(|&c| c <= x)
            .min(cum.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_streams_repeat_and_differ() {
        let a: Vec<u64> = (0..4).map(|_| Rng::keyed(&[1, 2]).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::keyed(&[1, 2]).next_u64(),
            Rng::keyed(&[1, 3]).next_u64()
        );
    }

    #[test]
    fn poisson_mean_is_close() {
        let mut r = Rng::keyed(&[9]);
        for mean in [3.0, 40.0] {
            let n = 20_000;
            let s: u64 = (0..n).map(|_| r.poisson(mean)).sum();
            let m = s as f64 / f64::from(n);
            assert!((m - mean).abs() < mean * 0.05, "{m} vs {mean}");
        }
    }

    #[test]
    fn pick_follows_weights() {
        let mut r = Rng::keyed(&[5]);
        let cum = [1.0, 1.0, 4.0];
        let mut c = [0u32; 3];
        for _ in 0..10_000 {
            c[r.pick(&cum)] += 1;
        }
        assert_eq!(c[1], 0);
        assert!(c[2] > c[0] * 2);
    }
}
