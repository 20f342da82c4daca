//! `photoclaim generate` makes data the rest of the tools accept: check
//! passes, similar images are found in clusters, and a backup of it
//! restores to the same counts and chain head.

mod common;

use photoclaim::pb;

/// Runs the binary, which must succeed: its output.
fn cli(args: &[&str]) -> String {
    let (ok, text) = common::cli(args);
    assert!(ok, "photoclaim {args:?}:\n{text}");
    text
}

/// The text between `from` and the next `to`.
fn between<'a>(text: &'a str, from: &str, to: &str) -> &'a str {
    let start = text
        .find(from)
        .unwrap_or_else(|| panic!("{from:?} in {text}"))
        + from.len();
    let rest = &text[start..];
    &rest[..rest.find(to).unwrap_or(rest.len())]
}

#[tokio::test]
async fn generated_data_checks_clusters_and_round_trips_through_a_backup() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let d = dir.to_str().unwrap();
    let made = cli(&[
        "generate",
        "--data-dir",
        d,
        "--claims",
        "240",
        "--seed",
        "9",
    ]);
    assert!(made.contains("generated 240 claims"), "{made}");
    let checked = cli(&["check", "--data-dir", d]);
    assert!(checked.starts_with("ok "), "{checked}");
    assert!(checked.contains(" 240 claims"), "{checked}");
    let responses: u64 = between(&made, "claims, ", " responses").parse().unwrap();
    assert!((240..=1200).contains(&responses), "{made}");
    assert!(made.contains(" 120 verdicts"), "{made}");

    let file = root.path().join("b.backup");
    let backed = cli(&["backup", "--data-dir", d, "--out", file.to_str().unwrap()]);
    let restored_dir = root.path().join("restored");
    let restored = cli(&[
        "restore",
        "--in",
        file.to_str().unwrap(),
        "--data-dir",
        restored_dir.to_str().unwrap(),
    ]);
    let head = between(&backed, "chain head ", " ");
    assert_eq!(head.trim(), between(&restored, "chain head ", " ").trim());
    assert_eq!(head.trim(), between(&checked, "chain head ", ";").trim());
    // Sizes for the disk budget: keys and values, and sled's files.
    let logical: u64 = between(&checked, "; ", " bytes of keys").parse().unwrap();
    let disk: u64 = between(&checked, "values, ", " bytes on disk")
        .parse()
        .unwrap();
    let backup_size = std::fs::metadata(&file).unwrap().len();
    assert!(logical > backup_size, "records plus indexes: {checked}");
    assert!(disk > 0, "{checked}");

    let server = common::Process::spawn(&restored_dir);
    let mut client = common::connect(&server.addr).await;
    let claims = common::all_claims(&mut client, pb::VerificationState::Unspecified).await;
    assert_eq!(claims.len(), 240);
    let resolved = common::all_claims(&mut client, pb::VerificationState::Resolved).await;
    assert_eq!(resolved.len(), 120);
    // Claim 1 is in a cluster of 20 near duplicates.
    let found = client
        .find_similar_claims(pb::FindSimilarClaimsRequest {
            pdq: claims.last().unwrap().image.as_ref().unwrap().pdq.clone(),
            max_distance: Some(31),
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("similar")
        .into_inner();
    assert_eq!(found.matches.len(), 20, "{found:?}");
}
