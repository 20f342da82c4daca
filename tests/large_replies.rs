//! Replies stay under clients' default 4 MiB receive limit however long the
//! stored texts are: list pages and `same_image_claims` stop early.

mod common;

use common::*;
use photoclaim::api::MAX_PAGE_BYTES;
use photoclaim::pb;
use prost::Message;

/// Clients' default receive limit (tonic, grpc-go, grpcurl).
const CLIENT_LIMIT: usize = 4 * 1024 * 1024;

/// A claim at the validation limits, about 200 KiB encoded: every text at its
/// maximum in 4-byte characters, 50 URLs and 50 tags.
fn largest_claim(n: usize, sha: &str) -> pb::Claim {
    let wide = |chars: usize| "𝕏".repeat(chars);
    let mut claim = sample_claim(&format!("{n} {}", wide(9_990)));
    claim.claimant = wide(500);
    claim.appearance_urls = (0..50)
        .map(|i| format!("https://example.org/{i:02}/{}", "a".repeat(2_000)))
        .collect();
    claim.tags = (0..50).map(|i| format!("{i:02}{}", wide(98))).collect();
    let image = claim.image.as_mut().unwrap();
    image.sha256 = sha.to_string();
    image.caption = wide(10_000);
    claim
}

#[tokio::test]
async fn long_claims_come_back_in_pages_and_match_lists_under_the_client_limit() {
    let server = InProcess::in_memory().await;
    let mut client = server.client.clone();
    let sha = fake_sha256(7);
    let count = 25;
    for n in 0..count {
        let claim = largest_claim(n, &sha);
        assert!(claim.encoded_len() > 200_000);
        register(&mut client, claim, "").await;
    }

    // Registering one more on the same image still gets a reply the client
    // accepts, listing as many earlier claims as fit, newest first.
    let reply = register(&mut client, largest_claim(count, &sha), "").await;
    assert!(
        reply.encoded_len() <= MAX_PAGE_BYTES,
        "{}",
        reply.encoded_len()
    );
    let matches: Vec<String> = reply
        .same_image_claims
        .iter()
        .map(|m| m.claim.as_ref().unwrap().name.clone())
        .collect();
    assert!(
        !matches.is_empty() && matches.len() < count,
        "{} of {count} earlier claims listed",
        matches.len()
    );
    let ids: Vec<u64> = matches
        .iter()
        .map(|n| n.trim_start_matches("claims/").parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    // A page of 1000 stops early with a token, and paging reaches them all.
    let page = client
        .list_claims(pb::ListClaimsRequest {
            page_size: 1_000,
            ..Default::default()
        })
        .await
        .expect("a page under the limit")
        .into_inner();
    assert!(page.encoded_len() < CLIENT_LIMIT);
    assert!(page.claims.len() < count + 1, "{}", page.claims.len());
    assert!(!page.next_page_token.is_empty());
    let all = all_claims(&mut client, pb::VerificationState::Unspecified).await;
    assert_eq!(all.len(), count + 1);
    server.stop().await;
}
