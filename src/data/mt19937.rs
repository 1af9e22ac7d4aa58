//! numpy's legacy `RandomState` shuffle (MT19937, seeded by one 32-bit integer), so the IMDB
//! loader can put the reviews in the same order as `keras.datasets.imdb.load_data(seed=113)`.
//! The file stores the reviews grouped by label; Keras' shuffle is what mixes them.

/// The Mersenne Twister MT19937 (Matsumoto and Nishimura 1998) with `init_genrand` seeding,
/// as numpy's `RandomState(seed)` for an integer seed.
pub(crate) struct Mt19937 {
    key: Box<[u32; 624]>,
    pos: usize,
}

impl Mt19937 {
    pub(crate) fn new(seed: u32) -> Self {
        let mut key = Box::new([0u32; 624]);
        key[0] = seed;
        for i in 1..624 {
            let prev = key[i - 1];
            key[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self { key, pos: 624 }
    }

    fn regenerate(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for i in 0..624 {
            let y = (self.key[i] & UPPER) | (self.key[(i + 1) % 624] & LOWER);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.key[i] = self.key[(i + 397) % 624] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            self.regenerate();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// numpy's `random_interval(max)`: uniform in `0..=max` by masked rejection (32-bit
    /// draws while `max` fits in 32 bits, else two draws, high word first).
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for s in [1, 2, 4, 8, 16, 32] {
            mask |= mask >> s;
        }
        loop {
            let v = if max <= u64::from(u32::MAX) {
                u64::from(self.next_u32()) & mask
            } else {
                ((u64::from(self.next_u32()) << 32) | u64::from(self.next_u32())) & mask
            };
            // Each draw is accepted with probability above 1/2, as in numpy.
            if v <= max {
                return v;
            }
        }
    }

    /// `indices = np.arange(n); rng.shuffle(indices)`: Fisher–Yates from the end.
    pub(crate) fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.interval(i as u64) as usize;
            idx.swap(i, j);
        }
        idx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_outputs_of_init_genrand_5489() {
        // The first outputs of mt19937ar.c's genrand_int32 after init_genrand(5489).
        let mut m = Mt19937::new(5489);
        assert_eq!(m.next_u32(), 3_499_211_612);
        assert_eq!(m.next_u32(), 581_869_302);
        assert_eq!(m.next_u32(), 3_890_346_734);
    }

    #[test]
    fn permutations_match_numpy_random_state_113() {
        // r = np.random.RandomState(113); a = np.arange(10); r.shuffle(a);
        // b = np.arange(7); r.shuffle(b)  (numpy 2.4.6)
        let mut m = Mt19937::new(113);
        assert_eq!(m.permutation(10), vec![9, 3, 6, 1, 0, 7, 4, 8, 2, 5]);
        assert_eq!(m.permutation(7), vec![5, 1, 0, 3, 6, 4, 2]);
        // The sizes of IMDB's train and test sets: first items and sum(i * perm[i]).
        let mut m = Mt19937::new(113);
        for (first, dot) in [
            (
                [7798, 13226, 18078, 793, 17499, 23003],
                3_919_982_184_325u64,
            ),
            ([22748, 4083, 8015, 13688, 5310, 4466], 3_895_349_011_257),
        ] {
            let p = m.permutation(25_000);
            assert_eq!(p[..6], first);
            let d: u64 = p.iter().enumerate().map(|(i, &v)| (i * v) as u64).sum();
            assert_eq!(d, dot);
        }
    }
}
