//! Images in one module: decoding with limits, fingerprints (SHA-256 and
//! PDQ, computed in [`pdq_hash`]), EXIF, and the in-memory Hamming-space
//! index over PDQ hashes ([`pdq_index`]). The PDQ type itself and the
//! reliability rule are the domain's ([`crate::domain::pdq`]).
//!
//! [`analyze`] turns the bytes a caller sent into the facts a claim keeps:
//! SHA-256, PDQ hash and quality, dimensions, format and EXIF facts. The
//! bytes themselves are not kept. Hostile input is refused with
//! `INVALID_ARGUMENT` before the pixels are allocated: the format is sniffed
//! from the first bytes (only JPEG, PNG, WebP and GIF), a JPEG's segments
//! are walked to its end-of-image marker, and the header's dimensions are
//! checked against [`MAX_DIMENSION`], [`MAX_PIXELS`] and the file's size
//! ([`MAX_PIXELS_PER_BYTE`]) before decoding, which then runs under an
//! allocation limit. So a tiny file declaring 50,000 × 50,000 pixels is
//! refused from its header, and the most one decode can allocate is the
//! pixels of a [`MAX_PIXELS`] image (about 200 MB as RGBA); the service
//! runs at most one decode per core at a time.

pub mod credentials;
pub mod pdq_hash;
pub mod pdq_index;

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};
use sha2::{Digest, Sha256};

use crate::domain::pdq::Pdq;
use crate::domain::provenance::ContentCredentials;
use crate::domain::{Error, ImageExif, Result};

/// Largest width or height accepted, in pixels (panoramas are wide).
pub const MAX_DIMENSION: u32 = 16_384;
/// Most pixels accepted (50 megapixels: every common camera and phone).
pub const MAX_PIXELS: u64 = 50_000_000;
/// Images above [`SMALL_PIXELS`] may declare at most this many pixels per
/// byte of file. Real photos and screenshots stay far below it (a flat
/// 24-megapixel PNG is about 250 pixels a byte); compression bombs do not.
pub const MAX_PIXELS_PER_BYTE: u64 = 1_000;
/// Images up to this many pixels skip the pixels-per-byte check.
const SMALL_PIXELS: u64 = 4_000_000;
/// Most memory a decoder may allocate for one image: a [`MAX_PIXELS`]
/// image as 16-bit RGBA would need more, and is refused.
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;
/// Longest EXIF text kept, in characters.
const MAX_EXIF_TEXT: usize = 200;

/// What the server learns from an image's bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageFacts {
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// PDQ hash, lowercase hex.
    pub pdq: String,
    /// PDQ quality, 0-100.
    pub pdq_quality: i32,
    /// Width in pixels.
    pub width: i32,
    /// Height in pixels.
    pub height: i32,
    /// "jpeg", "png", "webp" or "gif".
    pub format: String,
    /// EXIF facts, when the image has EXIF metadata.
    pub exif: Option<ImageExif>,
    /// The PDQ hashes of the picture's eight rotations and reflections, in
    /// [`crate::domain::pdq::Transformation::ALL`] order (the first is `pdq`).
    pub pdq_variants: [Pdq; 8],
    /// Content Credentials, when a reader was given and the image has a
    /// C2PA manifest store.
    pub content_credentials: Option<ContentCredentials>,
}

/// Analyses image bytes given in the request field `field`. CPU-bound (a
/// large JPEG takes tens of milliseconds): call it off the async runtime.
pub fn analyze(bytes: &[u8], field: &str) -> Result<ImageFacts> {
    analyze_with(bytes, field, None)
}

/// [`analyze`], also reading the image's Content Credentials with `reader`
/// (after the image has been accepted, so a refused image is never parsed
/// for manifests).
pub fn analyze_with(
    bytes: &[u8],
    field: &str,
    credentials: Option<&credentials::CredentialReader>,
) -> Result<ImageFacts> {
    let bad = |why: String| Error::invalid(field, why);
    if bytes.is_empty() {
        return Err(bad("is empty: send the image's bytes".into()));
    }
    let format = match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif)) => f,
        Ok(other) => {
            return Err(bad(format!(
                "{other:?} images are not accepted: send JPEG, PNG, WebP or GIF"
            )))
        }
        Err(_) => {
            return Err(bad(
                "is not a JPEG, PNG, WebP or GIF image (unrecognised header)".into(),
            ))
        }
    };
    if format == ImageFormat::Jpeg {
        jpeg_structure(bytes).map_err(|why| bad(format!("{why}: send the whole file")))?;
    }
    let too_large = || {
        bad(format!(
            "declares an image larger than the limits ({MAX_DIMENSION} pixels a side, {} megapixels, {} MiB decoded)",
            MAX_PIXELS / 1_000_000,
            MAX_DECODE_BYTES / (1024 * 1024)
        ))
    };
    let undecodable = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => too_large(),
        other => bad(format!("cannot be decoded as {}: {other}", name(format))),
    };
    let reader = || {
        let mut limits = Limits::default();
        limits.max_image_width = Some(MAX_DIMENSION);
        limits.max_image_height = Some(MAX_DIMENSION);
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
        reader.limits(limits);
        reader
    };
    // The header alone first: refuse before the decoder allocates pixels.
    let (width, height) = reader().into_dimensions().map_err(undecodable)?;
    let pixels = u64::from(width) * u64::from(height);
    if width > MAX_DIMENSION || height > MAX_DIMENSION || pixels > MAX_PIXELS {
        return Err(too_large());
    }
    if pixels > SMALL_PIXELS && pixels > MAX_PIXELS_PER_BYTE * bytes.len() as u64 {
        return Err(bad(format!(
            "declares {width} x {height} pixels in only {} bytes (more than {MAX_PIXELS_PER_BYTE} pixels a byte): refused as a possible decompression bomb",
            bytes.len()
        )));
    }
    let image = reader().decode().map_err(undecodable)?;
    let exif = read_exif(bytes, format).map_err(bad)?;
    let (variants, quality) = pdq_hash::pdq_variants(&image);
    let content_credentials = credentials.and_then(|r| r.read(bytes, name(format)));
    Ok(ImageFacts {
        sha256: hex::encode(Sha256::digest(bytes)),
        pdq: variants[0].to_hex(),
        pdq_quality: i32::from(quality),
        pdq_variants: variants,
        content_credentials,
        width: image.width() as i32,
        height: image.height() as i32,
        format: name(format).to_string(),
        exif,
    })
}

/// Walks a JPEG's segments and entropy-coded scans to the end-of-image
/// marker (FF D9) that follows its last scan. The JPEG decoder fills a
/// truncated scan with grey instead of failing, which would hash half an
/// image, so truncation is caught here: an FF D9 pair cannot occur inside
/// scan data, so a cut file never ends in one by chance. (A file cut and
/// then given an end marker on purpose passes; its sender could as well
/// send a half-grey image.) Bytes after the end-of-image marker (Motion
/// Photo videos, padding) are allowed: the image itself is whole.
fn jpeg_structure(bytes: &[u8]) -> std::result::Result<(), &'static str> {
    const TRUNCATED: &str = "is a truncated JPEG (no end-of-image marker after its image data)";
    let mut at = 2; // after SOI (FF D8), which guess_format checked
    let mut scans = 0;
    loop {
        // Fill bytes (FF FF ...) may precede a marker.
        while bytes.get(at) == Some(&0xff) && bytes.get(at + 1) == Some(&0xff) {
            at += 1;
        }
        let (Some(&0xff), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) else {
            return Err(if at >= bytes.len() {
                TRUNCATED
            } else {
                "is a malformed JPEG (a segment does not start with a marker)"
            });
        };
        at += 2;
        match marker {
            0xd9 if scans > 0 => return Ok(()),
            0xd9 => return Err("is a JPEG with no image data (it ends before its first scan)"),
            // Standalone markers: restart markers and TEM carry no length.
            0xd0..=0xd7 | 0x01 => continue,
            0xd8 | 0x00 => return Err("is a malformed JPEG (unexpected marker)"),
            _ => {}
        }
        let length = match bytes.get(at..at + 2) {
            Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])),
            None => return Err(TRUNCATED),
        };
        if length < 2 {
            return Err("is a malformed JPEG (a segment length below 2)");
        }
        at += length;
        if at > bytes.len() {
            return Err(TRUNCATED);
        }
        if marker == 0xda {
            scans += 1;
            // Entropy-coded data runs to the next marker other than a
            // stuffed zero (FF 00) or a restart marker (FF D0-D7).
            loop {
                let Some(ff) = bytes[at..].iter().position(|&b| b == 0xff) else {
                    return Err(TRUNCATED);
                };
                at += ff;
                match bytes.get(at + 1) {
                    None => return Err(TRUNCATED),
                    Some(0x00 | 0xd0..=0xd7) => at += 2,
                    Some(0xff) => at += 1,
                    Some(_) => break,
                }
            }
        }
    }
}

fn name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Png => "png",
        ImageFormat::WebP => "webp",
        ImageFormat::Gif => "gif",
        _ => "other",
    }
}

/// Reads EXIF facts. No EXIF is `Ok(None)`; EXIF so malformed that nothing
/// can be read from it is an error (partly readable EXIF keeps what was read).
fn read_exif(bytes: &[u8], format: ImageFormat) -> std::result::Result<Option<ImageExif>, String> {
    if format == ImageFormat::Gif {
        return Ok(None);
    }
    let mut reader = exif::Reader::new();
    reader.continue_on_error(true);
    let exif = match reader.read_from_container(&mut Cursor::new(bytes)) {
        Ok(exif) => exif,
        Err(exif::Error::NotFound(_)) => return Ok(None),
        Err(exif::Error::PartialResult(partial)) => {
            let (exif, errors) = partial.into_inner();
            if exif.fields().next().is_none() {
                let first = errors.first().map(ToString::to_string).unwrap_or_default();
                return Err(format!("has malformed EXIF metadata: {first}"));
            }
            exif
        }
        Err(err) => return Err(format!("has malformed EXIF metadata: {err}")),
    };
    // Text as written in the file (EXIF's own date form included).
    let text = |tag| match exif.get_field(tag, exif::In::PRIMARY).map(|f| &f.value) {
        Some(exif::Value::Ascii(parts)) => clean(
            &parts
                .iter()
                .map(|p| String::from_utf8_lossy(p))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => String::new(),
    };
    let orientation = exif
        .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .filter(|o| (1..=8).contains(o))
        .unwrap_or(0) as i32;
    let coordinate = |value_tag, ref_tag, negative: &str| -> Option<f64> {
        let field = exif.get_field(value_tag, exif::In::PRIMARY)?;
        let exif::Value::Rational(parts) = &field.value else {
            return None;
        };
        if parts.len() < 3 || parts.iter().take(3).any(|r| r.denom == 0) {
            return None;
        }
        let degrees = parts[0].to_f64() + parts[1].to_f64() / 60.0 + parts[2].to_f64() / 3600.0;
        let sign = match exif.get_field(ref_tag, exif::In::PRIMARY) {
            Some(r) if r.display_value().to_string().trim_matches('"') == negative => -1.0,
            _ => 1.0,
        };
        Some(sign * degrees).filter(|d| d.is_finite())
    };
    let latitude = coordinate(exif::Tag::GPSLatitude, exif::Tag::GPSLatitudeRef, "S")
        .filter(|d| d.abs() <= 90.0);
    let longitude = coordinate(exif::Tag::GPSLongitude, exif::Tag::GPSLongitudeRef, "W")
        .filter(|d| d.abs() <= 180.0);
    let facts = ImageExif {
        capture_time: text(exif::Tag::DateTimeOriginal),
        camera_make: text(exif::Tag::Make),
        camera_model: text(exif::Tag::Model),
        software: text(exif::Tag::Software),
        orientation,
        has_gps: latitude.is_some() && longitude.is_some(),
        gps_latitude: latitude.filter(|_| longitude.is_some()).unwrap_or(0.0),
        gps_longitude: longitude.filter(|_| latitude.is_some()).unwrap_or(0.0),
    };
    Ok((facts != ImageExif::default()).then_some(facts))
}

/// EXIF text as shown to desks: control characters (and the NUL padding
/// some cameras write) dropped, whitespace trimmed, length capped.
fn clean(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_EXIF_TEXT)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELD: &str = "claim.image.content";

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 13 % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        });
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn refused(bytes: &[u8]) -> String {
        match analyze(bytes, FIELD) {
            Err(Error::InvalidArgument(v)) => {
                assert_eq!(v[0].field, FIELD);
                v[0].description.clone()
            }
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn a_small_png_is_analysed() {
        let bytes = png(64, 48);
        let facts = analyze(&bytes, FIELD).unwrap();
        assert_eq!((facts.width, facts.height), (64, 48));
        assert_eq!(facts.format, "png");
        assert_eq!(facts.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(facts.pdq.len(), 64);
        assert!(facts.exif.is_none());
    }

    #[test]
    fn hostile_bytes_are_refused_without_panicking() {
        assert!(refused(b"").contains("empty"));
        assert!(refused(b"hello, this is not an image").contains("not a JPEG"));
        let bytes = png(32, 32);
        assert!(refused(&bytes[..bytes.len() / 2]).contains("cannot be decoded"));
        // BMP is an image, but not one we accept.
        assert!(refused(b"BM\x00\x00\x00\x00\x00\x00\x00\x00").contains("not accepted"));
    }

    #[test]
    fn a_png_declaring_50000_by_50000_pixels_is_refused_from_its_header() {
        let why = refused(&png_declaring(50_000, 50_000));
        assert!(why.contains("larger than the limits"), "{why}");
    }

    /// A PNG whose header declares `width` x `height` (CRC fixed up).
    fn png_declaring(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = png(1, 1);
        // IHDR starts at byte 8 (length), 12 (type); width and height follow.
        bytes[16..20].copy_from_slice(&width.to_be_bytes());
        bytes[20..24].copy_from_slice(&height.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    #[test]
    fn too_many_pixels_are_refused_even_within_the_side_limit() {
        // 10,000 x 6,000 = 60 megapixels: each side allowed, the area not.
        let why = refused(&png_declaring(10_000, 6_000));
        assert!(why.contains("larger than the limits"), "{why}");
    }

    #[test]
    fn a_gif_declaring_a_huge_canvas_in_a_few_bytes_is_refused_before_decoding() {
        let image = image::RgbaImage::from_pixel(2, 2, image::Rgba([200, 10, 10, 255]));
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Gif).unwrap();
        let mut bytes = out.into_inner();
        // Logical screen width and height: bytes 6-9, little-endian.
        bytes[6..8].copy_from_slice(&5_000u16.to_le_bytes());
        bytes[8..10].copy_from_slice(&5_000u16.to_le_bytes());
        let why = refused(&bytes);
        assert!(why.contains("decompression bomb"), "{why}");
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x * 3 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x + y) % 256) as u8,
            ])
        });
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn truncated_jpegs_are_refused_wherever_they_are_cut() {
        let whole = jpeg(128, 96);
        // Cut anywhere (in the headers, in the scan, just before the end
        // marker): never accepted. An FF D9 pair cannot occur inside scan
        // data, so a cut never leaves one behind by chance.
        for cut in (4..whole.len() - 1).step_by(97).chain([whole.len() - 1]) {
            let why = refused(&whole[..cut]);
            assert!(why.contains("JPEG"), "cut at {cut}: {why}");
        }
        // Headers only: ends before the first scan.
        let sos = whole.windows(2).position(|w| w == [0xff, 0xda]).unwrap();
        let mut headers = whole[..sos].to_vec();
        headers.extend_from_slice(&[0xff, 0xd9]);
        assert!(refused(&headers).contains("no image data"));
    }

    #[test]
    fn bytes_after_a_jpeg_end_marker_are_allowed() {
        let whole = jpeg(128, 96);
        let mut with_trailer = whole.clone();
        // A Motion Photo style trailer, larger than any tail heuristic.
        with_trailer.extend(std::iter::repeat_n(0x42u8, 64 * 1024));
        let a = analyze(&whole, FIELD).unwrap();
        let b = analyze(&with_trailer, FIELD).unwrap();
        assert_eq!(a.pdq, b.pdq);
        assert_ne!(a.sha256, b.sha256);
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A JPEG carrying an EXIF segment written by kamadak-exif's writer.
    fn jpeg_with_exif(fields: &[exif::Field]) -> Vec<u8> {
        let mut writer = exif::experimental::Writer::new();
        for field in fields {
            writer.push_field(field);
        }
        let mut tiff = Cursor::new(Vec::new());
        writer.write(&mut tiff, false).unwrap();
        let mut app1 = b"Exif\x00\x00".to_vec();
        app1.extend_from_slice(tiff.get_ref());
        let image = image::GrayImage::from_fn(64, 64, |x, y| image::Luma([((x * y) % 256) as u8]));
        let mut jpeg = Cursor::new(Vec::new());
        image.write_to(&mut jpeg, ImageFormat::Jpeg).unwrap();
        let jpeg = jpeg.into_inner();
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xff, 0xe1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn exif_facts_are_read_and_cleaned() {
        use exif::{Field, In, Rational, Tag, Value};
        let ascii = |tag, text: &str| Field {
            tag,
            ifd_num: In::PRIMARY,
            value: Value::Ascii(vec![text.as_bytes().to_vec()]),
        };
        let rational = |tag, parts: [(u32, u32); 3]| Field {
            tag,
            ifd_num: In::PRIMARY,
            value: Value::Rational(
                parts
                    .iter()
                    .map(|&(num, denom)| Rational { num, denom })
                    .collect(),
            ),
        };
        let fields = [
            ascii(Tag::Make, "Canon"),
            ascii(Tag::Model, "EOS 5D\u{7}"),
            ascii(Tag::Software, "Editor 2.0"),
            ascii(Tag::DateTimeOriginal, "2022:01:07 14:03:11"),
            Field {
                tag: Tag::Orientation,
                ifd_num: In::PRIMARY,
                value: Value::Short(vec![6]),
            },
            ascii(Tag::GPSLatitudeRef, "N"),
            rational(Tag::GPSLatitude, [(43, 1), (15, 1), (0, 1)]),
            ascii(Tag::GPSLongitudeRef, "E"),
            rational(Tag::GPSLongitude, [(76, 1), (54, 1), (36, 1)]),
        ];
        let facts = analyze(&jpeg_with_exif(&fields), FIELD).unwrap();
        let exif = facts.exif.expect("EXIF read");
        assert_eq!(exif.camera_make, "Canon");
        assert_eq!(exif.camera_model, "EOS 5D", "control characters dropped");
        assert_eq!(exif.software, "Editor 2.0");
        assert_eq!(exif.capture_time, "2022:01:07 14:03:11");
        assert_eq!(exif.orientation, 6);
        assert!(exif.has_gps);
        assert!(
            (exif.gps_latitude - 43.25).abs() < 1e-9,
            "{}",
            exif.gps_latitude
        );
        assert!(
            (exif.gps_longitude - 76.91).abs() < 1e-9,
            "{}",
            exif.gps_longitude
        );
    }

    #[test]
    fn absurd_exif_values_are_dropped_not_trusted() {
        use exif::{Field, In, Rational, Tag, Value};
        let fields = [
            Field {
                tag: Tag::Orientation,
                ifd_num: In::PRIMARY,
                value: Value::Short(vec![999]),
            },
            Field {
                tag: Tag::GPSLatitude,
                ifd_num: In::PRIMARY,
                value: Value::Rational(vec![Rational { num: 1, denom: 0 }; 3]),
            },
            Field {
                tag: Tag::Make,
                ifd_num: In::PRIMARY,
                value: Value::Ascii(vec![vec![b'A'; 10_000]]),
            },
        ];
        let facts = analyze(&jpeg_with_exif(&fields), FIELD).unwrap();
        let exif = facts.exif.expect("EXIF read");
        assert_eq!(exif.orientation, 0);
        assert!(!exif.has_gps);
        assert_eq!(exif.camera_make.chars().count(), MAX_EXIF_TEXT);
    }
}
