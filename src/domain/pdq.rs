//! PDQ perceptual hashes (256 bits): the one type every module uses
//! ([`Pdq`], bytes inside, hex only at the edges), their Hamming distance,
//! and the rule of which hashes are reliable enough to match
//! ([`is_reliable`]). Computing a hash from pixels is
//! `imaging::pdq_hash`; the Hamming-space index is `imaging::pdq_index`.

use std::fmt;

/// A PDQ hash as four little-endian `u64` words (bytes 0–7 are word 0).
pub(crate) type Words = [u64; 4];

/// PDQ quality (0-100) below which a hash is unreliable: featureless
/// images (flat colours, gradients) collide with each other, so such
/// hashes are left out of near-duplicate matching unless a caller asks.
pub const MIN_RELIABLE_QUALITY: i32 = 50;

/// Whether a hash of this `quality` takes part in near-duplicate matching
/// ([`MIN_RELIABLE_QUALITY`]). The one place the rule is written.
pub fn is_reliable(quality: i32) -> bool {
    quality >= MIN_RELIABLE_QUALITY
}

/// A 256-bit PDQ perceptual hash.
///
/// Byte 0 is written first in the hex form, as in the reference
/// implementation's output.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Pdq(pub [u8; 32]);

impl Pdq {
    /// Parses exactly 64 hex digits (lower- or upper-case); the first two give
    /// byte 0. Anything else (other lengths, signs, spaces, `0x`) is `None`.
    pub fn from_hex(s: &str) -> Option<Pdq> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Pdq(out))
    }

    /// The 64 lower-case hex digits of the hash, byte 0 first.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The Hamming distance to `other`: the number of differing bits, 0..=256.
    pub fn distance(&self, other: &Pdq) -> u32 {
        hamming(&self.words(), &other.words())
    }

    /// The hash as four little-endian words (bytes 0-7 are word 0).
    pub(crate) fn words(&self) -> Words {
        let mut w = [0u64; 4];
        for (word, bytes) in w.iter_mut().zip(self.0.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            *word = u64::from_le_bytes(b);
        }
        w
    }

    /// The hash of four little-endian words.
    pub(crate) fn from_words(w: &Words) -> Pdq {
        let mut out = [0u8; 32];
        for (bytes, word) in out.chunks_exact_mut(8).zip(w) {
            bytes.copy_from_slice(&word.to_le_bytes());
        }
        Pdq(out)
    }
}

impl fmt::Display for Pdq {
    /// Writes [`Pdq::to_hex`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// One of the eight rotations and reflections of a picture (the dihedral
/// group of the square). Reposts flip and rotate photos to dodge matching;
/// PDQ's 16 × 16 DCT of a transformed picture is the original's with some
/// coefficients negated and, for the quarter turns and diagonal
/// reflections, transposed, so the hash of each transformed picture can be
/// computed without touching its pixels again. Numbers match the API's
/// `ImageTransformation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Transformation {
    /// Not set.
    Unspecified = 0,
    /// As it is.
    Identity = 1,
    /// Rotated a quarter turn clockwise.
    Rotated90 = 2,
    /// Rotated half a turn.
    Rotated180 = 3,
    /// Rotated three quarter turns clockwise (a quarter turn anticlockwise).
    Rotated270 = 4,
    /// Mirrored left to right.
    MirroredHorizontally = 5,
    /// Flipped top to bottom.
    FlippedVertically = 6,
    /// Reflected in the main diagonal (top-left to bottom-right).
    Transposed = 7,
    /// Reflected in the other diagonal.
    Transversed = 8,
}

impl Transformation {
    /// The eight, identity first: the order of every array of variants.
    pub const ALL: [Transformation; 8] = [
        Transformation::Identity,
        Transformation::Rotated90,
        Transformation::Rotated180,
        Transformation::Rotated270,
        Transformation::MirroredHorizontally,
        Transformation::FlippedVertically,
        Transformation::Transposed,
        Transformation::Transversed,
    ];

    /// Where coefficient `(i, j)` of the transformed picture's 16 × 16 DCT
    /// comes from in the original's (row `i` is the vertical frequency
    /// `i + 1`), and whether it is negated. Mirroring the columns of an
    /// `N`-sample DCT-II negates its odd frequencies (`cos(πu(2(N−1−x)+1)/2N)
    /// = (−1)^u cos(πu(2x+1)/2N)`), and a quarter turn is a transposition
    /// followed by a mirror.
    pub fn source(self, i: usize, j: usize) -> ((usize, usize), bool) {
        // Frequency u = index + 1: odd frequencies sit at even indexes.
        let odd = |k: usize| k.is_multiple_of(2);
        match self {
            Transformation::Unspecified | Transformation::Identity => ((i, j), false),
            Transformation::Rotated90 => ((j, i), odd(j)),
            Transformation::Rotated180 => ((i, j), odd(i) != odd(j)),
            Transformation::Rotated270 => ((j, i), odd(i)),
            Transformation::MirroredHorizontally => ((i, j), odd(j)),
            Transformation::FlippedVertically => ((i, j), odd(i)),
            Transformation::Transposed => ((j, i), false),
            Transformation::Transversed => ((j, i), odd(i) != odd(j)),
        }
    }
}

impl Pdq {
    /// Bit `k` of the hash: the sign of DCT coefficient `k` (row-major over
    /// the 16 × 16 coefficients) against their median.
    pub fn bit(&self, k: usize) -> bool {
        self.0[31 - k / 8] & (1 << (k % 8)) != 0
    }

    /// The hash with bit `k` set to `value`.
    fn set_bit(&mut self, k: usize, value: bool) {
        let mask = 1 << (k % 8);
        if value {
            self.0[31 - k / 8] |= mask;
        } else {
            self.0[31 - k / 8] &= !mask;
        }
    }

    /// The hash of the picture transformed by `t`, estimated from the bits
    /// alone: each bit moves where `t` moves its coefficient, and negated
    /// coefficients flip their bit. Exact for the identity and the
    /// diagonal reflections; for the others exact when the median of the
    /// coefficients is zero, and otherwise off in the few bits whose
    /// coefficient lies between the two medians (a picture's own
    /// transformed hashes, computed from its DCT by
    /// `imaging::pdq_hash::pdq_variants`, are exact).
    pub fn transformed(&self, t: Transformation) -> Pdq {
        let mut out = Pdq([0; 32]);
        for i in 0..16 {
            for j in 0..16 {
                let ((si, sj), negate) = t.source(i, j);
                out.set_bit(i * 16 + j, self.bit(si * 16 + sj) != negate);
            }
        }
        out
    }

    /// [`Pdq::transformed`] for each of [`Transformation::ALL`].
    pub fn variants(&self) -> [Pdq; 8] {
        Transformation::ALL.map(|t| self.transformed(t))
    }
}

/// Bits that differ between two hashes.
#[inline(always)]
pub(crate) fn hamming(a: &Words, b: &Words) -> u32 {
    (a[0] ^ b[0]).count_ones()
        + (a[1] ^ b[1]).count_ones()
        + (a[2] ^ b[2]).count_ones()
        + (a[3] ^ b[3]).count_ones()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// splitmix64: small, seeded, good enough for test data.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        pub(crate) fn pdq(&mut self) -> Pdq {
            let mut b = [0u8; 32];
            for c in b.chunks_exact_mut(8) {
                c.copy_from_slice(&self.next().to_le_bytes());
            }
            Pdq(b)
        }

        /// `h` with `k` distinct random bits flipped.
        pub(crate) fn flip(&mut self, h: &Pdq, k: u32) -> Pdq {
            let mut out = *h;
            while out.distance(h) < k {
                let bit = self.below(256) as usize;
                let mask = 1u8 << (bit % 8);
                if (out.0[bit / 8] ^ h.0[bit / 8]) & mask == 0 {
                    out.0[bit / 8] ^= mask;
                }
            }
            out
        }
    }

    #[test]
    fn transformations_form_the_dihedral_group_on_the_bits() {
        let mut rng = Rng(7);
        let h = rng.pdq();
        let t = |p: &Pdq, t| p.transformed(t);
        use Transformation::*;
        assert_eq!(t(&h, Identity), h);
        // Four quarter turns, two half turns, two reflections: identity.
        let r90 = |p: &Pdq| t(p, Rotated90);
        assert_eq!(r90(&r90(&r90(&r90(&h)))), h);
        assert_eq!(r90(&r90(&h)), t(&h, Rotated180));
        assert_eq!(r90(&r90(&r90(&h))), t(&h, Rotated270));
        for x in [
            MirroredHorizontally,
            FlippedVertically,
            Transposed,
            Transversed,
            Rotated180,
        ] {
            assert_eq!(t(&t(&h, x), x), h, "{x:?} is its own inverse");
        }
        // A quarter turn is the transposition, then a mirror.
        assert_eq!(t(&t(&h, Transposed), MirroredHorizontally), r90(&h));
        assert_eq!(
            t(&t(&h, MirroredHorizontally), FlippedVertically),
            t(&h, Rotated180)
        );
        // The eight are distinct for a random hash, and far apart.
        let v = h.variants();
        for a in 0..8 {
            for b in a + 1..8 {
                assert!(v[a].distance(&v[b]) > 64, "{a} {b}");
            }
        }
        assert_eq!(v[0], h);
    }

    #[test]
    fn hex_round_trip() {
        let hex = "f162eb9daab170c0567fe3632d9a5548c5612982dd5e374a7424ebbc8a835c95";
        let h = Pdq::from_hex(hex).unwrap();
        assert_eq!(h.0[0], 0xf1);
        assert_eq!(h.0[31], 0x95);
        assert_eq!(h.to_hex(), hex);
        assert_eq!(h.to_string(), hex);
        assert_eq!(Pdq::from_hex(&hex.to_uppercase()), Some(h));
        let mut rng = Rng(7);
        for _ in 0..100 {
            let h = rng.pdq();
            assert_eq!(Pdq::from_hex(&h.to_hex()), Some(h));
        }
    }

    #[test]
    fn bad_hex_is_refused() {
        let good = "f162eb9daab170c0567fe3632d9a5548c5612982dd5e374a7424ebbc8a835c95";
        assert!(Pdq::from_hex(good).is_some());
        for bad in [
            "",
            &good[..63],
            &good[..62],
            &format!("{good}0"),
            &format!("{good}00"),
            &format!("0x{}", &good[2..]),
            &format!("g{}", &good[1..]),
            &format!("{} ", &good[..63]),
            &format!("+{}", &good[1..]),
            &format!("{}é", &good[..62]),
            &format!("{}\n", &good[..63]),
        ] {
            assert_eq!(Pdq::from_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn distance_basics() {
        let zero = Pdq([0; 32]);
        let ones = Pdq([0xff; 32]);
        assert_eq!(zero.distance(&zero), 0);
        assert_eq!(zero.distance(&ones), 256);
        let mut one_bit = zero;
        one_bit.0[31] = 0x80;
        assert_eq!(zero.distance(&one_bit), 1);
        let mut rng = Rng(11);
        for _ in 0..100 {
            let (a, b, c) = (rng.pdq(), rng.pdq(), rng.pdq());
            assert_eq!(a.distance(&b), b.distance(&a));
            assert!(a.distance(&c) <= a.distance(&b) + b.distance(&c));
            let k = rng.below(257) as u32;
            assert_eq!(rng.flip(&a, k).distance(&a), k);
            let naive: u32 =
                a.0.iter()
                    .zip(&b.0)
                    .map(|(x, y)| (x ^ y).count_ones())
                    .sum();
            assert_eq!(a.distance(&b), naive);
        }
    }
}
