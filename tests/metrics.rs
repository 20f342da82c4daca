//! `--metrics-listen`: the real binary serves Prometheus metrics on its own
//! port, and a scrape shows the calls just made, by method and code.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::scrape_metrics;
use photoclaim::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The value after `addr=` on the first stderr line containing `marker`.
fn addr_on(lines: &mut impl Iterator<Item = String>, marker: &str) -> String {
    for line in lines.by_ref() {
        if line.contains(marker) {
            return line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .expect("addr= on the line")
                .to_string();
        }
    }
    panic!("the server never logged {marker:?}");
}

/// The value of the sample line starting with `series ` (0 if absent).
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_scrape_counts_calls_by_method_and_code_and_reports_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_photoclaim"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn photoclaim");
    let mut lines = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok);
    let metrics = addr_on(&mut lines, "metrics listening");
    let grpc = addr_on(&mut lines, "photoclaim listening");
    std::thread::spawn(move || lines.for_each(drop));

    let (status, before) = scrape_metrics(&metrics).await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(value(&before, "photoclaim_claims"), 0.0, "{before}");

    let mut client = common::connect(&grpc).await;
    let claim = common::new_claim(&mut client, "UN peacekeepers in Kazakhstan").await;
    common::new_claim(&mut client, "A second claim").await;
    let missing = client
        .get_claim(pb::GetClaimRequest {
            name: "claims/99".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let bad = client
        .get_claim(pb::GetClaimRequest {
            name: "nonsense".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    common::status(&mut client, &claim.name).await;

    let (_, body) = scrape_metrics(&metrics).await;
    let calls = |method: &str, code: &str| {
        value(
            &body,
            &format!("photoclaim_rpc_requests_total{{method=\"{method}\",code=\"{code}\"}}"),
        )
    };
    assert_eq!(calls("RegisterClaim", "OK"), 2.0, "{body}");
    assert_eq!(calls("GetClaim", "NOT_FOUND"), 1.0, "{body}");
    assert_eq!(calls("GetClaim", "INVALID_ARGUMENT"), 1.0, "{body}");
    assert_eq!(calls("GetVerificationStatus", "OK"), 1.0, "{body}");
    assert_eq!(
        value(
            &body,
            "photoclaim_rpc_duration_seconds_count{method=\"RegisterClaim\"}"
        ),
        2.0,
        "{body}"
    );
    assert!(
        value(
            &body,
            "photoclaim_rpc_duration_seconds_bucket{le=\"+Inf\",method=\"GetClaim\"}"
        ) == 2.0
            || value(
                &body,
                "photoclaim_rpc_duration_seconds_bucket{method=\"GetClaim\",le=\"+Inf\"}"
            ) == 2.0,
        "{body}"
    );
    assert_eq!(
        value(&body, "photoclaim_rpc_in_flight{method=\"RegisterClaim\"}"),
        0.0
    );
    assert!(
        value(&body, "photoclaim_flush_duration_seconds_count") >= 2.0,
        "{body}"
    );
    assert_eq!(value(&body, "photoclaim_claims"), 2.0, "{body}");
    assert!(value(&body, "photoclaim_store_bytes") > 0.0, "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");

    let (status, _) = {
        let mut stream = tokio::net::TcpStream::connect(&metrics).await.unwrap();
        stream
            .write_all(b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        (text.lines().next().unwrap_or_default().to_string(), ())
    };
    assert!(status.contains("404"), "{status}");
    let _ = child.kill();
    let _ = child.wait();
}
