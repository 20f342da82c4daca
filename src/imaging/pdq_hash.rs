//! PDQ perceptual image hash (Meta's "PDQ", as described in ThreatExchange's
//! `hashing.pdf` and the `pdq` README), written from the published
//! description.
//!
//! PDQ turns an image into 256 bits such that pictures people perceive as the
//! same (recompressed, resized, lightly blurred or sharpened, re-coloured)
//! land within a small Hamming distance of each other (Meta suggests ≤ 31 as
//! a match), plus a 0..=100 quality score; hashes with quality ≤ 49 describe
//! featureless images and should not be trusted.
//!
//! The steps, as the reference command-line hasher performs them:
//!
//! 1. **Downsample big images.** If either side exceeds 512 pixels the image
//!    is first resized to exactly 512×512 (aspect ratio *not* preserved) by
//!    nearest-neighbour sampling: output pixel `x` takes source pixel
//!    `⌊x · width / 512⌋`, likewise for rows. Only those samples are read, so
//!    [`pdq_hash`] never needs more than a 512×512 buffer whatever the input
//!    size. Smaller images are used as they are.
//! 2. **Luminance.** Each pixel becomes `0.299 R + 0.587 G + 0.114 B`
//!    (ITU-R BT.601) as a float in 0..=255; alpha is ignored and grey images
//!    give their grey level.
//! 3. **Too small to hash.** If either side (after step 1) is below 5
//!    pixels the reference gives up: the hash is all zeros and the quality 0.
//!    We do the same.
//! 4. **Jarosz filter.** Two passes of a box (moving-average) filter along
//!    the rows and then along the columns — two box passes approximate a tent
//!    filter. The window is `⌈width / 128⌉` pixels along rows and
//!    `⌈height / 128⌉` along columns (half the size of one of the 64 output
//!    cells). A window of `w` pixels covers `w − ⌊(w + 2)/2⌋` pixels behind
//!    the centre and `⌊(w + 2)/2⌋ − 1` ahead, clipped at the image edges
//!    (the mean is over the pixels actually inside).
//! 5. **Decimate to 64×64** by sampling the filtered image at the cell
//!    centres: row `i` of the result is row `⌊(i + ½) · height / 64⌋`,
//!    column `j` is column `⌊(j + ½) · width / 64⌋`.
//! 6. **Quality** is the sum over all vertically and horizontally adjacent
//!    pairs of the 64×64 buffer of `|trunc((a − b) · 100 / 255)|`, integer
//!    divided by 90 and capped at 100.
//! 7. **DCT.** With the 16×64 matrix
//!    `D[i][j] = √(2/64) · cos(π/128 · (i + 1) · (2j + 1))` (DCT-II basis
//!    rows 1..=16, i.e. skipping the constant term), compute the 16×16
//!    `B = D · A · Dᵀ` of the 64×64 buffer `A`.
//! 8. **Median threshold.** Bit `16 i + j` is set when `B[i][j]` is strictly
//!    greater than the median of the 256 values (the 128th smallest, as
//!    Torben's method gives).
//!
//! Bit `k` of the hash is bit `k % 8` of byte `31 − k / 8` of
//! [`PdqHash::hash`], so the bytes read as a big-endian 256-bit number and
//! their lower-case hex is the reference's 64-character output.

use image::{DynamicImage, GenericImageView, Rgba};

use crate::domain::pdq::{Pdq, Transformation};

/// Images larger than this (in either direction) are first resized to
/// `DOWNSAMPLE_DIMS × DOWNSAMPLE_DIMS`, as the reference hasher does.
const DOWNSAMPLE_DIMS: u32 = 512;

/// The reference refuses to hash images with a side shorter than this.
const MIN_HASHABLE_DIM: usize = 5;

/// Number of (row, column) box-filter passes making up the Jarosz filter.
const JAROSZ_PASSES: usize = 2;

/// Side of the decimated buffer the DCT is taken from.
const BUF: usize = 64;

/// Side of the DCT output that is thresholded into the hash.
const DCT: usize = 16;

/// A 256-bit PDQ hash and its quality score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PdqHash {
    /// The 256 bits, most significant byte first: lower-case hex of these
    /// bytes in order is the reference implementation's 64-character form.
    /// The domain's one PDQ type: this module only computes it.
    pub hash: Pdq,
    /// Quality 0..=100 from the image's gradients; values ≤ 49 mean a
    /// featureless image whose hash should not be relied on. Images too small
    /// to hash (a side under 5 pixels) get 0.
    pub quality: u8,
}

impl PdqHash {
    /// The hash as 64 lower-case hex characters, byte 0 first (the
    /// reference's textual form).
    #[must_use]
    pub fn to_hex(&self) -> String {
        self.hash.to_hex()
    }

    /// Hamming distance (number of differing bits, 0..=256) between the two
    /// hashes; quality is not considered.
    #[must_use]
    pub fn distance(&self, other: &PdqHash) -> u32 {
        self.hash.distance(&other.hash)
    }

    /// The result for images the algorithm cannot hash: all bits clear,
    /// quality 0.
    fn unhashable() -> PdqHash {
        PdqHash {
            hash: Pdq([0; 32]),
            quality: 0,
        }
    }
}

/// Computes the PDQ hash and quality of `image` the way the reference
/// command-line hasher does: images with a side over 512 pixels are first
/// resized to 512×512 by nearest-neighbour sampling, then converted to
/// luminance and hashed with [`pdq_from_luma`].
///
/// Never panics. An image of at most 512×512 with a side shorter than 5
/// pixels gives the all-zero hash with quality 0; a thin strip with a side
/// over 512 (say 1×1000) is stretched to 512×512 first, as in the reference,
/// and hashed (with a low quality). Beyond the decoded image, memory use is
/// bounded by three 512×512 float buffers whatever the image's size.
#[must_use]
pub fn pdq_hash(image: &DynamicImage) -> PdqHash {
    match downsampled_luma(image) {
        Some((width, height, luma)) => pdq_from_luma(width, height, &luma),
        None => PdqHash::unhashable(),
    }
}

/// The hashes of `image` and of its seven rotations and reflections, in
/// the order of [`Transformation::ALL`] (the first is [`pdq_hash`]'s), and
/// its quality, from one DCT: each transformed picture's DCT is the
/// original's with coefficients moved and negated
/// ([`Transformation::source`]), and each gets its own median, as in the
/// reference's dihedral hashes.
#[must_use]
pub fn pdq_variants(image: &DynamicImage) -> ([Pdq; 8], u8) {
    let dct = downsampled_luma(image).and_then(|(w, h, luma)| dct_of_luma(w, h, &luma));
    match dct {
        Some((dct, quality)) => (
            Transformation::ALL.map(|t| threshold(&transform(&dct, t))),
            quality,
        ),
        None => ([Pdq([0; 32]); 8], 0),
    }
}

/// `image` as the luminance the hash is computed from: resized to 512×512
/// by nearest-neighbour sampling when a side is over 512. `None` for an
/// empty image.
fn downsampled_luma(image: &DynamicImage) -> Option<(usize, usize, Vec<f32>)> {
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 {
        return None;
    }
    let (out_w, out_h) = if width > DOWNSAMPLE_DIMS || height > DOWNSAMPLE_DIMS {
        (DOWNSAMPLE_DIMS, DOWNSAMPLE_DIMS)
    } else {
        (width, height)
    };
    // Nearest-neighbour source index for each output column and row.
    let source = |i: u32, out: u32, full: u32| -> u32 {
        let s = u64::from(i) * u64::from(full) / u64::from(out);
        // s < full always; the min only guards the arithmetic.
        u32::try_from(s).unwrap_or(full - 1).min(full - 1)
    };
    let cols: Vec<u32> = (0..out_w).map(|x| source(x, out_w, width)).collect();
    let mut luma = Vec::with_capacity(out_w as usize * out_h as usize);
    for y in 0..out_h {
        let sy = source(y, out_h, height);
        match image {
            DynamicImage::ImageRgb8(rgb) => {
                for &sx in &cols {
                    let p = rgb.get_pixel(sx, sy).0;
                    luma.push(luminance(p[0], p[1], p[2]));
                }
            }
            DynamicImage::ImageLuma8(grey) => {
                for &sx in &cols {
                    luma.push(f32::from(grey.get_pixel(sx, sy).0[0]));
                }
            }
            other => {
                for &sx in &cols {
                    let Rgba([r, g, b, _]) = other.get_pixel(sx, sy);
                    luma.push(luminance(r, g, b));
                }
            }
        }
    }
    Some((out_w as usize, out_h as usize, luma))
}

/// BT.601 luminance of an 8-bit RGB pixel, 0.0..=255.0.
fn luminance(r: u8, g: u8, b: u8) -> f32 {
    0.299 * f32::from(r) + 0.587 * f32::from(g) + 0.114 * f32::from(b)
}

/// Computes the PDQ hash and quality of a luminance image given row-major,
/// `width × height` values on the 0..=255 scale, without any downsampling
/// (the Jarosz filter runs at full size: steps 3–8 of the module docs).
///
/// Never panics: a side shorter than 5 pixels, or a `luma` slice whose
/// length is not `width * height`, gives the all-zero hash with quality 0.
/// Allocates two `width × height` float buffers (a working copy and
/// scratch) besides `luma`.
#[must_use]
pub fn pdq_from_luma(width: usize, height: usize, luma: &[f32]) -> PdqHash {
    match dct_of_luma(width, height, luma) {
        Some((dct, quality)) => PdqHash {
            hash: threshold(&dct),
            quality,
        },
        None => PdqHash::unhashable(),
    }
}

/// Steps 3-7: the 16×16 DCT of the filtered, decimated picture and its
/// quality; `None` when the picture cannot be hashed.
fn dct_of_luma(width: usize, height: usize, luma: &[f32]) -> Option<([f32; DCT * DCT], u8)> {
    if width < MIN_HASHABLE_DIM || height < MIN_HASHABLE_DIM {
        return None;
    }
    match width.checked_mul(height) {
        Some(n) if n == luma.len() => {}
        _ => return None,
    }

    let mut image = luma.to_vec();
    jarosz_filter(&mut image, width, height);
    let buffer = decimate(&image, width, height);
    drop(image);

    let quality = quality(&buffer);
    Some((dct_64_to_16(&buffer), quality))
}

/// Step 8: one bit per coefficient, set when it is above the median.
fn threshold(dct: &[f32; DCT * DCT]) -> Pdq {
    let mut sorted = *dct;
    sorted.sort_unstable_by(f32::total_cmp);
    let median = sorted[(DCT * DCT).div_ceil(2) - 1];

    let mut hash = [0u8; 32];
    for (k, &value) in dct.iter().enumerate() {
        if value > median {
            hash[31 - k / 8] |= 1 << (k % 8);
        }
    }
    Pdq(hash)
}

/// The DCT of the picture transformed by `t`, from the original's.
fn transform(dct: &[f32; DCT * DCT], t: Transformation) -> [f32; DCT * DCT] {
    std::array::from_fn(|k| {
        let ((i, j), negate) = t.source(k / DCT, k % DCT);
        let value = dct[i * DCT + j];
        if negate {
            -value
        } else {
            value
        }
    })
}

/// Window size of the box filter for one direction: half of one of the 64
/// output cells, rounded up (`⌈full / 128⌉`), at least 1.
fn jarosz_window(full: usize) -> usize {
    full.div_ceil(2 * BUF).max(1)
}

/// Applies the two-pass Jarosz (box) filter in place to a row-major
/// `width × height` image.
fn jarosz_filter(image: &mut [f32], width: usize, height: usize) {
    let along_rows = jarosz_window(width);
    let along_cols = jarosz_window(height);
    let mut scratch = vec![0.0f32; image.len()];
    for _ in 0..JAROSZ_PASSES {
        for row in 0..height {
            box_filter(image, &mut scratch, row * width, 1, width, along_rows);
        }
        for col in 0..width {
            box_filter(&scratch, image, col, width, height, along_cols);
        }
    }
}

/// One-dimensional moving average of the `n` values `src[start + i * stride]`
/// into the same positions of `dst`. With `h = ⌊(window + 2) / 2⌋`, output
/// `i` is the mean of inputs `i − (window − h) ..= i + h − 1`, clipped to the
/// vector (dividing by the number of values actually summed).
fn box_filter(src: &[f32], dst: &mut [f32], start: usize, stride: usize, n: usize, window: usize) {
    if n == 0 {
        return;
    }
    let ahead = (window + 2) / 2 - 1;
    let behind = window - ahead - 1;
    let at = |i: usize| start + i * stride;

    let mut sum = 0.0f32;
    let mut count = 0usize;
    // Values already in the window before output 0: inputs 0 .. ahead.
    let mut next = 0usize;
    while next < ahead.min(n) {
        sum += src[at(next)];
        count += 1;
        next += 1;
    }
    for i in 0..n {
        // Bring input `i + ahead` in (if it exists).
        if next < n && next <= i + ahead {
            sum += src[at(next)];
            count += 1;
            next += 1;
        }
        // Drop input `i − behind − 1` (if there was one).
        if i > behind {
            sum -= src[at(i - behind - 1)];
            count -= 1;
        }
        dst[at(i)] = sum / count as f32;
    }
}

/// Samples the filtered image at the centres of a 64×64 grid of cells.
fn decimate(image: &[f32], width: usize, height: usize) -> [[f32; BUF]; BUF] {
    let centre = |i: usize, full: usize| -> usize {
        // ⌊(i + ½) · full / 64⌋, computed exactly in integers.
        let c = (2 * i as u128 + 1) * full as u128 / (2 * BUF as u128);
        usize::try_from(c).unwrap_or(full - 1).min(full - 1)
    };
    let mut out = [[0.0f32; BUF]; BUF];
    for (i, out_row) in out.iter_mut().enumerate() {
        let row = centre(i, height) * width;
        for (j, value) in out_row.iter_mut().enumerate() {
            *value = image[row + centre(j, width)];
        }
    }
    out
}

/// The reference's quality score: summed absolute neighbour differences of
/// the 64×64 buffer, each scaled to a percentage of 255 and truncated, over
/// 90, capped at 100.
fn quality(buffer: &[[f32; BUF]; BUF]) -> u8 {
    let step = |u: f32, v: f32| -> u64 { (((u - v) * 100.0 / 255.0) as i64).unsigned_abs() };
    let mut gradient_sum = 0u64;
    for pair in buffer.windows(2) {
        for (&u, &v) in pair[0].iter().zip(pair[1].iter()) {
            gradient_sum += step(u, v);
        }
    }
    for row in buffer {
        for pair in row.windows(2) {
            gradient_sum += step(pair[0], pair[1]);
        }
    }
    u8::try_from((gradient_sum / 90).min(100)).unwrap_or(100)
}

/// `D · A · Dᵀ` with `D` the 16×64 DCT-II basis (rows 1..=16, scaled by
/// √(2/64)): the 16×16 lowest non-constant frequencies of the buffer, in
/// row-major order.
fn dct_64_to_16(a: &[[f32; BUF]; BUF]) -> [f32; DCT * DCT] {
    let scale = (2.0 / BUF as f64).sqrt();
    let mut d = [[0.0f32; BUF]; DCT];
    for (i, d_row) in d.iter_mut().enumerate() {
        for (j, value) in d_row.iter_mut().enumerate() {
            let angle = std::f64::consts::PI / (2.0 * BUF as f64)
                * (i as f64 + 1.0)
                * (2.0 * j as f64 + 1.0);
            *value = (scale * angle.cos()) as f32;
        }
    }

    // T = D · A (16×64).
    let mut t = [[0.0f32; BUF]; DCT];
    for (t_row, d_row) in t.iter_mut().zip(d.iter()) {
        for (j, value) in t_row.iter_mut().enumerate() {
            let mut sum = 0.0f32;
            for (k, &dk) in d_row.iter().enumerate() {
                sum += dk * a[k][j];
            }
            *value = sum;
        }
    }

    // B = T · Dᵀ (16×16).
    let mut b = [0.0f32; DCT * DCT];
    for (i, t_row) in t.iter().enumerate() {
        for (j, d_row) in d.iter().enumerate() {
            let mut sum = 0.0f32;
            for (&tk, &dk) in t_row.iter().zip(d_row.iter()) {
                sum += tk * dk;
            }
            b[i * DCT + j] = sum;
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbImage, RgbaImage};

    /// A deterministic, textured test picture.
    fn pattern(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            let v = (x * 7 + y * 13 + (x * y) % 31) % 256;
            let w = ((x / 8 + y / 8) % 2) * 200;
            Rgb([v as u8, w as u8, ((v + w) / 2) as u8])
        }))
    }

    #[test]
    fn tiny_and_degenerate_sizes_do_not_panic() {
        for (w, h) in [
            (1, 1),
            (1, 1000),
            (1000, 1),
            (2, 2),
            (4, 4),
            (4, 900),
            (5, 5),
            (5, 1000),
            (63, 64),
            (64, 64),
            (65, 3),
            (513, 5),
            (3000, 7),
        ] {
            let result = pdq_hash(&pattern(w, h));
            assert!(result.quality <= 100, "{w}x{h}");
            // Like the reference, a side over 512 means a 512×512 resize
            // first, so only small images can be too thin to hash.
            let resized = w > 512 || h > 512;
            if !resized && (w < 5 || h < 5) {
                assert_eq!(result, PdqHash::unhashable(), "{w}x{h}");
            } else {
                assert_ne!(result, PdqHash::unhashable(), "{w}x{h}");
            }
        }
    }

    #[test]
    fn empty_and_mismatched_luma_give_the_unhashable_result() {
        assert_eq!(pdq_from_luma(0, 0, &[]), PdqHash::unhashable());
        assert_eq!(pdq_from_luma(1, 1, &[9.0]), PdqHash::unhashable());
        assert_eq!(pdq_from_luma(1, 1000, &[9.0; 1000]), PdqHash::unhashable());
        assert_eq!(pdq_from_luma(10, 10, &[0.0; 99]), PdqHash::unhashable());
        assert_eq!(pdq_from_luma(usize::MAX, 10, &[]), PdqHash::unhashable());
    }

    #[test]
    fn solid_colour_has_low_quality() {
        for image in [
            DynamicImage::ImageRgb8(RgbImage::from_pixel(300, 200, Rgb([40, 120, 200]))),
            DynamicImage::ImageLuma8(GrayImage::from_pixel(1, 1000, Luma([77]))),
            DynamicImage::ImageRgb8(RgbImage::from_pixel(1200, 900, Rgb([255, 255, 255]))),
        ] {
            let result = pdq_hash(&image);
            assert_eq!(result.quality, 0);
        }
    }

    #[test]
    fn hashing_is_deterministic() {
        let image = pattern(700, 300);
        let first = pdq_hash(&image);
        for _ in 0..3 {
            assert_eq!(pdq_hash(&image), first);
        }
        assert!(first.quality > 0);
        // Half the bits (those strictly above the median) are set.
        let ones: u32 = first.hash.0.iter().map(|b| b.count_ones()).sum();
        assert_eq!(ones, 128);
    }

    #[test]
    fn grey_rgb_and_rgba_of_the_same_picture_agree() {
        let grey = GrayImage::from_fn(200, 150, |x, y| Luma([((x * 3 + y * 5) % 256) as u8]));
        let rgb = RgbImage::from_fn(200, 150, |x, y| {
            let v = grey.get_pixel(x, y).0[0];
            Rgb([v, v, v])
        });
        let rgba = RgbaImage::from_fn(200, 150, |x, y| {
            let v = grey.get_pixel(x, y).0[0];
            Rgba([v, v, v, (x % 256) as u8])
        });
        let a = pdq_hash(&DynamicImage::ImageLuma8(grey));
        let b = pdq_hash(&DynamicImage::ImageRgb8(rgb));
        let c = pdq_hash(&DynamicImage::ImageRgba8(rgba));
        assert!(a.distance(&b) <= 2, "{}", a.distance(&b));
        assert_eq!(b, c);
    }

    #[test]
    fn big_images_are_downsampled_to_512_square() {
        // A big image hashes like its nearest-neighbour 512×512 resize.
        let big = pattern(1600, 1004);
        let small = DynamicImage::ImageRgb8(RgbImage::from_fn(512, 512, |x, y| {
            let sx = x * 1600 / 512;
            let sy = y * 1004 / 512;
            *big.as_rgb8().unwrap().get_pixel(sx, sy)
        }));
        assert_eq!(pdq_hash(&big), pdq_hash(&small));
    }

    #[test]
    fn box_filter_matches_a_direct_clipped_mean() {
        let input: Vec<f32> = (0..23).map(|i| ((i * 37) % 11) as f32).collect();
        for window in 1..=9 {
            let mut out = vec![0.0; input.len()];
            box_filter(&input, &mut out, 0, 1, input.len(), window);
            let ahead = (window + 2) / 2 - 1;
            let behind = window - ahead - 1;
            for (i, &got) in out.iter().enumerate() {
                let lo = i.saturating_sub(behind);
                let hi = (i + ahead).min(input.len() - 1);
                let want: f32 = input[lo..=hi].iter().sum::<f32>() / (hi - lo + 1) as f32;
                assert!((got - want).abs() < 1e-4, "window {window} at {i}");
            }
        }
    }

    #[test]
    fn window_sizes_follow_the_reference() {
        assert_eq!(jarosz_window(1), 1);
        assert_eq!(jarosz_window(128), 1);
        assert_eq!(jarosz_window(129), 2);
        assert_eq!(jarosz_window(512), 4);
        assert_eq!(jarosz_window(1000), 8);
    }

    #[test]
    fn hex_and_distance() {
        let mut hash = [0u8; 32];
        hash[0] = 0xd8;
        hash[31] = 0x01;
        let a = PdqHash {
            hash: Pdq(hash),
            quality: 100,
        };
        let hex = a.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("d800"));
        assert!(hex.ends_with("01"));
        let b = PdqHash::unhashable();
        assert_eq!(a.distance(&b), 5);
        assert_eq!(a.distance(&a), 0);
    }

    #[test]
    fn variants_are_the_hashes_of_the_rotated_and_mirrored_pictures() {
        // A smooth, asymmetric picture (PDQ looks at low frequencies).
        let picture = DynamicImage::ImageRgb8(RgbImage::from_fn(300, 200, |x, y| {
            let (x, y) = (x as f32, y as f32);
            let v = 128.0 + 60.0 * (x / 23.0).sin() + 50.0 * (y / 17.0 + x / 40.0).cos() - 0.2 * x
                + 0.15 * y;
            let v = v.clamp(0.0, 255.0) as u8;
            Rgb([v, v / 2 + 40, 255 - v])
        }));
        let (variants, quality) = pdq_variants(&picture);
        assert_eq!(variants[0], pdq_hash(&picture).hash);
        assert_eq!(quality, pdq_hash(&picture).quality);
        let turned = [
            (Transformation::Rotated90, picture.rotate90()),
            (Transformation::Rotated180, picture.rotate180()),
            (Transformation::Rotated270, picture.rotate270()),
            (Transformation::MirroredHorizontally, picture.fliph()),
            (Transformation::FlippedVertically, picture.flipv()),
            (Transformation::Transposed, picture.rotate90().fliph()),
            (Transformation::Transversed, picture.rotate270().fliph()),
        ];
        for (t, image) in turned {
            let k = Transformation::ALL.iter().position(|&x| x == t).unwrap();
            let direct = pdq_hash(&image).hash;
            let d = variants[k].distance(&direct);
            // Not 0: resampling grids and filter windows are not exactly
            // symmetric, so a few bits near the median differ (as in the
            // reference's dihedral hashes); well within a match.
            assert!(
                d <= 24,
                "{t:?}: the variant is {d} bits from the hash of the turned picture"
            );
            // And far from the untransformed hash: the variant is needed.
            assert!(variants[0].distance(&direct) > 31, "{t:?}");
            // The estimate from the bits alone is close too.
            let estimated = variants[0].transformed(t);
            assert!(
                estimated.distance(&direct) <= 24,
                "{t:?}: estimate {}",
                estimated.distance(&direct)
            );
        }
    }
}
