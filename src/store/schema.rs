//! The sled trees of a data directory, by name: the one place their names
//! are spelled (the engine, its committer, `check`, `restore` and
//! `compact` all open them from here). Their key and value layouts are in
//! the table of [`super::sled_store`].

/// Format version, counters and the page-token key.
pub(super) const META: &str = "meta";
/// `claim_id -> Claim`.
pub(super) const CLAIMS: &str = "claims";
/// `state ‖ claim_id -> ()`.
pub(super) const CLAIMS_BY_STATE: &str = "claims_by_state";
/// `claim_id ‖ response_id -> OfficialResponse`.
pub(super) const RESPONSES: &str = "responses";
/// `claim_id ‖ sequence -> ClaimEvent`.
pub(super) const EVENTS: &str = "events";
/// `log position -> claim_id ‖ sequence ‖ type ‖ chain head`.
pub(super) const EVENT_LOG: &str = "event_log";
/// `sha256 ‖ claim_id -> ()`.
pub(super) const CLAIMS_BY_SHA256: &str = "claims_by_sha256";
/// `claim_id -> pdq ‖ quality`.
pub(super) const CLAIMS_BY_PDQ: &str = "claims_by_pdq";
/// `operation ‖ request_id -> IdempotencyRecord`.
pub(super) const REQUEST_IDS: &str = "request_ids";
/// `key id -> ApiKey`.
pub(super) const API_KEYS: &str = "api_keys";
/// `lower-cased key name -> key id`.
pub(super) const API_KEY_NAMES: &str = "api_key_names";
