//! Image analysis: decoding with limits, fingerprints, EXIF.
//!
//! [`analyze`] turns the bytes a caller sent into the facts a claim keeps:
//! SHA-256, PDQ hash and quality, dimensions, format and EXIF facts. The
//! bytes themselves are not kept. Hostile input is refused with
//! `INVALID_ARGUMENT` before anything large is allocated: the format is
//! sniffed from the first bytes (only JPEG, PNG, WebP and GIF), the header's
//! dimensions are checked against [`MAX_DIMENSION`] and the decoder runs
//! under an allocation limit, so a tiny file declaring 50,000 × 50,000 pixels
//! is refused from its header.

pub mod pdq_hash;

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};
use sha2::{Digest, Sha256};

use crate::domain::{Error, ImageExif, Result};

/// Largest width or height accepted, in pixels.
pub const MAX_DIMENSION: u32 = 16_384;
/// Most memory a decoder may allocate for one image.
pub const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;
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
}

/// Analyses image bytes given in the request field `field`. CPU-bound (a
/// large JPEG takes tens of milliseconds): call it off the async runtime.
pub fn analyze(bytes: &[u8], field: &str) -> Result<ImageFacts> {
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
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    if format == ImageFormat::Jpeg && !has_end_marker(bytes) {
        return Err(bad(
            "is a truncated JPEG (no end-of-image marker): send the whole file".into(),
        ));
    }
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => bad(format!(
            "declares an image larger than the limits ({MAX_DIMENSION} pixels a side, {} MiB decoded)",
            MAX_DECODE_BYTES / (1024 * 1024)
        )),
        other => bad(format!("cannot be decoded as {}: {other}", name(format))),
    })?;
    let exif = read_exif(bytes, format).map_err(bad)?;
    let hash = pdq_hash::pdq_hash(&image);
    Ok(ImageFacts {
        sha256: hex(&Sha256::digest(bytes)),
        pdq: hex(&hash.hash),
        pdq_quality: i32::from(hash.quality),
        width: image.width() as i32,
        height: image.height() as i32,
        format: name(format).to_string(),
        exif,
    })
}

/// Whether a JPEG's end-of-image marker (FF D9) is among its last 4 KiB
/// (some writers pad after it). The JPEG decoder itself fills a truncated
/// scan with grey instead of failing, which would hash half an image.
fn has_end_marker(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xff, 0xd9])
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        assert_eq!(facts.sha256, hex(&Sha256::digest(&bytes)));
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
        let mut bytes = png(1, 1);
        // IHDR starts at byte 8 (length), 12 (type); width and height follow.
        bytes[16..20].copy_from_slice(&50_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&50_000u32.to_be_bytes());
        // Fix the IHDR CRC so that only the size is wrong.
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        let why = refused(&bytes);
        assert!(why.contains("larger than the limits"), "{why}");
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
