//! Generated protobuf messages and the tonic service for `photoclaim.v1`,
//! with the encoded descriptor set served by reflection.

#![allow(missing_docs, clippy::all)]

tonic::include_proto!("photoclaim.v1");

mod image_match;
pub use image_match::ImageMatch;

/// Encoded `FileDescriptorSet` of `proto/` (and its imports), for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("photoclaim_descriptor");

/// The descriptor pool of [`FILE_DESCRIPTOR_SET`], decoded once.
static POOL: std::sync::LazyLock<prost_reflect::DescriptorPool> = std::sync::LazyLock::new(|| {
    prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET)
        .expect("the descriptor set compiled into the binary decodes")
});

/// Every method of our services, from the descriptor set.
pub fn service_methods() -> Vec<prost_reflect::MethodDescriptor> {
    POOL.services()
        .flat_map(|service| service.methods().collect::<Vec<_>>())
        .collect()
}

/// `message` (of protobuf type `full_name`, e.g. `photoclaim.v1.Claim`) in
/// the canonical proto3 JSON mapping, the one grpcurl prints: lowerCamelCase
/// field names, enum value names, RFC 3339 timestamps, base64 bytes, 64-bit
/// integers as strings, fields at their default value left out.
///
/// # Panics
/// If `full_name` is not a message of this package's descriptor set, or
/// does not match `message`'s type: both are programming errors.
pub fn to_json<M: prost::Message>(message: &M, full_name: &str) -> serde_json::Value {
    dynamic(message, full_name)
        .serialize_with_options(
            serde_json::value::Serializer,
            &prost_reflect::SerializeOptions::new(),
        )
        .unwrap_or_else(|e| panic!("serializing a {full_name}: {e}"))
}

/// [`to_json`] as text, with the fields in the order the proto declares
/// them (a `serde_json::Value` would sort them by name), as grpcurl prints:
/// indented by two spaces when `pretty`, else on one line.
///
/// # Panics
/// As [`to_json`].
pub fn to_json_text<M: prost::Message>(message: &M, full_name: &str, pretty: bool) -> String {
    let dynamic = dynamic(message, full_name);
    let options = prost_reflect::SerializeOptions::new();
    let mut out = Vec::new();
    let result = if pretty {
        dynamic.serialize_with_options(&mut serde_json::Serializer::pretty(&mut out), &options)
    } else {
        dynamic.serialize_with_options(&mut serde_json::Serializer::new(&mut out), &options)
    };
    result.unwrap_or_else(|e| panic!("serializing a {full_name}: {e}"));
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// `message` re-decoded as a dynamic message of type `full_name`.
fn dynamic<M: prost::Message>(message: &M, full_name: &str) -> prost_reflect::DynamicMessage {
    let descriptor = POOL
        .get_message_by_name(full_name)
        .unwrap_or_else(|| panic!("{full_name} is not in the descriptor set"));
    prost_reflect::DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .unwrap_or_else(|e| panic!("re-decoding a {full_name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_print_in_the_proto3_json_mapping() {
        let claim = Claim {
            name: "claims/7".into(),
            claim_text: "UN peacekeepers in Kazakhstan".into(),
            first_seen_time: Some(prost_types::Timestamp {
                seconds: 1_641_600_000,
                nanos: 0,
            }),
            verification_status: Some(VerificationStatus {
                state: VerificationState::Resolved as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let json = to_json(&claim, "photoclaim.v1.Claim");
        assert_eq!(json["name"], "claims/7");
        assert_eq!(json["claimText"], "UN peacekeepers in Kazakhstan");
        assert_eq!(json["firstSeenTime"], "2022-01-08T00:00:00Z");
        assert_eq!(
            json["verificationStatus"]["state"],
            "VERIFICATION_STATE_RESOLVED"
        );
        assert!(json.get("claimant").is_none(), "defaults are left out");
    }

    #[test]
    fn json_text_keeps_the_order_the_proto_declares() {
        let claim = Claim {
            name: "claims/7".into(),
            claim_text: "UN peacekeepers in Kazakhstan".into(),
            claimant: "posts".into(),
            language: "en".into(),
            ..Default::default()
        };
        let text = to_json_text(&claim, "photoclaim.v1.Claim", true);
        let at = |key: &str| {
            text.find(&format!("\"{key}\""))
                .unwrap_or_else(|| panic!("{key} missing in {text}"))
        };
        // Declaration order: name, claim_text, claimant, language (not a-z).
        assert!(at("name") < at("claimText"), "{text}");
        assert!(at("claimText") < at("claimant"), "{text}");
        assert!(at("claimant") < at("language"), "{text}");
        assert!(
            text.starts_with("{\n  \"name\""),
            "two-space indent: {text}"
        );
        let line = to_json_text(&claim, "photoclaim.v1.Claim", false);
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&line).unwrap(),
            to_json(&claim, "photoclaim.v1.Claim")
        );
    }
}
