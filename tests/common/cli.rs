//! Helpers for the tests that run the real `photoclaim` binary as a user of
//! its command line would: a hermetic environment, outputs read with a
//! timeout, keys made on a data directory, and a server over TLS with a
//! throwaway PKI.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `photoclaim` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_photoclaim");

/// Variables the CLI (or its TLS stack, or its logging) reads; cleared so the
/// caller's shell cannot leak in. Every other `PHOTOCLAIM_*` variable is
/// cleared as well (see [`clean`]).
pub const CLEARED_ENV: [&str; 10] = [
    "PHOTOCLAIM_SERVER",
    "PHOTOCLAIM_TOKEN",
    "PHOTOCLAIM_CA_CERT",
    "PHOTOCLAIM_CLIENT_CERT",
    "PHOTOCLAIM_CLIENT_KEY",
    "PHOTOCLAIM_DATA_DIR",
    "PHOTOCLAIM_LOG_FORMAT",
    "RUST_LOG",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Longest any one CLI command may take before the test gives up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A command for `program` without [`CLEARED_ENV`] or any other
/// `PHOTOCLAIM_*` variable of the caller's environment.
pub fn clean(program: &str) -> Command {
    let mut command = Command::new(program);
    for var in CLEARED_ENV {
        command.env_remove(var);
    }
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PHOTOCLAIM_") {
            command.env_remove(key);
        }
    }
    command
}

/// The `photoclaim` binary with a [`clean`] environment.
pub fn photoclaim() -> Command {
    clean(BIN)
}

/// `photoclaim <args>` with `envs` set; killed (and the test failed) after
/// [`COMMAND_TIMEOUT`].
pub fn run_env(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = photoclaim();
    command.args(args).envs(envs.iter().copied());
    output_within(command, COMMAND_TIMEOUT)
}

/// `photoclaim <args>`, as [`run_env`] with no variable set.
pub fn run(args: &[&str]) -> Output {
    run_env(args, &[])
}

/// `photoclaim claim <args> --server <server>` with `envs` set, as
/// [`run_env`].
pub fn claim_on(server: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut all = vec!["claim"];
    all.extend_from_slice(args);
    all.extend(["--server", server]);
    run_env(&all, envs)
}

/// Runs `command` to its end (stdin closed), reading both outputs; kills it
/// and panics with what it printed if it takes longer than `timeout`.
pub fn output_within(mut command: Command, timeout: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    wait_within(child, timeout, &format!("{command:?}"))
}

/// Waits for `child` (stdout and stderr piped) at most `timeout`; `what`
/// names it in the panic if it does not finish.
pub fn wait_within(mut child: Child, timeout: Duration, what: &str) -> Output {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for command") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = text(&stdout.join().unwrap_or_default());
            let err = text(&stderr.join().unwrap_or_default());
            panic!("{what} did not finish in {timeout:?}\n--- stdout\n{out}\n--- stderr\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Bytes a command printed, as text (invalid UTF-8 replaced).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A command's exit code, stdout and stderr, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Asserts that the command succeeded; returns its stdout.
pub fn succeeded(out: &Output) -> String {
    assert!(out.status.success(), "command failed: {}", show(out));
    text(&out.stdout)
}

/// The first line a successful command printed, such as the name of the
/// claim `claim register` made.
pub fn first_line(out: &Output) -> String {
    succeeded(out)
        .lines()
        .next()
        .expect("a first line")
        .to_string()
}

/// The image URL of the claims registered with [`register_args`] when the
/// claim itself does not matter.
pub const PHOTO_URL: &str = "https://example.org/photo.jpg";

/// The arguments after `photoclaim claim` that register a small English
/// claim saying `text` on the photo at `image_url`.
pub const fn register_args<'a>(text: &'a str, image_url: &'a str) -> [&'a str; 7] {
    [
        "register",
        "--text",
        text,
        "--language",
        "en",
        "--image-url",
        image_url,
    ]
}

/// [`register_args`] of the flood claim that the CLI tests register first.
pub const FLOOD_CLAIM: [&str; 7] =
    register_args("A photo shows a flood", "https://example.org/flood.jpg");

/// The arguments after `photoclaim claim` that attach a statement of the
/// Ministry of Examples, in English, with `stance` and `text`, to `claim`.
pub fn respond_args<'a>(claim: &'a str, stance: &'a str, text: &'a str) -> [&'a str; 12] {
    [
        "respond",
        claim,
        "--organization",
        "Ministry of Examples",
        "--kind",
        "statement",
        "--stance",
        stance,
        "--text",
        text,
        "--language",
        "en",
    ]
}

/// The arguments after `photoclaim claim` that set the verdict on `claim`.
pub fn verdict_args<'a>(
    claim: &'a str,
    rating: &'a str,
    media: &'a str,
    rationale: &'a str,
) -> [&'a str; 8] {
    [
        "verdict",
        claim,
        "--rating",
        rating,
        "--media",
        media,
        "--rationale",
        rationale,
    ]
}

/// Runs `photoclaim keys create` on the (stopped) data directory `dir`, for
/// a key called `name` with `role`; returns the command's output.
pub fn keys_create_on_dir(dir: &Path, name: &str, role: &str) -> Output {
    let dir = dir.to_str().expect("a UTF-8 data directory");
    run(&[
        "keys",
        "create",
        "--name",
        name,
        "--role",
        role,
        "--data-dir",
        dir,
    ])
}

/// Creates a key on the (stopped) data directory `dir`; returns its token.
pub fn create_key(dir: &Path, name: &str, role: &str) -> String {
    succeeded(&keys_create_on_dir(dir, name, role))
        .trim()
        .to_string()
}

/// A CA, and a certificate for `localhost` signed by it, as PEM:
/// (CA certificate, server certificate, server key).
pub fn test_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let params = CertificateParams::new(vec!["localhost".to_string()]).expect("server cert params");
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &*ca).expect("sign server cert");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// Where [`write_test_pki`] put the PEM files of a fresh [`test_pki`].
pub struct PkiFiles {
    /// The CA certificate (`ca.pem`).
    pub ca: PathBuf,
    /// The server's certificate for `localhost` (`server.pem`).
    pub cert: PathBuf,
    /// The server's private key (`server.key`).
    pub key: PathBuf,
}

/// Writes a fresh [`test_pki`] into `dir` as `ca.pem`, `server.pem` and
/// `server.key`.
pub fn write_test_pki(dir: &Path) -> PkiFiles {
    let (ca, cert, key) = test_pki();
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    };
    PkiFiles {
        ca: write("ca.pem", &ca),
        cert: write("server.pem", &cert),
        key: write("server.key", &key),
    }
}

/// `photoclaim serve` over TLS on 127.0.0.1:0, killed when dropped.
pub struct TlsServer {
    child: Child,
    /// The port it listens on, from its `photoclaim listening` log line.
    pub port: String,
}

impl TlsServer {
    /// Starts `photoclaim serve` on `data_dir` with the certificate `cert`
    /// and its key `key`, and waits (at most a minute) until it listens.
    pub fn spawn(data_dir: &Path, cert: &Path, key: &Path) -> Self {
        let mut child = photoclaim()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn photoclaim serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && line.contains("photoclaim listening") {
                    let port = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .and_then(|a| a.rsplit(':').next())
                        .map(str::to_string);
                    let _ = tx.send(port);
                    sent = true;
                }
                // Keep reading, so the server never meets a closed pipe.
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(port)) => TlsServer { child, port },
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the TLS server did not start");
            }
        }
    }

    /// `https://localhost:PORT`, the name its certificate is for.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
