//! The protobuf codec of our services (`build.rs` generates them with it):
//! tonic-prost's, except for a request message that does not decode.
//!
//! tonic-prost answers a body that is not a valid message (a string that is
//! not UTF-8, a truncated field, a wrong wire type, groups nested past
//! prost's recursion limit) with INTERNAL, and the handler never runs, so
//! nothing logs or counts the call. Here such a request is the caller's
//! error: INVALID_ARGUMENT, naming the message type and prost's cause, with
//! a `google.rpc.BadRequest` field violation when prost says in which field
//! it failed; it is logged at info and counted in
//! `photoclaim_rpc_requests_total` under its method, as the guard does with
//! the calls it refuses ([`super::auth`]).
//!
//! The decoder knows the message type, not the method; each request type
//! belongs to one method of the descriptor set (a test checks it), which is
//! how the method is found. A type that is no method's input is a reply a
//! client decodes: its decode error stays INTERNAL, as tonic-prost has it.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::LazyLock;

use prost::{DecodeError, Message, Name};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::ProstEncoder;
use tonic_types::{ErrorDetails, StatusExt};

/// The codec of `photoclaim.v1` services and clients: encodes `T`, decodes
/// `U`.
pub struct ProtoCodec<T, U> {
    _types: PhantomData<fn() -> (T, U)>,
}

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        ProtoCodec {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder { _type: PhantomData }
    }
}

/// Decodes a `U`; see the module docs for its errors.
pub struct ProtoDecoder<U> {
    _type: PhantomData<fn() -> U>,
}

impl<U: Message + Name + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|err| decode_failed(&U::full_name(), &err))
    }
}

/// The method whose request is each message type (full name), from the
/// descriptor set.
static REQUEST_METHODS: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    crate::pb::service_methods()
        .into_iter()
        .map(|method| {
            (
                method.input().full_name().to_string(),
                method.name().to_string(),
            )
        })
        .collect()
});

/// The status of a `type_name` message that did not decode; a request's is
/// logged and counted.
fn decode_failed(type_name: &str, err: &DecodeError) -> Status {
    let Some(method) = REQUEST_METHODS.get(type_name) else {
        // A reply, decoded by a client.
        return Status::internal(err.to_string());
    };
    let status = undecodable_request(type_name, err);
    tracing::info!(
        method = method.as_str(),
        code = ?status.code(),
        error = status.message(),
        "rpc refused"
    );
    crate::metrics::global().refused(method, status.code() as i32);
    status
}

/// INVALID_ARGUMENT for a request of type `type_name` that did not decode,
/// e.g. "request body is not a valid photoclaim.v1.GetClaimRequest: name:
/// invalid string value: data is not UTF-8 encoded".
pub fn undecodable_request(type_name: &str, err: &DecodeError) -> Status {
    let (path, cause) = field_path(err);
    let prefix = format!("request body is not a valid {type_name}");
    if path.is_empty() {
        return Status::invalid_argument(format!("{prefix}: {cause}"));
    }
    let message = format!("{prefix}: {path}: {cause}");
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation(path, cause);
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// The field where decoding failed (e.g. `claim.image.sha256`, empty if
/// prost does not say) and the cause.
///
/// prost keeps its (message, field) stack private; its `Display` writes it
/// innermost first, as `Message.field: ` before the cause, which is what is
/// read back here.
fn field_path(err: &DecodeError) -> (String, String) {
    let text = err.to_string();
    let mut rest = text
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(&text);
    let mut fields = Vec::new();
    while let Some((head, tail)) = rest.split_once(": ") {
        let Some((message, field)) = head.split_once('.') else {
            break;
        };
        let field = field.strip_prefix("r#").unwrap_or(field);
        if !is_identifier(message) || !is_identifier(field) {
            break;
        }
        fields.push(field);
        rest = tail;
    }
    fields.reverse();
    (fields.join("."), rest.to_string())
}

fn is_identifier(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    #[test]
    fn each_request_type_is_the_input_of_one_method_and_no_output() {
        let (inputs, outputs): (Vec<_>, Vec<_>) = crate::pb::service_methods()
            .into_iter()
            .map(|m| {
                (
                    m.input().full_name().to_string(),
                    m.output().full_name().to_string(),
                )
            })
            .unzip();
        assert_eq!(inputs.len(), 21);
        assert_eq!(REQUEST_METHODS.len(), inputs.len(), "a shared input type");
        for input in &inputs {
            assert!(!outputs.contains(input), "{input} is also a reply");
        }
        assert_eq!(
            REQUEST_METHODS[&pb::GetClaimRequest::full_name()],
            "GetClaim"
        );
    }

    #[test]
    fn a_request_that_does_not_decode_is_invalid_argument_naming_the_field() {
        // RegisterClaimRequest.claim (2) holding a Claim whose image (8)
        // holds an Image whose sha256 (2) is not UTF-8.
        let image = [0x12, 0x02, 0xff, 0xfe];
        let mut claim = vec![0x42, image.len() as u8];
        claim.extend_from_slice(&image);
        let mut request = vec![0x12, claim.len() as u8];
        request.extend_from_slice(&claim);
        let err = pb::RegisterClaimRequest::decode(request.as_slice()).unwrap_err();
        let status = undecodable_request("photoclaim.v1.RegisterClaimRequest", &err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "request body is not a valid photoclaim.v1.RegisterClaimRequest: \
             claim.image.sha256: invalid string value: data is not UTF-8 encoded"
        );
        let violations = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "claim.image.sha256");
        assert_eq!(
            violations[0].description,
            "invalid string value: data is not UTF-8 encoded"
        );
    }

    #[test]
    fn without_a_field_there_is_no_bad_request_detail() {
        // A key with wire type 7, which does not exist.
        let err = pb::GetClaimRequest::decode([0x0f].as_slice()).unwrap_err();
        let status = undecodable_request("photoclaim.v1.GetClaimRequest", &err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "request body is not a valid photoclaim.v1.GetClaimRequest: invalid wire type value: 7"
        );
        assert!(status.get_details_bad_request().is_none());
    }

    #[test]
    fn a_reply_that_does_not_decode_stays_internal() {
        let err = pb::Claim::decode([0x0a, 0x01, 0xff].as_slice()).unwrap_err();
        let status = decode_failed(&pb::Claim::full_name(), &err);
        assert_eq!(status.code(), Code::Internal);
    }
}
