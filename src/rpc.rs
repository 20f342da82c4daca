//! The RPCs of photoclaim's own services in one table: for each, the role
//! it needs, whether its successful calls are logged at info, and the size
//! class of its request message. The guard ([`crate::api::auth`]), the
//! logging of calls ([`crate::api::status`]), the metrics' method labels
//! and the body limits ([`crate::api::body_limits`]) all read it, so a new
//! RPC is added here once; a unit test checks the table against the
//! descriptor set, so that none can be served without an entry.

use crate::domain::access::Role;

/// `ClaimService`'s gRPC name.
pub const CLAIM_SERVICE: &str = "photoclaim.v1.ClaimService";
/// `AdminService`'s gRPC name.
pub const ADMIN_SERVICE: &str = "photoclaim.v1.AdminService";

/// How large an RPC's request message may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// Carries image bytes: up to `--max-message-bytes`.
    Image,
    /// Carries free text but no image: up to
    /// [`crate::api::body_limits::TEXT_MESSAGE_BYTES`].
    Text,
    /// Names, cursors and page sizes: up to
    /// [`crate::api::body_limits::SMALL_MESSAGE_BYTES`].
    Small,
}

/// One RPC of ours.
#[derive(Debug, PartialEq, Eq)]
pub struct Rpc {
    /// The service's gRPC name ([`CLAIM_SERVICE`] or [`ADMIN_SERVICE`]).
    pub service: &'static str,
    /// The method's name: also its label in logs and metrics.
    pub method: &'static str,
    /// The least role a caller needs.
    pub role: Role,
    /// Successful calls are logged at info (writes, and the administrative
    /// reads); successful reads at debug, since they come by thousands a
    /// second and the metrics count them.
    pub logged_at_info: bool,
    /// Its request message's size class.
    pub body: Body,
}

const fn rpc(
    service: &'static str,
    method: &'static str,
    role: Role,
    logged_at_info: bool,
    body: Body,
) -> Rpc {
    Rpc {
        service,
        method,
        role,
        logged_at_info,
        body,
    }
}

use Body::{Image, Small, Text};
use Role::{Admin, Desk, Ingest, Reader};

pub const REGISTER_CLAIM: Rpc = rpc(CLAIM_SERVICE, "RegisterClaim", Ingest, true, Image);
pub const GET_CLAIM: Rpc = rpc(CLAIM_SERVICE, "GetClaim", Reader, false, Small);
pub const LIST_CLAIMS: Rpc = rpc(CLAIM_SERVICE, "ListClaims", Reader, false, Small);
pub const ATTACH_OFFICIAL_RESPONSE: Rpc =
    rpc(CLAIM_SERVICE, "AttachOfficialResponse", Ingest, true, Text);
pub const LIST_OFFICIAL_RESPONSES: Rpc =
    rpc(CLAIM_SERVICE, "ListOfficialResponses", Reader, false, Small);
pub const GET_VERIFICATION_STATUS: Rpc =
    rpc(CLAIM_SERVICE, "GetVerificationStatus", Reader, false, Small);
pub const SET_VERDICT: Rpc = rpc(CLAIM_SERVICE, "SetVerdict", Desk, true, Text);
pub const LIST_CLAIM_EVENTS: Rpc = rpc(CLAIM_SERVICE, "ListClaimEvents", Reader, false, Small);
pub const FIND_SIMILAR_CLAIMS: Rpc = rpc(CLAIM_SERVICE, "FindSimilarClaims", Reader, false, Image);
pub const WATCH_CLAIM_EVENTS: Rpc = rpc(CLAIM_SERVICE, "WatchClaimEvents", Reader, false, Small);
pub const EXPORT_CLAIM_REVIEW: Rpc = rpc(CLAIM_SERVICE, "ExportClaimReview", Reader, false, Small);
pub const CHECK_VERDICT: Rpc = rpc(CLAIM_SERVICE, "CheckVerdict", Desk, false, Text);
pub const SEARCH_CLAIMS: Rpc = rpc(CLAIM_SERVICE, "SearchClaims", Reader, false, Text);
pub const IMPORT_CLAIM_REVIEWS: Rpc = rpc(CLAIM_SERVICE, "ImportClaimReviews", Desk, true, Image);
pub const GET_EXTERNAL_REVIEW: Rpc = rpc(CLAIM_SERVICE, "GetExternalReview", Reader, false, Small);
pub const LIST_EXTERNAL_REVIEWS: Rpc =
    rpc(CLAIM_SERVICE, "ListExternalReviews", Reader, false, Small);
pub const CREATE_API_KEY: Rpc = rpc(ADMIN_SERVICE, "CreateApiKey", Admin, true, Small);
pub const LIST_API_KEYS: Rpc = rpc(ADMIN_SERVICE, "ListApiKeys", Admin, true, Small);
pub const REVOKE_API_KEY: Rpc = rpc(ADMIN_SERVICE, "RevokeApiKey", Admin, true, Small);
pub const EXPORT_CLAIMS: Rpc = rpc(ADMIN_SERVICE, "ExportClaims", Admin, true, Small);
pub const BACKUP: Rpc = rpc(ADMIN_SERVICE, "Backup", Admin, true, Small);

/// Every RPC of ours.
pub const ALL: [&Rpc; 21] = [
    &REGISTER_CLAIM,
    &GET_CLAIM,
    &LIST_CLAIMS,
    &ATTACH_OFFICIAL_RESPONSE,
    &LIST_OFFICIAL_RESPONSES,
    &GET_VERIFICATION_STATUS,
    &SET_VERDICT,
    &LIST_CLAIM_EVENTS,
    &FIND_SIMILAR_CLAIMS,
    &WATCH_CLAIM_EVENTS,
    &EXPORT_CLAIM_REVIEW,
    &CHECK_VERDICT,
    &SEARCH_CLAIMS,
    &IMPORT_CLAIM_REVIEWS,
    &GET_EXTERNAL_REVIEW,
    &LIST_EXTERNAL_REVIEWS,
    &CREATE_API_KEY,
    &LIST_API_KEYS,
    &REVOKE_API_KEY,
    &EXPORT_CLAIMS,
    &BACKUP,
];

/// The RPC at exactly `path` (`/photoclaim.v1.ClaimService/GetClaim`).
pub fn by_path(path: &str) -> Option<&'static Rpc> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    ALL.into_iter()
        .find(|rpc| rpc.service == service && rpc.method == method)
}

/// The RPC named `method` (method names are unique across our services).
pub fn by_method(method: &str) -> Option<&'static Rpc> {
    ALL.into_iter().find(|rpc| rpc.method == method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_exactly_the_methods_of_our_services() {
        let mut served = Vec::new();
        for method in crate::pb::service_methods() {
            let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
            let rpc = by_path(&path).unwrap_or_else(|| panic!("{path} has no entry"));
            assert_eq!(by_method(method.name()), Some(rpc), "{path}");
            served.push(path);
        }
        assert_eq!(served.len(), ALL.len(), "{served:?}");
    }

    #[test]
    fn paths_match_exactly() {
        assert_eq!(
            by_path("/photoclaim.v1.ClaimService/SetVerdict"),
            Some(&SET_VERDICT)
        );
        for path in [
            "/photoclaim.v1.ClaimService/SetVerdict/",
            "/photoclaim.v1.AdminService/SetVerdict",
            "photoclaim.v1.ClaimService/SetVerdict",
            "/other.Service/GetClaim",
            "",
        ] {
            assert_eq!(by_path(path), None, "{path}");
        }
    }
}
