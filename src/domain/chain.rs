//! The tamper-evident audit trail: hash chains over the claims' events.
//!
//! - Every event record carries `prev_hash`, the SHA-256 of the claim's
//!   previous event record as stored (its protobuf encoding), and
//!   `record_sha256`, the SHA-256 of the record it made (the claim as
//!   registered, or the attached response). A claim's `chain_head` is the
//!   SHA-256 of its latest event record.
//! - The service-wide chain runs over the event log in log order:
//!   `head(n) = SHA-256(head(n-1) ‖ event_hash(n))`, from 32 zero bytes.
//!
//! Changing any event, response or registered claim text afterwards breaks
//! a link that [`super::history::replay`] (run by `photoclaim check` and by
//! restore) finds;
//! rewriting a whole chain consistently changes its head, which a desk that
//! noted the head (from `GetVerificationStatus`) can compare.

use prost::Message;
use sha2::{Digest, Sha256};

use super::model::{Claim, ClaimEvent};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Where the service-wide chain starts.
pub const GENESIS: Hash = [0; 32];

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// The next head of the service-wide chain.
pub fn link(previous: &Hash, event_hash: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(event_hash);
    hasher.finalize().into()
}

/// The claim as registered: the record without what later events change
/// (update time, sequence, evidence, verdict, state, chain head).
pub fn registered_content(claim: &Claim) -> Claim {
    Claim {
        update_time: None,
        last_sequence: 0,
        evidence: None,
        verdict: None,
        state: 0,
        chain_head: Vec::new(),
        ..claim.clone()
    }
}

/// SHA-256 of [`registered_content`]: a registration's `record_sha256`.
pub fn registered_digest(claim: &Claim) -> Hash {
    sha256(&registered_content(claim).encode_to_vec())
}

/// Links `event` to the claim's chain: sets its `prev_hash` from the
/// claim's head, encodes it, and moves the head to the new record's hash.
/// Returns the encoding to store (the bytes the hash covers).
pub fn seal(claim: &mut Claim, event: &mut ClaimEvent) -> (Vec<u8>, Hash) {
    event.prev_hash = claim.chain_head.clone();
    let bytes = event.encode_to_vec();
    let hash = sha256(&bytes);
    claim.chain_head = hash.to_vec();
    (bytes, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_depend_on_the_event() {
        let a = link(&GENESIS, &sha256(b"x"));
        assert_ne!(a, link(&GENESIS, &sha256(b"y")));
    }
}
