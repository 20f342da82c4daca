//! Signed C2PA test images, made inside the test: certificates with rcgen
//! (a CA as the trust anchor, an ES256 signing certificate and a
//! time-stamping certificate issued by it), a textured base picture encoded
//! with the `image` crate, and manifests signed with c2pa's `Builder` and
//! its Rust-native `create_signer::from_keys`.
//!
//! Nothing leaves the process. The signature's RFC 3161 time stamp comes
//! from an in-process time-stamping authority ([`TestSigner`] answers
//! c2pa's time-stamp request itself, signing the token with its own
//! time-stamping key), so no TSA is contacted and the manifest still
//! carries a signing time, as real ones do.

use std::io::Cursor;

use c2pa::{BoxedSigner, Builder, BuilderIntent, Context, SigningAlg};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SigningKey,
};
use serde_json::json;
use sha2::{Digest, Sha256};

/// IPTC digital source type of generative-model output.
pub const TRAINED_ALGORITHMIC_MEDIA: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";
/// IPTC digital source type of a camera capture.
pub const DIGITAL_CAPTURE: &str = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture";

/// A signing identity: a CA (the anchor a reader may trust), a signing
/// certificate it issued (CN "<org> Signer", O "<org>") and a time-stamping
/// certificate it issued.
pub struct TestSigner {
    /// The CA certificate: the trust anchor.
    pub ca_pem: String,
    /// The signing (end-entity) certificate.
    pub cert_pem: String,
    /// The signing key (PKCS#8).
    pub key_pem: String,
    /// The signing certificate's common name.
    pub common_name: String,
    /// Its organisation.
    pub org: String,
    tsa_cert_der: Vec<u8>,
    tsa_key: KeyPair,
}

impl TestSigner {
    pub fn new(org: &str) -> TestSigner {
        let name = |cn: &str| {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, org);
            dn.push(DnType::CommonName, cn);
            dn
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name = name(&format!("{org} Test Root CA"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");

        // What C2PA asks of a signing certificate: not a CA, digitalSignature,
        // an allowed EKU (id-kp-documentSigning), an authority key identifier.
        let common_name = format!("{org} Signer");
        let mut leaf = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        leaf.distinguished_name = name(&common_name);
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(vec![
            1, 3, 6, 1, 5, 5, 7, 3, 36,
        ])];
        leaf.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("signing key"); // ECDSA P-256
        let cert = leaf.signed_by(&key, &*ca).expect("signing certificate");

        let mut tsa = CertificateParams::new(Vec::<String>::new()).expect("TSA params");
        tsa.distinguished_name = name(&format!("{org} Time Stamping"));
        tsa.is_ca = IsCa::ExplicitNoCa;
        tsa.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        tsa.extended_key_usages = vec![ExtendedKeyUsagePurpose::TimeStamping];
        tsa.use_authority_key_identifier_extension = true;
        let tsa_key = KeyPair::generate().expect("TSA key");
        let tsa_cert = tsa.signed_by(&tsa_key, &*ca).expect("TSA certificate");

        TestSigner {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            common_name,
            org: org.to_string(),
            tsa_cert_der: tsa_cert.der().to_vec(),
            tsa_key,
        }
    }

    /// The c2pa signer: ES256 with the signing key, time-stamped in-process
    /// when `time_stamp` is set.
    fn c2pa_signer(&self, time_stamp: bool) -> TimeStampingSigner<'_> {
        let inner = c2pa::create_signer::from_keys(
            self.cert_pem.as_bytes(),
            self.key_pem.as_bytes(),
            SigningAlg::Es256,
            None, // no TSA URL: nothing is fetched
        )
        .expect("c2pa signer from the test keys");
        TimeStampingSigner {
            inner,
            tsa: time_stamp.then_some(self),
        }
    }

    /// An RFC 3161 TimeStampResp for `message`, stamped now, signed with
    /// the time-stamping key (CMS SignedData with signed attributes).
    fn time_stamp_response(&self, message: &[u8]) -> Vec<u8> {
        use x509_cert::der::{Decode, Encode};
        let cert = x509_cert::Certificate::from_der(&self.tsa_cert_der).expect("TSA certificate");
        let issuer = cert.tbs_certificate.issuer.to_der().expect("issuer DER");
        let serial = cert
            .tbs_certificate
            .serial_number
            .to_der()
            .expect("serial DER");

        let sha256 = der::oid(&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01]);
        let sha256_alg = der::seq(&[&sha256]);
        let tst_info_type = der::oid(&[
            0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04,
        ]);
        let tst_info = der::seq(&[
            &der::tlv(0x02, &[1]),                // version
            &der::oid(&[0x2a, 0x03, 0x04, 0x01]), // policy 1.2.3.4.1
            &der::seq(&[&sha256_alg, &der::tlv(0x04, &Sha256::digest(message))]),
            &der::tlv(0x02, &[0x2a]), // serial number
            &der::tlv(0x18, generalized_time_now().as_bytes()),
        ]);
        let content_type_attr = der::seq(&[
            &der::oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03]),
            &der::tlv(0x31, &tst_info_type),
        ]);
        let digest_attr = der::seq(&[
            &der::oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04]),
            &der::tlv(0x31, &der::tlv(0x04, &Sha256::digest(&tst_info))),
        ]);
        // DER orders a SET OF by encoding.
        let mut attrs = [content_type_attr, digest_attr];
        attrs.sort();
        let attrs = attrs.concat();
        let signature = self
            .tsa_key
            .sign(&der::tlv(0x31, &attrs))
            .expect("TSA signature"); // ASN.1 DER ECDSA
        let signer_info = der::seq(&[
            &der::tlv(0x02, &[1]),
            &der::seq(&[&issuer, &serial]),
            &sha256_alg,
            &der::tlv(0xa0, &attrs),
            &der::seq(&[&der::oid(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])]),
            &der::tlv(0x04, &signature),
        ]);
        let signed_data = der::seq(&[
            &der::tlv(0x02, &[3]),
            &der::tlv(0x31, &sha256_alg),
            &der::seq(&[&tst_info_type, &der::tlv(0xa0, &der::tlv(0x04, &tst_info))]),
            &der::tlv(0xa0, &self.tsa_cert_der),
            &der::tlv(0x31, &signer_info),
        ]);
        let token = der::seq(&[
            &der::oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02]),
            &der::tlv(0xa0, &signed_data),
        ]);
        der::seq(&[&der::seq(&[&der::tlv(0x02, &[0])]), &token])
    }
}

/// c2pa's signer with an in-process time-stamping authority.
struct TimeStampingSigner<'a> {
    inner: BoxedSigner,
    tsa: Option<&'a TestSigner>,
}

impl c2pa::Signer for TimeStampingSigner<'_> {
    fn sign(&self, data: &[u8]) -> c2pa::Result<Vec<u8>> {
        self.inner.sign(data)
    }

    fn alg(&self) -> SigningAlg {
        self.inner.alg()
    }

    fn certs(&self) -> c2pa::Result<Vec<Vec<u8>>> {
        self.inner.certs()
    }

    fn reserve_size(&self) -> usize {
        self.inner.reserve_size()
    }

    fn send_timestamp_request(&self, message: &[u8]) -> Option<c2pa::Result<Vec<u8>>> {
        self.tsa.map(|tsa| Ok(tsa.time_stamp_response(message)))
    }
}

/// One action of a [`ManifestSpec`].
#[derive(Clone, Debug)]
pub struct SpecAction {
    pub action: String,
    /// An IPTC digital source type URL, if any.
    pub source_type: Option<String>,
}

/// An ingredient of a [`ManifestSpec`]: another image, signed or not.
#[derive(Clone, Debug)]
pub struct SpecIngredient {
    pub title: String,
    /// "jpeg" or "png".
    pub format: String,
    pub bytes: Vec<u8>,
}

/// What a signed test image's manifest says.
#[derive(Clone, Debug)]
pub struct ManifestSpec {
    pub title: String,
    /// `name/version`, written as the claim generator info.
    pub claim_generator: String,
    pub actions: Vec<SpecAction>,
    /// Added as the `parentOf` ingredient (with the Edit intent, so c2pa
    /// adds the `c2pa.opened` action for it).
    pub ingredient: Option<SpecIngredient>,
    /// Whether the signature gets an (in-process) RFC 3161 time stamp.
    pub time_stamp: bool,
    /// A remote-only manifest: the image embeds no store, only this URL (in
    /// its XMP), where the manifest would be published.
    pub remote_url: Option<String>,
}

impl ManifestSpec {
    /// A camera capture: `c2pa.created` with `digitalCapture`.
    pub fn captured(title: &str) -> ManifestSpec {
        ManifestSpec {
            title: title.into(),
            claim_generator: "PhotoclaimTestCam/1.0".into(),
            actions: vec![action("c2pa.created", Some(DIGITAL_CAPTURE))],
            ingredient: None,
            time_stamp: true,
            remote_url: None,
        }
    }

    /// Made by a generative model: `c2pa.created` with `trainedAlgorithmicMedia`.
    pub fn generated(title: &str) -> ManifestSpec {
        ManifestSpec {
            actions: vec![action("c2pa.created", Some(TRAINED_ALGORITHMIC_MEDIA))],
            claim_generator: "PhotoclaimTestGenerator/2.5".into(),
            ..ManifestSpec::captured(title)
        }
    }

    /// An edit of `ingredient` (its parent): `c2pa.edited`.
    pub fn edited(title: &str, ingredient: SpecIngredient) -> ManifestSpec {
        ManifestSpec {
            actions: vec![action("c2pa.edited", None)],
            claim_generator: "PhotoclaimTestEditor/3.1".into(),
            ingredient: Some(ingredient),
            ..ManifestSpec::captured(title)
        }
    }
}

pub fn action(action: &str, source_type: Option<&str>) -> SpecAction {
    SpecAction {
        action: action.into(),
        source_type: source_type.map(str::to_string),
    }
}

fn media_type(format: &str) -> &'static str {
    match format {
        "jpeg" | "jpg" => "image/jpeg",
        "png" => "image/png",
        other => panic!("test images are jpeg or png, not {other}"),
    }
}

/// `image` (format "jpeg" or "png") with a manifest per `manifest`, signed
/// by `signer`.
pub fn sign(image: &[u8], format: &str, signer: &TestSigner, manifest: ManifestSpec) -> Vec<u8> {
    let (name, version) = manifest
        .claim_generator
        .split_once('/')
        .unwrap_or((manifest.claim_generator.as_str(), ""));
    let mut generator = json!({ "name": name });
    if !version.is_empty() {
        generator["version"] = json!(version);
    }
    let context = Context::new()
        .with_settings(json!({
            "verify": {
                "verify_after_sign": false,
                "remote_manifest_fetch": false,
                "ocsp_fetch": false,
            },
            "core": { "allowed_network_hosts": [] },
            "builder": { "thumbnail": { "enabled": false } },
        }))
        .expect("builder settings");
    let mut builder = Builder::from_context(context)
        .with_definition(json!({
            "title": manifest.title,
            "claim_generator_info": [generator],
        }))
        .expect("manifest definition");
    if let Some(ingredient) = &manifest.ingredient {
        builder.set_intent(BuilderIntent::Edit);
        builder
            .add_ingredient_from_stream(
                json!({ "title": ingredient.title, "relationship": "parentOf" }).to_string(),
                media_type(&ingredient.format),
                &mut Cursor::new(&ingredient.bytes),
            )
            .expect("ingredient");
    }
    for a in &manifest.actions {
        let mut value = json!({ "action": a.action });
        if let Some(source_type) = &a.source_type {
            value["digitalSourceType"] = json!(source_type);
        }
        builder.add_action(value).expect("action");
    }
    if let Some(url) = &manifest.remote_url {
        builder.set_remote_url(url.clone());
        builder.set_no_embed(true);
    }
    let c2pa_signer = signer.c2pa_signer(manifest.time_stamp);
    let mut source = Cursor::new(image);
    let mut dest = Cursor::new(Vec::new());
    builder
        .sign(&c2pa_signer, media_type(format), &mut source, &mut dest)
        .expect("sign the test image");
    dest.into_inner()
}

/// A 256 x 256 textured RGB picture.
fn picture() -> image::RgbImage {
    image::RgbImage::from_fn(256, 256, |x, y| {
        let ripple = ((x * x + y * y) / 97 % 256) as u8;
        image::Rgb([
            (x * 7 % 256) as u8 ^ ripple,
            (y * 13 % 256) as u8,
            ((x ^ y) % 256) as u8,
        ])
    })
}

/// The base picture as a baseline JPEG.
pub fn base_jpeg() -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    picture()
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode JPEG");
    out.into_inner()
}

/// The base picture as a PNG with uncompressed (stored) image data, so
/// [`tamper`] can change a pixel and keep the file valid.
pub fn base_png() -> Vec<u8> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let picture = picture();
    let mut out = Vec::new();
    PngEncoder::new_with_quality(
        &mut out,
        CompressionType::Uncompressed,
        FilterType::NoFilter,
    )
    .write_image(&picture, 256, 256, image::ExtendedColorType::Rgb8)
    .expect("encode PNG");
    out
}

/// The base picture in `format` ("jpeg" or "png").
pub fn base_image(format: &str) -> Vec<u8> {
    match format {
        "jpeg" => base_jpeg(),
        "png" => base_png(),
        other => panic!("test images are jpeg or png, not {other}"),
    }
}

/// `signed` with its pixel data changed and the manifest left alone, so the
/// hard binding (data hash) no longer matches; still a decodable image with
/// different pixels. JPEG: one bit flipped in the entropy-coded scan (away
/// from 0xFF bytes and markers). PNG (from [`base_png`]): one pixel byte
/// changed in a stored deflate block, with the zlib Adler-32 and the chunk
/// CRCs fixed.
pub fn tamper(signed: &[u8]) -> Vec<u8> {
    let original = image::load_from_memory(signed).expect("the signed image decodes");
    let candidates: Vec<Vec<u8>> = if signed.starts_with(b"\x89PNG") {
        vec![tamper_png(signed)]
    } else {
        tamper_jpeg_candidates(signed)
    };
    for candidate in candidates {
        if let Ok(decoded) = image::load_from_memory(&candidate) {
            if decoded.as_bytes() != original.as_bytes() {
                return candidate;
            }
        }
    }
    panic!("no tampered version of the image decodes with different pixels");
}

fn tamper_jpeg_candidates(signed: &[u8]) -> Vec<Vec<u8>> {
    // Walk the segments to the first scan (APP11 manifest segments come
    // before it).
    let mut at = 2;
    let scan = loop {
        assert_eq!(signed[at], 0xff, "JPEG segment at {at}");
        let marker = signed[at + 1];
        let length = usize::from(u16::from_be_bytes([signed[at + 2], signed[at + 3]]));
        if marker == 0xda {
            break at + 2 + length;
        }
        at += 2 + length;
    };
    let end = scan
        + signed[scan..]
            .windows(2)
            .position(|w| w[0] == 0xff && w[1] != 0x00 && !(0xd0..=0xd7).contains(&w[1]))
            .expect("end of scan");
    let mut out = Vec::new();
    let mut position = scan + (end - scan) / 3;
    while position + 2 < end && out.len() < 64 {
        let (before, byte, after) = (signed[position - 1], signed[position], signed[position + 1]);
        if before != 0xff && byte != 0xff && byte != 0xfe && after != 0xff {
            let mut candidate = signed.to_vec();
            candidate[position] ^= 0x01;
            out.push(candidate);
        }
        position += 7;
    }
    out
}

fn tamper_png(signed: &[u8]) -> Vec<u8> {
    // IDAT chunks: (offset of data, length).
    let mut chunks = Vec::new();
    let mut at = 8;
    while at + 8 <= signed.len() {
        let length = u32::from_be_bytes(signed[at..at + 4].try_into().unwrap()) as usize;
        if &signed[at + 4..at + 8] == b"IDAT" {
            chunks.push((at + 8, length));
        }
        at += 12 + length;
    }
    let mut zlib: Vec<u8> = chunks
        .iter()
        .flat_map(|&(start, length)| signed[start..start + length].iter().copied())
        .collect();
    // zlib header, then stored blocks: header byte, LEN, NLEN, data.
    let mut at = 2;
    let mut data_ranges = Vec::new();
    loop {
        let header = zlib[at];
        assert_eq!(
            header & 0b110,
            0,
            "tamper needs a PNG with stored blocks (base_png)"
        );
        let length = usize::from(u16::from_le_bytes([zlib[at + 1], zlib[at + 2]]));
        data_ranges.push((at + 5, length));
        at += 5 + length;
        if header & 1 == 1 {
            break;
        }
    }
    // Change a byte in the middle of the image data: a pixel byte, not a
    // row's first byte (its filter type).
    let (start, length) = data_ranges[data_ranges.len() / 2];
    let mut target = start + length / 2;
    let row = 1 + 256 * 3;
    let offset_in_data: usize = data_ranges
        .iter()
        .take_while(|&&(s, _)| s < start)
        .map(|&(_, l)| l)
        .sum::<usize>()
        + (target - start);
    if offset_in_data.is_multiple_of(row) {
        target += 1; // a filter-type byte: take the next, a pixel byte
    }
    zlib[target] ^= 0x55;
    let data: Vec<u8> = data_ranges
        .iter()
        .flat_map(|&(s, l)| zlib[s..s + l].iter().copied())
        .collect();
    let adler = adler32(&data);
    let n = zlib.len();
    zlib[n - 4..].copy_from_slice(&adler.to_be_bytes());
    // Scatter back and fix the CRCs.
    let mut out = signed.to_vec();
    let mut taken = 0;
    for &(start, length) in &chunks {
        out[start..start + length].copy_from_slice(&zlib[taken..taken + length]);
        taken += length;
        let crc = crc32(&out[start - 4..start + length]);
        out[start + length..start + length + 4].copy_from_slice(&crc.to_be_bytes());
    }
    out
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

pub fn crc32(data: &[u8]) -> u32 {
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

/// The current UTC time as a DER GeneralizedTime body (YYYYMMDDHHMMSSZ).
fn generalized_time_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let (days, secs) = (now.div_euclid(86_400), now.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A minimal DER writer.
mod der {
    pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = content.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes = n.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    pub fn oid(encoded: &[u8]) -> Vec<u8> {
        tlv(0x06, encoded)
    }
}
