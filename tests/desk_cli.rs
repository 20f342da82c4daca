//! The desk CLI (`photoclaim claim ...`) against the real binary serving on
//! 127.0.0.1:0: the README's CLI walkthrough run verbatim, JSON output, bad
//! input, a stale etag, and a secured server.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::cli::{
    claim_on, clean, create_key, first_line, photoclaim, register_args, respond_args, run, run_env,
    show, succeeded, text, verdict_args, write_test_pki, TlsServer, BIN, FLOOD_CLAIM, PHOTO_URL,
};
use common::{all_claims, all_events, all_responses, connect, kazbat, Client, Process};
use photoclaim::pb;

/// A real server on a fresh data directory, and a client of it.
struct Server {
    process: Process,
    client: Client,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir")).await
    }

    async fn start_in(dir: tempfile::TempDir) -> Self {
        let process = Process::spawn(dir.path());
        let client = connect(&process.addr).await;
        Server {
            process,
            client,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.process.addr)
    }

    /// `photoclaim claim <args>` against this server, without a token.
    fn claim(&self, args: &[&str]) -> Output {
        self.claim_with_token(args, None)
    }

    /// `photoclaim claim <args>` against this server (named by
    /// `PHOTOCLAIM_SERVER`), with `token` as `PHOTOCLAIM_TOKEN` if given.
    fn claim_with_token(&self, args: &[&str], token: Option<&str>) -> Output {
        let url = self.url();
        let mut envs = vec![("PHOTOCLAIM_SERVER", url.as_str())];
        if let Some(token) = token {
            envs.push(("PHOTOCLAIM_TOKEN", token));
        }
        let mut all = vec!["claim"];
        all.extend_from_slice(args);
        run_env(&all, &envs)
    }
}

/// The ```sh blocks between `<!-- cli-walkthrough:start -->` and `end`.
fn cli_walkthrough() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let mut inside = false;
    let mut fenced = false;
    let mut script = String::new();
    let mut blocks = 0;
    for line in readme.lines() {
        match line.trim_end() {
            "<!-- cli-walkthrough:start -->" => inside = true,
            "<!-- cli-walkthrough:end -->" => inside = false,
            "```sh" if inside && !fenced => {
                fenced = true;
                blocks += 1;
            }
            "```" if fenced => fenced = false,
            _ if fenced => {
                script.push_str(line);
                script.push('\n');
            }
            _ => {}
        }
    }
    assert!(!fenced && !inside, "the CLI walkthrough is not closed");
    assert!(blocks > 0, "README.md has no CLI walkthrough");
    script
}

/// A small claim registered through the CLI; returns its name.
fn register(server: &Server, text_: &str) -> String {
    first_line(&server.claim(&register_args(text_, PHOTO_URL)))
}

#[tokio::test]
async fn the_readme_cli_walkthrough_records_the_reference_case() {
    let mut server = Server::start().await;
    let work = tempfile::tempdir().expect("temp dir");
    let bin_dir = PathBuf::from(BIN).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = clean("bash")
        .args(["-euo", "pipefail", "-c", &cli_walkthrough()])
        .current_dir(work.path())
        .env("PATH", path)
        .env("PHOTOCLAIM_SERVER", server.url())
        .output()
        .expect("run bash");
    let stdout = succeeded(&out);
    assert!(
        text(&out.stderr).trim().is_empty(),
        "the walkthrough wrote errors: {}",
        show(&out)
    );
    // The desk saw the first claim reported on the second's registration.
    assert!(stdout.contains("same image (1):"), "{stdout}");
    // "Checked before?": both claims, as exact matches of the photos' SHA-256.
    let similar: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("NAME ") || !l.contains("DISTANCE"))
        .skip(1)
        .take(2)
        .collect();
    assert_eq!(similar.len(), 2, "{stdout}");
    for row in &similar {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cells[1..5], ["0", "yes", "identity", "resolved"], "{row}");
    }
    // The review to publish, as JSON-LD.
    assert!(
        stdout.contains("\"@type\": \"ClaimReview\"")
            && stdout.contains("\"@type\": \"MediaReview\""),
        "{stdout}"
    );

    let case = kazbat();
    let client = &mut server.client;
    let claims = all_claims(client, pb::VerificationState::Unspecified).await;
    assert_eq!(claims.len(), 2, "{claims:?}");
    let key_of = |claim: &pb::Claim| {
        case["claims"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["claim_text"] == claim.claim_text.as_str())
            .unwrap_or_else(|| panic!("unexpected claim {:?}", claim.claim_text))
    };
    for claim in &claims {
        let expected = key_of(claim);
        let key = expected["key"].as_str().unwrap();
        assert_eq!(claim.claimant, expected["claimant"].as_str().unwrap());
        assert_eq!(claim.language, "en");
        let image = claim.image.as_ref().expect("image");
        assert_eq!(image.source_url, case["image"]["source_url"]);
        assert_eq!(image.credit, case["image"]["credit"]);
        assert_eq!(image.caption, case["image"]["caption"]);

        let status = claim.verification_status.as_ref().expect("status");
        let verdict = &expected["expected_verdict"];
        assert_eq!(
            status.state,
            pb::VerificationState::Resolved as i32,
            "{key}"
        );
        assert_eq!(
            pb::ClaimRating::try_from(status.claim_rating)
                .unwrap()
                .as_str_name(),
            verdict["claim_rating"]
        );
        assert_eq!(
            pb::MediaAuthenticity::try_from(status.media_authenticity)
                .unwrap()
                .as_str_name(),
            verdict["media_authenticity"]
        );
        assert_eq!(status.rationale, verdict["rationale"].as_str().unwrap());

        // Every response of the case that applies to this claim, with its stance.
        let responses = all_responses(client, &claim.name).await;
        let expected_responses: Vec<&serde_json::Value> = case["official_responses"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["applies_to"].as_array().unwrap().iter().any(|k| k == key))
            .collect();
        assert_eq!(responses.len(), expected_responses.len(), "{key}");
        for (got, want) in responses.iter().zip(&expected_responses) {
            let responder = got.responder.as_ref().unwrap();
            assert_eq!(responder.organization, want["responder"]["organization"]);
            assert_eq!(
                pb::ResponderRole::try_from(responder.role)
                    .unwrap()
                    .as_str_name(),
                want["responder"]["role"]
            );
            assert_eq!(
                responder.person,
                want["responder"]["person"].as_str().unwrap_or_default()
            );
            assert_eq!(
                pb::ResponseKind::try_from(got.kind).unwrap().as_str_name(),
                want["kind"]
            );
            assert_eq!(
                pb::Stance::try_from(got.stance).unwrap().as_str_name(),
                want["stance"][key],
                "{key}: {}",
                want["key"]
            );
            assert_eq!(got.text, want["text"].as_str().unwrap());
            assert_eq!(got.issue_time.is_some(), want.get("issue_time").is_some());
            if want.get("in_reply_to").is_some() {
                assert_eq!(got.in_reply_to, responses[0].name, "replies to the inquiry");
            } else {
                assert!(got.in_reply_to.is_empty());
            }
        }

        // Registration, each attachment, the verdict: in order.
        let events = all_events(client, &claim.name).await;
        let types: Vec<i32> = events.iter().map(|e| e.r#type).collect();
        let mut want = vec![pb::ClaimEventType::ClaimRegistered as i32];
        want.extend(
            expected_responses
                .iter()
                .map(|_| pb::ClaimEventType::OfficialResponseAttached as i32),
        );
        want.push(pb::ClaimEventType::VerdictSet as i32);
        assert_eq!(types, want, "{key}");
    }
}

#[tokio::test]
async fn json_output_is_proto3_json_with_the_expected_fields() {
    let server = Server::start().await;
    let out = succeeded(&server.claim(&[
        "register",
        "--json",
        "--text",
        "A photo shows a flood",
        "--language",
        "en",
        "--tag",
        "flood",
        "--first-seen",
        "2022-01-08T00:00:00Z",
        "--image-url",
        "https://example.org/flood.jpg",
    ]));
    let reply: serde_json::Value = serde_json::from_str(&out).expect("register --json is JSON");
    let name = reply["claim"]["name"]
        .as_str()
        .expect("claim.name")
        .to_string();
    assert_eq!(reply["claim"]["claimText"], "A photo shows a flood");
    assert_eq!(reply["claim"]["tags"], serde_json::json!(["flood"]));
    assert_eq!(reply["claim"]["firstSeenTime"], "2022-01-08T00:00:00Z");
    assert!(reply.get("replayed").is_none(), "a first registration");

    let id = name.trim_start_matches("claims/");
    let shown: serde_json::Value =
        serde_json::from_str(&succeeded(&server.claim(&["show", id, "--json"]))).unwrap();
    assert_eq!(shown["name"], name.as_str());
    assert_eq!(
        shown["verificationStatus"]["state"],
        "VERIFICATION_STATE_UNVERIFIED"
    );
    assert!(shown["etag"].as_str().is_some_and(|e| !e.is_empty()));

    let responded: serde_json::Value = serde_json::from_str(&succeeded(&server.claim(&[
        "--json",
        "respond",
        &name,
        "--organization",
        "Ministry of Examples",
        "--role",
        "government",
        "--kind",
        "statement",
        "--stance",
        "refutes",
        "--text",
        "No flood happened.",
        "--language",
        "en",
    ])))
    .unwrap();
    assert_eq!(responded["stance"], "STANCE_REFUTES");
    assert_eq!(responded["responder"]["role"], "RESPONDER_ROLE_GOVERNMENT");
    assert_eq!(responded["attachedBy"], "anonymous");

    let verdict: serde_json::Value = serde_json::from_str(&succeeded(&server.claim(&[
        "verdict",
        &name,
        "--json",
        "--rating",
        "partly-accurate",
        "--media",
        "edited-or-cropped",
        "--rationale",
        "Cropped.",
    ])))
    .unwrap();
    assert_eq!(verdict["state"], "VERIFICATION_STATE_RESOLVED");
    assert_eq!(verdict["claimRating"], "CLAIM_RATING_PARTLY_ACCURATE");
    assert_eq!(
        verdict["mediaAuthenticity"],
        "MEDIA_AUTHENTICITY_EDITED_OR_CROPPED"
    );

    let listed: serde_json::Value = serde_json::from_str(&succeeded(
        &server.claim(&["list", "--json", "--state", "resolved"]),
    ))
    .unwrap();
    assert_eq!(listed["claims"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["claims"][0]["name"], name.as_str());

    let history: serde_json::Value =
        serde_json::from_str(&succeeded(&server.claim(&["history", &name, "--json"]))).unwrap();
    let types: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "CLAIM_EVENT_TYPE_CLAIM_REGISTERED",
            "CLAIM_EVENT_TYPE_OFFICIAL_RESPONSE_ATTACHED",
            "CLAIM_EVENT_TYPE_VERDICT_SET"
        ]
    );
    assert_eq!(history["events"][0]["sequence"], "1", "int64 as a string");
}

#[tokio::test]
async fn list_pages_through_every_claim_and_limit_stops_early() {
    let server = Server::start().await;
    for i in 0..3 {
        register(&server, &format!("claim number {i}"));
    }
    let all = succeeded(&server.claim(&["list"]));
    assert_eq!(all.lines().filter(|l| l.starts_with("claims/")).count(), 3);
    let limited = server.claim(&["list", "--limit", "2"]);
    let out = succeeded(&limited);
    assert_eq!(out.lines().filter(|l| l.starts_with("claims/")).count(), 2);
    assert!(
        text(&limited.stderr).contains("--limit"),
        "{}",
        show(&limited)
    );
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let mut server = Server::start().await;
    let name = register(&server, "A photo shows a flood");
    let before = common::snapshot(&mut server.client).await;

    // Refused by the CLI before any call: exit 2, the flag named.
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "verdict",
                &name,
                "--rating",
                "maybe",
                "--media",
                "original",
                "--rationale",
                "x",
            ],
            "maybe",
        ),
        (&["show", "claims/abc"], "claims/abc"),
        (&["show", "0"], "claim name"),
        (
            &[
                "respond",
                &name,
                "--organization",
                "UN",
                "--kind",
                "inquiry",
                "--text",
                "t",
                "--language",
                "en",
            ],
            "--stance",
        ),
        (
            &[
                "register",
                "--text",
                "t",
                "--language",
                "en",
                "--first-seen",
                "yesterday",
            ],
            "RFC 3339",
        ),
    ];
    for (args, expected) in cases {
        let out = server.claim(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let stderr = text(&out.stderr);
        // Refused before any call, in the same format as the server's refusals.
        assert!(
            stderr.starts_with("error: INVALID_ARGUMENT: "),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.lines().skip(1).all(|l| l.starts_with("hint: ")),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", show(&out));
    }

    // Refused by the server: its code and message.
    let out = server.claim(&[
        "register",
        "--text",
        "t",
        "--language",
        "not a language",
        "--image-url",
        "https://example.org/p.jpg",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text(&out.stderr).starts_with("error: INVALID_ARGUMENT: --language: "),
        "the field is named by its flag: {}",
        show(&out)
    );
    let out = server.claim(&["status", "claims/999"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        text(&out.stderr).starts_with("error: NOT_FOUND: "),
        "{}",
        show(&out)
    );

    assert_eq!(common::snapshot(&mut server.client).await, before);
}

#[tokio::test]
async fn a_stale_etag_is_reported_and_the_verdict_not_set() {
    let mut server = Server::start().await;
    let name = register(&server, "A photo shows a flood");
    let status: serde_json::Value =
        serde_json::from_str(&succeeded(&server.claim(&["status", &name, "--json"]))).unwrap();
    let stale = status["etag"].as_str().unwrap().to_string();
    // A colleague attaches a response after the etag was read.
    succeeded(&server.claim(&respond_args(&name, "supports", "It flooded.")));

    let verdict = verdict_args(&name, "accurate", "original", "Checked.");
    let out = server.claim(&[&verdict[..], &["--etag", &stale]].concat());
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: ABORTED: "), "{stderr}");
    assert!(stderr.contains("NOT set"), "{stderr}");
    let now = common::status(&mut server.client, &name).await;
    assert_eq!(now.state, pb::VerificationState::InReview as i32);
    assert_eq!(now.claim_rating, pb::ClaimRating::Unspecified as i32);

    // Without --etag the CLI reads the current one, and the verdict lands.
    succeeded(&server.claim(&verdict));
    let now = common::status(&mut server.client, &name).await;
    assert_eq!(now.state, pb::VerificationState::Resolved as i32);
}

#[tokio::test]
async fn a_secured_server_needs_the_token_and_never_sees_it_printed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let desk = create_key(dir.path(), "desk-ana", "desk");
    let reader = create_key(dir.path(), "night-reader", "reader");
    let server = Server::start_in(dir).await;

    let out = server.claim(&["list"]);
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert!(
        text(&out.stderr).starts_with("error: UNAUTHENTICATED: "),
        "{}",
        show(&out)
    );

    let out = server.claim_with_token(&FLOOD_CLAIM, Some(&reader));
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert!(
        text(&out.stderr).starts_with("error: PERMISSION_DENIED: "),
        "{}",
        show(&out)
    );

    let out = server.claim_with_token(&FLOOD_CLAIM, Some(&desk));
    let name = succeeded(&out).lines().next().unwrap().to_string();
    let shown = server.claim_with_token(&["show", &name, "--json"], Some(&reader));
    let claim: serde_json::Value = serde_json::from_str(&succeeded(&shown)).unwrap();
    assert_eq!(claim["name"], name.as_str());

    let history = succeeded(&server.claim_with_token(&["history", &name], Some(&reader)));
    assert!(
        history.contains("desk-ana"),
        "the actor is the key: {history}"
    );

    // A revoked-looking or malformed token is refused without being echoed.
    let bogus = format!("{desk}x");
    let out = server.claim_with_token(&["list"], Some(&bogus));
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    for out in [&out, &shown] {
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        for token in [&desk, &reader, &bogus] {
            let secret = token.rsplit('_').next().unwrap();
            assert!(!all.contains(secret), "a token was printed: {all}");
        }
    }
}

#[tokio::test]
async fn an_unreachable_server_is_reported_as_unavailable() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(&[
        "claim",
        "list",
        "--server",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    assert!(
        text(&out.stderr).starts_with("error: UNAVAILABLE: cannot connect")
            && text(&out.stderr).contains("connection refused"),
        "{}",
        show(&out)
    );
}

#[tokio::test]
async fn an_https_server_is_reached_with_its_ca_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = write_test_pki(dir.path());
    let tls = TlsServer::spawn(&dir.path().join("data"), &pki.cert, &pki.key);
    let url = tls.url();
    let run = |args: &[&str]| claim_on(&url, args, &[]);
    let ca_arg = pki.ca.to_str().unwrap();
    let registered = run(&[&FLOOD_CLAIM[..], &["--ca-cert", ca_arg]].concat());
    let without_ca = run(&["list"]);
    let listed = run(&["list", "--ca-cert", ca_arg]);
    drop(tls);

    assert_eq!(succeeded(&registered).lines().next(), Some("claims/1"));
    assert!(succeeded(&listed).contains("claims/1"));
    // Without --ca-cert the system's trust store is used, which does not
    // hold this test's CA: the handshake fails, and says so.
    assert_eq!(without_ca.status.code(), Some(6), "{}", show(&without_ca));
    assert!(
        text(&without_ca.stderr).contains("TLS handshake"),
        "{}",
        show(&without_ca)
    );
}

#[tokio::test]
async fn an_image_file_is_sent_and_its_earlier_claims_are_shown() {
    use sha2::Digest;
    let server = Server::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let photo = dir.path().join("photo.png");
    let image = image::RgbImage::from_fn(96, 64, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, ((x * y) % 251) as u8])
    });
    image.save(&photo).expect("write PNG");
    let bytes = std::fs::read(&photo).unwrap();
    let sha256: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let photo = photo.to_str().unwrap();

    let first: serde_json::Value = serde_json::from_str(&succeeded(&server.claim(&[
        "register",
        "--json",
        "--text",
        "A photo shows a flood",
        "--language",
        "en",
        "--image-file",
        photo,
    ])))
    .unwrap();
    assert_eq!(first["claim"]["image"]["sha256"], sha256.as_str());
    assert_eq!(first["claim"]["image"]["format"], "png");

    let second = succeeded(&server.claim(&[
        "register",
        "--text",
        "The same photo shows a drought",
        "--language",
        "en",
        "--image-file",
        photo,
    ]));
    let shown = second
        .lines()
        .skip_while(|l| !l.starts_with("same image (1):"))
        .nth(1)
        .unwrap_or_else(|| panic!("no same-image claim listed:\n{second}"));
    assert!(
        shown.contains(first["claim"]["name"].as_str().unwrap()),
        "{shown}"
    );
    assert!(
        shown.contains("exact") && shown.contains("unverified"),
        "{shown}"
    );

    let out = server.claim(&[
        "register",
        "--text",
        "t",
        "--language",
        "en",
        "--image-file",
        "/nonexistent/photo.jpg",
    ]);
    // A file that is not there is NOT_FOUND (exit 3), named by its flag.
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(text(&out.stderr).contains("--image-file"), "{}", show(&out));
}

#[tokio::test]
async fn watch_prints_history_then_live_events_and_stops_after_count() {
    let server = Server::start().await;
    let first = register(&server, "watched one");
    let second = register(&server, "watched two");
    // History: both registrations, each line led by its cursor.
    let out = succeeded(&server.claim(&["watch", "--after", "0", "--count", "2"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with('1') && lines[0].contains(&first),
        "{out}"
    );
    assert!(
        lines[1].starts_with('2') && lines[1].contains(&second),
        "{out}"
    );
    // Live: a watcher started first sees an event made after it.
    let watcher = photoclaim()
        .args(["claim", "watch", "--after", "2", "--count", "1", "--json"])
        .env("PHOTOCLAIM_SERVER", server.url())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let third = register(&server, "watched three");
    let out = watcher
        .wait_with_output()
        .expect("watch exits after one event");
    assert!(out.status.success(), "{}", show(&out));
    let event: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(event["claim"], third.as_str());
    assert_eq!(event["cursor"], "3");
    assert_eq!(event["type"], "CLAIM_EVENT_TYPE_CLAIM_REGISTERED");
    // A cursor the server never issued is refused, exit code 2.
    let out = server.claim(&["watch", "--after", "99"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("OUT_OF_RANGE"), "{}", show(&out));
}

/// `photoclaim reviews import` reports every refused item and imports the
/// others; a second import changes nothing; `claim search` finds claims
/// and imported reviews with the matched words marked, as text and JSON.
#[tokio::test]
async fn reviews_import_and_claim_search_from_the_command_line() {
    let server = Server::start().await;
    let claim = register(&server, "These photos show UN peacekeepers in Almaty");
    let url = server.url();
    const FEED: &str = "tests/data/claimreview/datafeed.json";
    const LINES: &str = "tests/data/claimreview/feed.jsonl";
    let import = |args: &[&str]| {
        let mut all = vec!["reviews", "--server", url.as_str(), "import"];
        all.extend_from_slice(args);
        run(&all)
    };
    let first = import(&[FEED, LINES]);
    let err = text(&first.stderr);
    // Items refused: exit 2 (INVALID_ARGUMENT), each named by file and position.
    assert_eq!(first.status.code(), Some(2), "{}", show(&first));
    assert!(
        err.contains("tests/data/claimreview/datafeed.json: item 2: @type:"),
        "{err}"
    );
    assert!(
        err.contains("tests/data/claimreview/feed.jsonl: item 2: url:"),
        "{err}"
    );
    assert!(
        err.contains("2 created") && err.contains("3 refused"),
        "{err}"
    );
    // The JSON Lines file updated the feed's first review; importing the
    // feed again restores it, and once more changes nothing.
    // (Its NewsArticle is refused each time: exit 2, the reply still printed.)
    assert_eq!(import(&[FEED]).status.code(), Some(2));
    let again = import(&["--json", FEED]);
    assert_eq!(again.status.code(), Some(2), "{}", show(&again));
    let reply: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(reply.get("created"), None, "{reply}");
    assert_eq!(reply.get("updated"), None, "{reply}");
    assert_eq!(reply["unchanged"], 2, "{reply}");

    // Search: the claim and the imported review, with the word marked.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let out = loop {
        let out = server.claim(&["search", "peacekeepers"]);
        let stdout = text(&out.stdout);
        if out.status.success() && stdout.contains(&claim) && stdout.contains("externalReviews/") {
            break stdout;
        }
        assert!(std::time::Instant::now() < deadline, "{}", show(&out));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(out.contains("[peacekeepers]"), "{out}");
    let json =
        succeeded(&server.claim(&["search", "peacekeepers", "--source", "reviews", "--json"]));
    let reply: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let results = reply["results"].as_array().unwrap();
    assert!(!results.is_empty(), "{reply}");
    assert!(
        results.iter().all(|r| r.get("externalReview").is_some()),
        "{reply}"
    );
    // A syntax error is INVALID_ARGUMENT (exit 2) naming the position.
    let bad = server.claim(&["search", "\"blue helmets"]);
    assert_eq!(bad.status.code(), Some(2), "{}", show(&bad));
    assert!(text(&bad.stderr).contains("position 1"), "{}", show(&bad));
}

/// A server started with --no-search keeps no index: SearchClaims is
/// FAILED_PRECONDITION and registrations still work.
#[tokio::test]
async fn search_can_be_turned_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let process = Process::spawn_with(dir.path(), &["--no-search"]);
    let url = format!("http://{}", process.addr);
    let out = run(&["claim", "--server", &url, "search", "peacekeepers"]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("FAILED_PRECONDITION")
            && text(&out.stderr).contains("--no-search"),
        "{}",
        show(&out)
    );
    assert!(!dir.path().join("search-index").exists());
    let mut args = vec!["claim", "--server", &url];
    args.extend(register_args("A claim", PHOTO_URL));
    succeeded(&run(&args));
}

/// docs/provenance.md's worked example: an old photo resurfaces mirrored;
/// `claim similar` finds the original with its orientation and the earliest
/// sighting, `claim check` flags a verdict calling it genuine (exit 1), and
/// the corrected verdict exports.
#[tokio::test]
async fn the_provenance_walkthrough_flags_an_old_photo_called_new() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pdq/bridge-mods");
    let original = fixtures.join("aaa-orig.jpg");
    let mirrored = dir.path().join("bridge-mirrored.jpg");
    image::open(&original)
        .unwrap()
        .fliph()
        .save(&mirrored)
        .unwrap();
    let (original, mirrored) = (original.to_str().unwrap(), mirrored.to_str().unwrap());
    succeeded(&server.claim(&[
        "register",
        "--text",
        "Bridge, May 2011",
        "--language",
        "en",
        "--image-file",
        original,
        "--published",
        "2011-05-04T00:00:00Z",
    ]));
    let second = succeeded(&server.claim(&[
        "register",
        "--text",
        "The bridge attacked this week",
        "--language",
        "en",
        "--image-file",
        mirrored,
        "--first-seen",
        "2022-01-08T00:00:00Z",
        "--event",
        "2022-01-07T00:00:00Z",
    ]));
    assert!(second.contains("mirrored-horizontally"), "{second}");
    let out = server.claim(&["similar", "--image-file", mirrored]);
    let similar = succeeded(&out);
    let notes = similar.clone();
    assert!(
        notes.contains("earliest seen 2011-05-04") && notes.contains("image-published; claims/1"),
        "{}",
        show(&out)
    );
    let row = similar
        .lines()
        .find(|l| l.starts_with("claims/1 "))
        .expect("claims/1 listed");
    assert!(row.contains("mirrored-horizontally"), "{row}");
    let same = succeeded(&server.claim(&[
        "similar",
        "--image-file",
        mirrored,
        "--same-orientation-only",
    ]));
    assert!(!same.contains("claims/1 "), "{same}");

    let out = server.claim(&[
        "check",
        "claims/2",
        "--rating",
        "accurate",
        "--media",
        "original",
        "--rationale",
        "looks right",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stdout).contains("ERROR IMAGE_OLDER_THAN_EVENT"),
        "{}",
        show(&out)
    );
    // Half a verdict is refused naming the flag (clap: exit 2).
    let out = server.claim(&["check", "claims/2", "--rating", "accurate"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));

    // Recorded anyway by `claim verdict`, with the finding shown; the export refused.
    let verdict = succeeded(&server.claim(&[
        "verdict",
        "claims/2",
        "--rating",
        "accurate",
        "--media",
        "original",
        "--rationale",
        "looks right",
    ]));
    assert!(
        verdict.contains("ERROR IMAGE_OLDER_THAN_EVENT"),
        "{verdict}"
    );
    let out = server.claim(&["review", "claims/2"]);
    // FAILED_PRECONDITION: a conflict, exit 4.
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(text(&out.stderr).contains("--force"), "{}", show(&out));
    succeeded(&server.claim(&["review", "claims/2", "--force"]));

    succeeded(&server.claim(&[
        "verdict",
        "claims/2",
        "--rating",
        "false",
        "--media",
        "decontextualized",
        "--rationale",
        "Published in May 2011: https://example.org/bridge-2011",
    ]));
    let check = succeeded(&server.claim(&["check", "claims/2"]));
    assert!(
        check.contains("nothing in the record contradicts the verdict"),
        "{check}"
    );
    let review = succeeded(&server.claim(&["review", "claims/2"]));
    assert!(review.contains("ClaimReview"), "{review}");
}
