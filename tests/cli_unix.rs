//! The `photoclaim` binary as a Unix user meets it: a closed stdout pipe
//! (`| head`), one error format and one exit-code table for every command
//! against a secured server, the `--server` forms (plaintext, http://,
//! https:// verified by the system trust store), `claim similar` and `claim
//! review` on the reference case, and `claim watch`'s three starting points.
//! Every case runs the real binary against a real server process.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::cli::{
    claim_on, clean, create_key, first_line, keys_create_on_dir, output_within, register_args,
    respond_args, run, run_env, show, succeeded, test_pki, text, verdict_args, wait_within,
    write_test_pki, TlsServer, BIN, COMMAND_TIMEOUT, FLOOD_CLAIM, PHOTO_URL,
};
use common::Process;
use photoclaim::pb;

/// The command failed with exit code `exit` and `error: CODE: ` first on
/// stderr; every stderr line is an `error: CODE: ` or a `hint: ` line and
/// nothing went to stdout. Returns stderr.
fn failed_with(out: &Output, exit: i32, code: &str, what: &str) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(exit), "{what}: {}", show(out));
    assert!(
        stderr.starts_with(&format!("error: {code}: ")),
        "{what}: expected error: {code}: first\n{}",
        show(out)
    );
    assert_error_lines(&stderr, what);
    assert!(out.stdout.is_empty(), "{what}: {}", show(out));
    stderr
}

/// Every line of `stderr` is `error: CODE: ...` (CODE in capitals and
/// underscores) or `hint: ...`, and exactly one is an error line.
fn assert_error_lines(stderr: &str, what: &str) {
    let is_error = |line: &str| {
        line.strip_prefix("error: ")
            .and_then(|rest| rest.split_once(": "))
            .is_some_and(|(code, _)| {
                !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            })
    };
    let mut errors = 0;
    for line in stderr.lines() {
        if is_error(line) {
            errors += 1;
        } else {
            assert!(
                line.starts_with("hint: "),
                "{what}: a stderr line is neither `error: CODE: ` nor `hint: `: {line:?}\n{stderr}"
            );
        }
    }
    assert_eq!(errors, 1, "{what}: one error line expected:\n{stderr}");
}

/// `claim` and then `args`: the whole command line of a `photoclaim claim`
/// subcommand.
fn claim_argv<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut argv = vec!["claim"];
    argv.extend_from_slice(args);
    argv
}

/// The file under tests/data/.
fn data(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
        .to_str()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------------------
// 1. A closed stdout pipe ends a command quietly with exit code 0.

/// Runs `photoclaim <args>` twice through bash: once into `wc -c` (how much
/// it writes in full), once into `head -c 10`, which closes the pipe early.
/// Returns (photoclaim's exit status in the second run, its stderr there,
/// bytes written in the first run).
fn into_head(args: &[&str]) -> (String, String, u64) {
    let work = tempfile::tempdir().expect("temp dir");
    let err_file = work.path().join("stderr");
    let script = r#"
        set -o pipefail
        full=$("$BIN" "$@" 2>/dev/null | wc -c)
        "$BIN" "$@" 2>"$ERR" | head -c 10 >/dev/null
        echo "status=${PIPESTATUS[0]} full=$full"
    "#;
    let mut command = clean("bash");
    command
        .args(["-c", script, "bash"])
        .args(args)
        .env("BIN", BIN)
        .env("ERR", &err_file);
    let out = output_within(command, COMMAND_TIMEOUT);
    let stdout = text(&out.stdout);
    let field = |name: &str| {
        stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("{args:?}: no {name} in bash's output: {}", show(&out)))
            .to_string()
    };
    let status = field("status=");
    let full = field("full=").parse().expect("a byte count");
    let stderr = std::fs::read_to_string(&err_file).unwrap_or_default();
    (status, stderr, full)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_every_long_output_quietly() {
    const PIPE_BUFFER: u64 = 64 * 1024;
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = dir.path().to_str().unwrap().to_string();
    succeeded(&run(&[
        "generate",
        "--data-dir",
        &dir_arg,
        "--claims",
        "1000",
    ]));
    let server = Process::spawn(dir.path());
    let addr = server.addr.clone();

    // One claim with a long history: 200 more responses, 8 writers at once.
    let client = common::connect(&addr).await;
    let mut writers = Vec::new();
    for _ in 0..8 {
        let mut client = client.clone();
        writers.push(tokio::spawn(async move {
            for _ in 0..25 {
                common::attach(
                    &mut client,
                    "claims/1",
                    common::sample_response(pb::Stance::Supports),
                    "",
                )
                .await;
            }
        }));
    }
    for writer in writers {
        writer.await.expect("attach task");
    }

    let cases: [&[&str]; 4] = [
        &["claim", "list", "--json", "--server", &addr],
        &["claim", "list", "--server", &addr],
        &["claim", "history", "claims/1", "--json", "--server", &addr],
        &["export", "--server", &addr, "--out", "-"],
    ];
    let check = |args: &[&str]| {
        let (status, stderr, full) = into_head(args);
        assert!(
            full > PIPE_BUFFER,
            "{args:?} writes only {full} bytes: the pipe would not fill"
        );
        assert_eq!(status, "0", "{args:?}: exit status; stderr:\n{stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.is_empty(), "{args:?} wrote on stderr:\n{stderr}");
    };
    for args in cases {
        check(args);
    }

    // The same archive read from the stopped directory.
    let (exit, log) = server.terminate();
    assert!(exit.success(), "server exit: {log}");
    check(&["export", "--data-dir", &dir_arg, "--out", "-"]);
}

// ---------------------------------------------------------------------------
// 2. One error format and one exit-code table, command by command.

/// Every command that talks to a server, against `server`, as
/// (label, arguments, whether it writes or needs the admin role). `claim`
/// is an existing claim; files go into `out_dir`.
fn client_commands(server: &str, claim: &str, out_dir: &Path) -> Vec<(String, Vec<String>, bool)> {
    let export = out_dir.join("archive.jsonl").to_str().unwrap().to_string();
    let backup = out_dir.join("data.backup").to_str().unwrap().to_string();
    let sha256 = "ab".repeat(32);
    let cases: Vec<(&str, Vec<&str>, bool)> = vec![
        ("claim register", claim_argv(&FLOOD_CLAIM), true),
        ("claim show", vec!["claim", "show", claim], false),
        ("claim list", vec!["claim", "list"], false),
        ("claim status", vec!["claim", "status", claim], false),
        (
            "claim respond",
            claim_argv(&respond_args(claim, "refutes", "No flood.")),
            true,
        ),
        (
            "claim verdict",
            claim_argv(&verdict_args(claim, "false", "original", "Checked.")),
            true,
        ),
        ("claim history", vec!["claim", "history", claim], false),
        ("claim watch", vec!["claim", "watch", "--count", "1"], false),
        (
            "claim similar",
            vec!["claim", "similar", "--sha256", &sha256],
            false,
        ),
        ("claim review", vec!["claim", "review", claim], false),
        ("keys list", vec!["keys", "list"], true),
        ("export", vec!["export", "--out", &export], true),
        ("backup", vec!["backup", "--out", &backup], true),
    ];
    cases
        .into_iter()
        .map(|(label, args, writes)| {
            let mut args: Vec<String> = args.into_iter().map(str::to_string).collect();
            args.extend(["--server".to_string(), server.to_string()]);
            (label.to_string(), args, writes)
        })
        .collect()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn every_failure_prints_its_code_and_exits_by_one_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let admin = create_key(dir.path(), "ops-admin", "admin");
    create_key(dir.path(), "desk-ana", "desk");
    let reader = create_key(dir.path(), "night-reader", "reader");
    let server = Process::spawn(dir.path());
    let addr = server.addr.clone();
    let out_dir = tempfile::tempdir().expect("temp dir");
    let as_admin = |args: &[&str]| run_env(args, &[("PHOTOCLAIM_TOKEN", &admin)]);
    // `photoclaim claim <args> --server ADDR` with the admin's token.
    let claim_as_admin = |args: &[&str]| claim_on(&addr, args, &[("PHOTOCLAIM_TOKEN", &admin)]);
    let claim = first_line(&claim_as_admin(&register_args(
        "A photo shows a flood",
        PHOTO_URL,
    )));
    let commands = client_commands(&addr, &claim, out_dir.path());
    assert_eq!(commands.len(), 13);

    // (a) No token: UNAUTHENTICATED, exit 5, a hint naming both ways to give one.
    for (label, args, _) in &commands {
        let out = run(&strs(args));
        let stderr = failed_with(&out, 5, "UNAUTHENTICATED", label);
        assert!(
            stderr.lines().any(|l| l.starts_with("hint: ")
                && l.contains("PHOTOCLAIM_TOKEN")
                && l.contains("--token")),
            "{label}: no hint naming PHOTOCLAIM_TOKEN and --token:\n{stderr}"
        );
    }
    // (b) A reader's token on the commands that write or need an admin.
    for (label, args, _) in commands.iter().filter(|(_, _, writes)| *writes) {
        let out = run_env(&strs(args), &[("PHOTOCLAIM_TOKEN", &reader)]);
        failed_with(&out, 5, "PERMISSION_DENIED", label);
    }
    let out = run_env(
        &["claim", "show", &claim, "--server", &addr],
        &[("PHOTOCLAIM_TOKEN", &reader)],
    );
    assert!(succeeded(&out).starts_with(&claim), "a reader reads");
    assert!(
        !out_dir.path().join("archive.jsonl").exists()
            && !out_dir.path().join("data.backup").exists(),
        "a refused export or backup left a file"
    );

    // (c) A claim that does not exist: NOT_FOUND, exit 3.
    let missing = client_commands(&addr, "claims/999999", out_dir.path());
    for label in [
        "claim show",
        "claim status",
        "claim respond",
        "claim verdict",
        "claim history",
        "claim review",
    ] {
        let args = &missing.iter().find(|(l, _, _)| l == label).unwrap().1;
        let out = as_admin(&strs(args));
        let stderr = failed_with(&out, 3, "NOT_FOUND", label);
        assert!(stderr.contains("claims/999999"), "{label}: {stderr}");
    }

    // (d) Bad input refused by the server, reworded with the flag that set it.
    let bad: [(&str, Vec<&str>, &str); 3] = [
        (
            "a bad --language",
            vec![
                "claim",
                "register",
                "--text",
                "t",
                "--language",
                "not a language!!",
                "--image-url",
                "https://example.org/p.jpg",
            ],
            "--language: ",
        ),
        (
            "no image",
            vec!["claim", "register", "--text", "t", "--language", "en"],
            "--image-url, --image-sha256 or --image-file: ",
        ),
        (
            "a bad --source-url",
            [
                &claim_argv(&respond_args(&claim, "refutes", "No flood."))[..],
                &["--source-url", "not a url"],
            ]
            .concat(),
            "--source-url: ",
        ),
    ];
    for (label, mut args, flag) in bad {
        args.extend(["--server", &addr]);
        let out = as_admin(&args);
        let stderr = failed_with(&out, 2, "INVALID_ARGUMENT", label);
        assert!(
            stderr.starts_with(&format!("error: INVALID_ARGUMENT: {flag}")),
            "{label}: the flag is not named first:\n{stderr}"
        );
    }

    // (e) Conflicts: a stale etag, an unresolved review, a taken key name,
    // a data directory the server holds.
    let status: serde_json::Value =
        serde_json::from_str(&succeeded(&claim_as_admin(&["status", &claim, "--json"])))
            .expect("status --json");
    let stale = status["etag"].as_str().expect("etag").to_string();
    succeeded(&claim_as_admin(&respond_args(
        &claim,
        "supports",
        "It flooded.",
    )));
    let out = claim_as_admin(
        &[
            &verdict_args(&claim, "accurate", "original", "Checked.")[..],
            &["--etag", &stale],
        ]
        .concat(),
    );
    failed_with(&out, 4, "ABORTED", "a stale --etag");
    let out = claim_as_admin(&["review", &claim]);
    let stderr = failed_with(
        &out,
        4,
        "FAILED_PRECONDITION",
        "review of an unresolved claim",
    );
    assert!(stderr.contains("\nhint: "), "{stderr}");
    let out = as_admin(&[
        "keys", "create", "--name", "desk-ana", "--role", "desk", "--server", &addr,
    ]);
    failed_with(&out, 4, "ALREADY_EXISTS", "keys create with a taken name");
    let dir_arg = dir.path().to_str().unwrap();
    let out = keys_create_on_dir(dir.path(), "someone", "desk");
    failed_with(
        &out,
        4,
        "FAILED_PRECONDITION",
        "keys create on a held data directory",
    );

    // (f) Nothing listens: UNAVAILABLE, exit 6, "connection refused".
    for (label, args, _) in client_commands("127.0.0.1:1", &claim, out_dir.path()) {
        let out = as_admin(&strs(&args));
        let stderr = failed_with(&out, 6, "UNAVAILABLE", &label);
        assert!(stderr.contains("connection refused"), "{label}: {stderr}");
    }

    // A data directory that does not exist: NOT_FOUND, exit 3.
    let out = run(&["keys", "list", "--data-dir", "/nonexistent/photoclaim-data"]);
    failed_with(&out, 3, "NOT_FOUND", "keys list --data-dir /nonexistent");

    // `check` on the stopped directory: fine, then damaged (exit 8).
    let (exit, log) = server.terminate();
    assert!(exit.success(), "server exit: {log}");
    let out = run(&["check", "--data-dir", dir_arg]);
    assert!(succeeded(&out).starts_with("ok "), "{}", show(&out));
    {
        use prost::Message;
        let db = sled::open(dir.path()).expect("open the stopped directory with sled");
        let claims = db.open_tree("claims").unwrap();
        let key = 1u64.to_be_bytes();
        let record = claims.get(key).unwrap().expect("claims/1 is stored");
        let mut stored = photoclaim::domain::Claim::decode(record.as_ref()).unwrap();
        stored.claim_text = "A photo shows a drought".into();
        claims.insert(key, stored.encode_to_vec()).unwrap();
        db.flush().unwrap();
    }
    let out = run(&["check", "--data-dir", dir_arg]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{}", show(&out));
    assert!(stderr.starts_with("error: DATA_LOSS: "), "{}", show(&out));
    assert_error_lines(&stderr, "check");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("PROBLEM claims/1") && stdout.contains("FAILED"),
        "{}",
        show(&out)
    );
}

// ---------------------------------------------------------------------------
// 3. --server as people type it.

#[test]
fn server_is_taken_as_host_port_or_url_and_https_uses_the_system_trust_store() {
    // Plaintext, as HOST:PORT and as an http:// URL.
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Process::spawn(dir.path());
    let registered = claim_on(&server.addr, &FLOOD_CLAIM, &[]);
    assert_eq!(succeeded(&registered).lines().next(), Some("claims/1"));
    let url = format!("http://{}", server.addr);
    let listed = succeeded(&run(&["claim", "list", "--server", &url]));
    assert!(
        listed.lines().any(|l| l.starts_with("claims/1 ")),
        "{listed}"
    );
    drop(server);

    // A name that does not resolve.
    let out = run(&["claim", "list", "--server", "nosuchhost.invalid:50051"]);
    let stderr = failed_with(&out, 6, "UNAVAILABLE", "an unresolvable host");
    assert!(stderr.contains("no such host"), "{stderr}");

    // https://, verified against SSL_CERT_FILE's CA without --ca-cert.
    let work = tempfile::tempdir().expect("temp dir");
    let pki = write_test_pki(work.path());
    let (other_ca, _, _) = test_pki();
    let other_ca_path = work.path().join("other-ca.pem");
    std::fs::write(&other_ca_path, other_ca).expect("write PEM");
    let empty_dir = work.path().join("no-certs");
    std::fs::create_dir(&empty_dir).unwrap();
    let tls = TlsServer::spawn(&work.path().join("data"), &pki.cert, &pki.key);
    let url = tls.url();
    // `photoclaim claim <args> --server URL` with `ca` as the system's trust store.
    let trusting = |ca: &Path, args: &[&str]| {
        claim_on(
            &url,
            args,
            &[
                ("SSL_CERT_FILE", ca.to_str().unwrap()),
                ("SSL_CERT_DIR", empty_dir.to_str().unwrap()),
            ],
        )
    };
    let registered = trusting(&pki.ca, &FLOOD_CLAIM);
    assert_eq!(succeeded(&registered).lines().next(), Some("claims/1"));
    let listed = succeeded(&trusting(&pki.ca, &["list"]));
    assert!(
        listed.lines().any(|l| l.starts_with("claims/1 ")),
        "{listed}"
    );

    let out = trusting(&other_ca_path, &["list"]);
    let stderr = failed_with(&out, 6, "UNAVAILABLE", "https with an unrelated CA");
    assert!(stderr.contains("TLS"), "{stderr}");
}

// ---------------------------------------------------------------------------
// 4. claim similar and claim review on the reference case.

/// `RESPONDER_ROLE_INTERNATIONAL_ORGANIZATION` -> `international-organization`.
fn flag_word(enum_name: &str, prefix: &str) -> String {
    enum_name
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{enum_name} lacks {prefix}"))
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// The row of `claim` in `claim similar`'s table: (distance, exact).
fn similar_row(table: &str, claim: &str) -> (u32, String) {
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(claim))
        .unwrap_or_else(|| panic!("{claim} is not listed:\n{table}"));
    let fields: Vec<&str> = row.split_whitespace().collect();
    (
        fields[1].parse().expect("a distance"),
        fields[2].to_string(),
    )
}

fn sha256_hex(path: &str) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).expect("read image");
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn similar_and_review_on_the_reference_case() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Process::spawn(dir.path());
    let addr = server.addr.as_str();
    let claim_cmd = |args: &[&str]| claim_on(addr, args, &[]);
    let case = common::kazbat();
    let image = &case["image"];
    let original = data("pdq/bridge-mods/aaa-orig.jpg");

    // Both claims, on the photo's bytes.
    let mut names = Vec::new();
    for (i, claim) in case["claims"].as_array().unwrap().iter().enumerate() {
        let out = succeeded(&claim_cmd(&[
            "register",
            "--text",
            claim["claim_text"].as_str().unwrap(),
            "--claimant",
            claim["claimant"].as_str().unwrap(),
            "--language",
            claim["language"].as_str().unwrap(),
            "--image-file",
            &original,
            // Where the photo was first published: the original context a
            // DECONTEXTUALIZED verdict needs (the pre-publication checks).
            "--image-url",
            image["source_url"].as_str().unwrap(),
            "--credit",
            image["credit"].as_str().unwrap(),
            "--publisher",
            image["publisher"].as_str().unwrap(),
            "--published",
            image["published_time"].as_str().unwrap(),
            "--location",
            image["location"].as_str().unwrap(),
            "--caption",
            image["caption"].as_str().unwrap(),
        ]));
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.trim_start().strip_prefix(name))
                .map(str::trim)
                .unwrap_or_else(|| panic!("register printed no {name:?} line:\n{out}"))
                .to_string()
        };
        let quality = field("pdq quality:");
        assert!(quality.ends_with("of 100"), "{out}");
        let size = field("image size:");
        assert!(size.contains(" x ") && size.ends_with("pixels"), "{out}");
        assert_eq!(field("image format:"), "jpeg", "{out}");
        if i == 1 {
            assert!(out.contains("same image (1):"), "{out}");
        }
        names.push(out.lines().next().unwrap().to_string());
    }
    let un_claim = names[0].clone();

    // A near duplicate: listed, not exact, within the default distance.
    let table = succeeded(&claim_cmd(&[
        "similar",
        "--image-file",
        &data("pdq/bridge-mods/blur-a-little.jpg"),
    ]));
    assert!(
        table.starts_with("NAME") && table.contains("DISTANCE") && table.contains("EXACT"),
        "{table}"
    );
    for name in &names {
        let (distance, exact) = similar_row(&table, name);
        assert_eq!(exact, "no", "{table}");
        assert!(distance <= 31, "{table}");
    }
    // The same file, by its SHA-256: exact, distance 0.
    let sha256 = sha256_hex(&original);
    let table = succeeded(&claim_cmd(&["similar", "--sha256", &sha256]));
    for name in &names {
        assert_eq!(similar_row(&table, name), (0, "yes".to_string()), "{table}");
    }
    let reply: serde_json::Value = serde_json::from_str(&succeeded(&claim_cmd(&[
        "similar", "--sha256", &sha256, "--json",
    ])))
    .expect("similar --json is JSON");
    let matches = reply["matches"].as_array().expect("matches");
    assert_eq!(matches.len(), 2, "{reply}");
    assert!(matches.iter().all(|m| m["exact"] == true), "{reply}");

    // Not resolved yet: nothing to publish.
    let out = claim_cmd(&["review", &un_claim]);
    failed_with(&out, 4, "FAILED_PRECONDITION", "review before the verdict");

    // The responses on the deployment claim, then its verdict.
    let mut response_names = std::collections::HashMap::new();
    for response in case["official_responses"].as_array().unwrap() {
        let applies = response["applies_to"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "un-deployment");
        if !applies {
            continue;
        }
        let responder = &response["responder"];
        let role = flag_word(responder["role"].as_str().unwrap(), "RESPONDER_ROLE_");
        let kind = flag_word(response["kind"].as_str().unwrap(), "RESPONSE_KIND_");
        let stance = flag_word(
            response["stance"]["un-deployment"].as_str().unwrap(),
            "STANCE_",
        );
        let mut args = vec![
            "respond",
            &un_claim,
            "--organization",
            responder["organization"].as_str().unwrap(),
            "--role",
            &role,
            "--kind",
            &kind,
            "--stance",
            &stance,
            "--text",
            response["text"].as_str().unwrap(),
            "--language",
            response["language"].as_str().unwrap(),
        ];
        if let Some(person) = responder["person"].as_str() {
            args.extend(["--person", person]);
        }
        if let Some(issued) = response["issue_time"].as_str() {
            args.extend(["--issued", issued]);
        }
        let in_reply_to: Option<&String> = response["in_reply_to"]
            .as_str()
            .map(|key| &response_names[key]);
        if let Some(name) = in_reply_to {
            args.extend(["--in-reply-to", name]);
        }
        let out = succeeded(&claim_cmd(&args));
        let name = out.lines().next().unwrap().to_string();
        response_names.insert(response["key"].as_str().unwrap().to_string(), name);
    }
    let verdict = &case["claims"][0]["expected_verdict"];
    let rationale = verdict["rationale"].as_str().unwrap();
    succeeded(&claim_cmd(&[
        "verdict",
        &un_claim,
        "--rating",
        &flag_word(verdict["claim_rating"].as_str().unwrap(), "CLAIM_RATING_"),
        "--media",
        &flag_word(
            verdict["media_authenticity"].as_str().unwrap(),
            "MEDIA_AUTHENTICITY_",
        ),
        "--rationale",
        rationale,
    ]));

    // On stdout: ClaimReview, then MediaReview.
    let printed = succeeded(&claim_cmd(&["review", &un_claim]));
    assert!(printed.contains("\"@type\": \"ClaimReview\""), "{printed}");
    assert!(printed.contains("\"MediaReview\""), "{printed}");
    let documents: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&printed)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("review prints JSON documents: {e}\n{printed}"));
    assert_eq!(documents.len(), 2, "{printed}");
    let claim_review = &documents[0];
    assert_eq!(claim_review["@type"], "ClaimReview");
    assert_eq!(
        claim_review["claimReviewed"],
        case["claims"][0]["claim_text"]
    );
    assert_eq!(claim_review["reviewRating"]["alternateName"], "False");
    assert_eq!(claim_review["reviewBody"], rationale);
    let media_review = &documents[1];
    assert_eq!(media_review["@type"], "MediaReview");
    assert!(
        media_review["mediaAuthenticityCategory"]
            .as_str()
            .is_some_and(|c| c.contains("DecontextualizedContent")),
        "{media_review}"
    );
    assert!(
        media_review.to_string().contains(&sha256),
        "the photo's sha256: {media_review}"
    );

    // --out DIR: both files, their paths on stdout.
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out_arg = out_dir.path().to_str().unwrap();
    let paths = succeeded(&claim_cmd(&["review", &un_claim, "--out", out_arg]));
    let stem = un_claim.replace('/', "-");
    let expected = [
        out_dir.path().join(format!("{stem}.claim-review.jsonld")),
        out_dir.path().join(format!("{stem}.media-review.jsonld")),
    ];
    let printed_paths: Vec<PathBuf> = paths.lines().map(PathBuf::from).collect();
    assert_eq!(printed_paths, expected, "{paths}");
    for (path, document) in expected.iter().zip(&documents) {
        let written = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let parsed: serde_json::Value = serde_json::from_str(&written)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        assert_eq!(&parsed, document, "{}", path.display());
    }
    let mut files: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "only the two documents: {files:?}");
}

/// docs/cli.md: `claim similar (--image-file F | --sha256 HEX | --pdq HEX)
/// [--max-distance N]`: the distance (and --limit) go with any of the three.
#[test]
fn similar_takes_max_distance_and_limit_with_an_image() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Process::spawn(dir.path());
    let original = data("pdq/bridge-mods/aaa-orig.jpg");
    let out = run(&[
        "claim",
        "register",
        "--text",
        "Photos show UN peacekeepers in Kazakhstan",
        "--language",
        "en",
        "--image-file",
        &original,
        "--server",
        &server.addr,
    ]);
    let name = first_line(&out);
    let near = data("pdq/bridge-mods/blur-a-little.jpg");
    let sha256 = sha256_hex(&original);
    let cases: [&[&str]; 3] = [
        &["--image-file", &near, "--max-distance", "31"],
        &["--sha256", &sha256, "--limit", "5"],
        &["--image-file", &near, "--include-low-quality"],
    ];
    for flags in cases {
        let mut args = vec!["claim", "similar"];
        args.extend_from_slice(flags);
        args.extend(["--server", &server.addr]);
        let out = run(&args);
        let table = succeeded(&out);
        similar_row(&table, &name);
    }
}

// ---------------------------------------------------------------------------
// 5. claim watch: from now, --from-start, --after CURSOR.

#[test]
fn watch_follows_from_now_replays_from_the_start_or_resumes_after_a_cursor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Process::spawn(dir.path());
    let addr = server.addr.clone();
    let register =
        |text_: &str| first_line(&claim_on(&addr, &register_args(text_, PHOTO_URL), &[]));
    let first = register("watched one");
    let second = register("watched two");
    let cursor_of = |line: &str| line.split_whitespace().next().unwrap().to_string();
    let claim_of = |line: &str| line.split_whitespace().nth(1).unwrap_or("").to_string();

    // --from-start: both stored events, oldest first.
    let out = succeeded(&run(&[
        "claim",
        "watch",
        "--from-start",
        "--count",
        "2",
        "--server",
        &addr,
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(claim_of(lines[0]), first, "{out}");
    assert_eq!(claim_of(lines[1]), second, "{out}");
    assert!(
        lines.iter().all(|l| l.contains("claim-registered")),
        "{out}"
    );
    let (c1, c2) = (cursor_of(lines[0]), cursor_of(lines[1]));
    assert_ne!(c1, c2);

    // --after the first cursor: the second event.
    let out = succeeded(&run(&[
        "claim", "watch", "--after", &c1, "--count", "1", "--server", &addr,
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(cursor_of(lines[0]), c2, "{out}");
    assert_eq!(claim_of(lines[0]), second, "{out}");

    // By default, from now: nothing old; the first event made once it
    // listens. Claims are registered until it has seen one.
    let mut command = clean(BIN);
    let watcher = command
        .args(["claim", "watch", "--count", "1", "--server", &addr])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let watcher_id = watcher.id();
    let mut watcher = Some(watcher);
    std::thread::sleep(Duration::from_secs(1));
    let mut new_claims = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        new_claims.push(register(&format!("watched live {}", new_claims.len() + 1)));
        let poll_until = Instant::now() + Duration::from_secs(2);
        let mut done = false;
        while Instant::now() < poll_until {
            if watcher
                .as_mut()
                .unwrap()
                .try_wait()
                .expect("poll watch")
                .is_some()
            {
                done = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if done || Instant::now() > deadline {
            let what = format!("claim watch (pid {watcher_id})");
            break wait_within(watcher.take().unwrap(), Duration::from_secs(5), &what);
        }
    };
    let stdout = succeeded(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", show(&out));
    let claim = claim_of(lines[0]);
    assert!(
        new_claims.contains(&claim),
        "from now on, the event of a claim registered after it started; got {claim} \
         (new: {new_claims:?})\n{}",
        show(&out)
    );
    assert!(lines[0].contains("claim-registered"), "{stdout}");
    let cursor = cursor_of(lines[0]);
    assert!(cursor != c1 && cursor != c2, "{stdout}");
}
