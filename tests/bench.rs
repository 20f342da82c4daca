//! `photoclaim bench` against the real binary: every RPC of the mix is sent
//! and counted, errors are counted by code and never as throughput, and bad
//! settings are refused. Short runs: these check the load generator's
//! accounting, not the server's speed (that is BENCHMARKS.md's job).

mod common;

use std::process::Command;

use common::{cli, Process};
use photoclaim::pb;
use photoclaim::pb::claim_service_client::ClaimServiceClient;

/// One connection, two in flight, half a second, no warm-up.
const SHORT_RUN: [&str; 8] = [
    "--connections",
    "1",
    "--in-flight",
    "2",
    "--duration",
    "0.5",
    "--warmup",
    "0",
];

/// Runs `photoclaim bench ARGS --json`: (success, parsed stdout, stderr).
fn bench(server: &str, args: &[&str], token: Option<&str>) -> (bool, serde_json::Value, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_photoclaim"));
    command
        .args(["bench", "--server", &format!("http://{server}"), "--json"])
        .args(args)
        .env_remove("PHOTOCLAIM_TOKEN");
    if let Some(token) = token {
        command.env("PHOTOCLAIM_TOKEN", token);
    }
    let out = command.output().expect("run photoclaim bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (out.status.success(), json, stderr)
}

async fn highest_claim_id(addr: &str) -> u64 {
    let mut client = ClaimServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let reply = client
        .list_claims(pb::ListClaimsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    reply
        .claims
        .first()
        .map_or(0, |c| c.name["claims/".len()..].parse().unwrap())
}

#[tokio::test]
async fn every_rpc_of_the_mix_is_measured_after_the_health_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::spawn(dir.path());
    let (ok, report, stderr) = bench(
        &server.addr,
        &[
            "--connections",
            "2",
            "--in-flight",
            "4",
            "--duration",
            "1.5",
            "--warmup",
            "0.2",
            "--prepare",
            "40",
            "--mix",
            "register=1,get=1,status=1,attach=1,verdict=1,similar=1",
            "--fail-on-errors",
        ],
        None,
    );
    assert!(ok, "bench failed: {stderr}");
    assert_eq!(report["connections"], 2);
    assert_eq!(report["in_flight_per_connection"], 4);
    assert_eq!(report["replies_decoded"], false, "skimmed by default");
    assert_eq!(report["prepared"], 40, "{report}");
    assert!(report["claims"].as_u64().unwrap() >= 40);

    let health = &report["baseline"]["rpcs"]["health"];
    assert!(health["ok"].as_u64().unwrap() > 0, "{report}");
    let health_rate = health["per_second"].as_f64().unwrap();
    let seconds = report["mix"]["seconds"].as_f64().unwrap();
    assert_eq!(seconds, 1.5);

    let mix = report["mix"]["rpcs"].as_object().unwrap();
    let mut names: Vec<&str> = mix.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["attach", "get", "register", "similar", "status", "verdict"],
        "exactly the RPCs of the mix"
    );
    for (name, figures) in mix {
        let ok = figures["ok"].as_u64().unwrap();
        assert!(ok > 0, "{name}: nothing succeeded: {report}");
        assert_eq!(figures["errors"], serde_json::json!({}), "{name}: {report}");
        let rate = figures["per_second"].as_f64().unwrap();
        assert!((rate - ok as f64 / seconds).abs() < 1e-6, "{name}");
        let ratio = figures["ratio_to_health"].as_f64().unwrap();
        assert!((ratio - rate / health_rate).abs() < 1e-9, "{name}");
        let p: Vec<f64> = ["p50_ms", "p90_ms", "p99_ms", "max_ms"]
            .iter()
            .map(|k| figures[k].as_f64().unwrap())
            .collect();
        assert!(
            p[0] > 0.0 && p.windows(2).all(|w| w[0] <= w[1]),
            "{name}: {p:?}"
        );
    }

    // What was counted as registered really was: the 40 prepared claims and
    // at least the counted registrations (warm-up ones come on top).
    let registered = mix["register"]["ok"].as_u64().unwrap();
    assert!(highest_claim_id(&server.addr).await >= 40 + registered);
    // Replies built into their message types, as a client would: the same
    // RPCs succeed.
    let mut args = SHORT_RUN.to_vec();
    args.extend([
        "--no-baseline",
        "--mix",
        "register=1,get=1,status=1,attach=1,verdict=1,similar=1",
        "--decode-replies",
        "--fail-on-errors",
    ]);
    let (ok, report, stderr) = bench(&server.addr, &args, None);
    assert!(ok, "bench --decode-replies failed: {stderr}");
    assert_eq!(report["replies_decoded"], true);
    for (name, figures) in report["mix"]["rpcs"].as_object().unwrap() {
        assert!(figures["ok"].as_u64().unwrap() > 0, "{name}: {report}");
    }
    let (ok, out) = {
        drop(server);
        cli(&["check", "--data-dir", dir.path().to_str().unwrap()])
    };
    assert!(ok, "the data the bench wrote checks clean: {out}");
}

#[tokio::test]
async fn refused_calls_are_counted_as_errors_never_as_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let created = Command::new(env!("CARGO_BIN_EXE_photoclaim"))
        .args(["keys", "create", "--name", "dashboard", "--role", "reader"])
        .args(["--data-dir", data_dir])
        .output()
        .unwrap();
    assert!(created.status.success());
    let reader = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    let server = Process::spawn(dir.path());

    let mut args = SHORT_RUN.to_vec();
    args.extend(["--mix", "register=1,health=1"]);
    let (ok, report, stderr) = bench(&server.addr, &args, Some(&reader));
    assert!(ok, "{stderr}");
    let register = &report["mix"]["rpcs"]["register"];
    assert_eq!(register["ok"], 0, "{report}");
    assert_eq!(register["per_second"], 0.0);
    assert!(register["errors"]["PermissionDenied"].as_u64().unwrap() > 0);
    assert!(report["mix"]["rpcs"]["health"]["ok"].as_u64().unwrap() > 0);

    // --fail-on-errors turns counted errors into a failed run.
    let mut failing = args.to_vec();
    failing.push("--fail-on-errors");
    let (ok, report, stderr) = bench(&server.addr, &failing, Some(&reader));
    assert!(!ok, "{report}");
    assert!(stderr.contains("replies were errors"), "{stderr}");

    // Without a token only the (public) health checks succeed.
    let (ok, report, stderr) = bench(&server.addr, &args, None);
    assert!(ok, "{stderr}");
    let register = &report["mix"]["rpcs"]["register"];
    assert_eq!(register["ok"], 0, "{report}");
    assert!(register["errors"]["Unauthenticated"].as_u64().unwrap() > 0);
    assert!(report["baseline"]["rpcs"]["health"]["ok"].as_u64().unwrap() > 0);

    // A read mix on an empty server needs claims the reader may not register.
    let (ok, _, stderr) = bench(&server.addr, &["--mix", "status"], Some(&reader));
    assert!(!ok);
    assert!(
        stderr.contains("preparing claims: RegisterClaim: PermissionDenied"),
        "{stderr}"
    );
    assert_eq!(claims_listed(&server.addr, &reader).await, 0);
}

async fn claims_listed(addr: &str, token: &str) -> u64 {
    let mut client = ClaimServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut request = tonic::Request::new(pb::ListClaimsRequest {
        page_size: 1,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let reply = client.list_claims(request).await.unwrap().into_inner();
    reply.claims.len() as u64
}

#[test]
fn bad_settings_are_refused_naming_the_flag() {
    for (args, expected) in [
        (vec!["--mix", "stats"], "--mix: unknown RPC \"stats\""),
        (vec!["--mix", "get=0"], "--mix: name at least one RPC"),
        (vec!["--connections", "0"], "--connections and --in-flight"),
        (vec!["--duration", "0"], "--duration must be above 0"),
        (vec!["--warmup=-1"], "--warmup must be a number of seconds"),
    ] {
        let mut all = vec!["bench", "--server", "http://127.0.0.1:9"];
        all.extend(args.iter().copied());
        let (ok, out) = cli(&all);
        assert!(!ok, "{args:?} was accepted");
        assert!(out.contains(expected), "{args:?}: {out}");
    }
    let bad_token = Command::new(env!("CARGO_BIN_EXE_photoclaim"))
        .args(["bench", "--server", "http://127.0.0.1:9"])
        .env("PHOTOCLAIM_TOKEN", "line\nbreak")
        .output()
        .unwrap();
    assert!(!bad_token.status.success());
    let text = String::from_utf8_lossy(&bad_token.stderr);
    assert!(text.contains("not a valid header value"), "{text}");
    assert!(
        !text.contains("line\nbreak"),
        "the token is never echoed: {text}"
    );
    let (ok, out) = cli(&["bench", "--server", "http://127.0.0.1:9", "--duration", "1"]);
    assert!(!ok);
    assert!(
        out.contains("cannot connect to http://127.0.0.1:9"),
        "{out}"
    );
}

/// The provenance mixes: registrations sending image bytes (the server
/// decodes, hashes and reads Content Credentials) and similarity searches
/// in one orientation, both measured and error-free.
#[tokio::test]
async fn the_image_and_one_orientation_mixes_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::spawn(dir.path());
    let before = highest_claim_id(&server.addr).await;
    let (ok, report, stderr) = bench(
        &server.addr,
        &[
            "--connections",
            "2",
            "--in-flight",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--prepare",
            "20",
            "--no-baseline",
            "--mix",
            "register-image=1,similar-same-orientation=1",
            "--fail-on-errors",
        ],
        None,
    );
    assert!(ok, "bench failed: {stderr}");
    let mix = report["mix"]["rpcs"].as_object().unwrap();
    for name in ["register-image", "similar-same-orientation"] {
        assert!(mix[name]["ok"].as_u64().unwrap() > 0, "{name}: {report}");
    }
    // Registered with their bytes: the claims carry computed hashes.
    let after = highest_claim_id(&server.addr).await;
    assert!(after > before + 20, "{before} -> {after}");
    let mut client = ClaimServiceClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let claim = client
        .get_claim(pb::GetClaimRequest {
            name: format!("claims/{after}"),
        })
        .await
        .unwrap()
        .into_inner();
    let image = claim.image.unwrap();
    assert_eq!(image.format, "jpeg");
    assert_eq!((image.width, image.height), (640, 480));
}
