//! What the offline commands leave on disk, with the real binary: backups,
//! exports, restored and compacted data directories are private (files
//! 0600, directories 0700) whatever the umask; a backup ended by SIGTERM
//! removes its partial file and exits with CANCELLED (6); a partial file
//! left by a process that no longer runs (kill -9) is removed by the next
//! backup of the same file, one of a running process is left alone.

#[path = "common/cli.rs"]
mod cli;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli::{show, succeeded, text, wait_within, BIN, COMMAND_TIMEOUT};

/// `photoclaim ARGS` run by bash with `umask 000`: whatever photoclaim
/// creates without an explicit mode comes out world-readable (and
/// writable).
fn permissive(args: &[&str]) -> Command {
    let mut command = cli::clean("bash");
    command
        .args(["-c", "umask 000; exec \"$0\" \"$@\"", BIN])
        .args(args);
    command
}

fn run(command: Command) -> std::process::Output {
    cli::output_within(command, COMMAND_TIMEOUT)
}

/// The permission bits of `path` (not following a symlink).
fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

/// A data directory of `claims` generated claims in `root`/data.
fn generated(root: &Path, claims: u64) -> PathBuf {
    let dir = root.join("data");
    let out = cli::run(&[
        "generate",
        "--data-dir",
        s(&dir),
        "--claims",
        &claims.to_string(),
    ]);
    succeeded(&out);
    dir
}

/// Names in `dir` that start with `prefix`.
fn names_starting(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Starts `photoclaim backup --data-dir DATA --out OUT` and waits until its
/// partial file `.NAME.partial-PID` exists; returns the child and that path.
fn backup_until_partial(data: &Path, out: &Path) -> (Child, PathBuf) {
    let mut command = cli::photoclaim();
    let child = command
        .args(["backup", "--data-dir", s(data), "--out", s(out)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backup");
    let name = out.file_name().unwrap().to_str().unwrap();
    let partial = out.with_file_name(format!(".{name}.partial-{}", child.id()));
    let mut child = child;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while !partial.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let output = wait_within(child, COMMAND_TIMEOUT, "backup");
            panic!(
                "the backup ended ({status}) before its partial file {} was seen: {}",
                partial.display(),
                show(&output)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no partial file {}",
            partial.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    (child, partial)
}

#[test]
fn exports_backups_and_new_data_directories_are_private_under_a_permissive_umask() {
    let root = tempfile::tempdir().unwrap();
    let data = generated(root.path(), 2000);

    let export = root.path().join("archive.jsonl");
    let out = run(permissive(&[
        "export",
        "--data-dir",
        s(&data),
        "--out",
        s(&export),
    ]));
    succeeded(&out);
    assert_eq!(mode(&export), 0o600, "export file");

    let backup = root.path().join("photoclaim.backup");
    let out = run(permissive(&[
        "backup",
        "--data-dir",
        s(&data),
        "--out",
        s(&backup),
    ]));
    succeeded(&out);
    assert_eq!(mode(&backup), 0o600, "backup file");

    // A file written over an earlier, world-readable one is private too.
    std::fs::set_permissions(&export, std::fs::Permissions::from_mode(0o644)).unwrap();
    succeeded(&run(permissive(&[
        "export",
        "--data-dir",
        s(&data),
        "--out",
        s(&export),
    ])));
    assert_eq!(mode(&export), 0o600, "export file written over a 0644 one");

    let restored = root.path().join("restored");
    let out = run(permissive(&[
        "restore",
        "--in",
        s(&backup),
        "--data-dir",
        s(&restored),
    ]));
    succeeded(&out);
    assert_eq!(mode(&restored), 0o700, "restored data directory");

    // compact into an existing, empty, world-readable directory: it is
    // replaced by the private one.
    let compacted = root.path().join("compacted");
    std::fs::create_dir(&compacted).unwrap();
    std::fs::set_permissions(&compacted, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(permissive(&[
        "compact",
        "--data-dir",
        s(&data),
        "--out",
        s(&compacted),
    ]));
    succeeded(&out);
    assert_eq!(mode(&compacted), 0o700, "compacted data directory");

    // Nothing temporary is left beside them.
    assert_eq!(
        names_starting(root.path(), "."),
        Vec::<String>::new(),
        "hidden leftovers"
    );
}

#[test]
fn sigterm_during_a_backup_removes_its_partial_file_and_exits_cancelled() {
    let root = tempfile::tempdir().unwrap();
    let data = generated(root.path(), 2000);
    let out_file = root.path().join("out.backup");
    let (child, partial) = backup_until_partial(&data, &out_file);
    let pid = child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let output = wait_within(child, COMMAND_TIMEOUT, "backup after SIGTERM");
    assert_eq!(output.status.code(), Some(6), "{}", show(&output));
    let expected = format!(
        "error: CANCELLED: backup interrupted by SIGTERM, {} not written",
        out_file.display()
    );
    assert!(
        text(&output.stderr).contains(&expected),
        "{}",
        show(&output)
    );
    assert!(
        !partial.exists(),
        "partial file left: {}",
        partial.display()
    );
    assert!(!out_file.exists(), "the backup was written");
    assert_eq!(
        names_starting(root.path(), ".out.backup"),
        Vec::<String>::new()
    );
}

#[test]
fn a_partial_file_of_a_killed_backup_is_removed_by_the_next_one_and_a_running_ones_is_kept() {
    let root = tempfile::tempdir().unwrap();
    let data = generated(root.path(), 2000);
    let out_file = root.path().join("out.backup");

    // kill -9 leaves the partial file behind.
    let (mut child, stale) = backup_until_partial(&data, &out_file);
    child.kill().unwrap();
    child.wait().unwrap(); // reaped: /proc/PID is gone
    assert!(stale.exists(), "kill -9 left no partial file");
    assert!(!out_file.exists());

    // One of a process that runs (this test), and one of another file.
    let live = root
        .path()
        .join(format!(".out.backup.partial-{}", std::process::id()));
    std::fs::write(&live, b"still being written").unwrap();
    let other = root.path().join(format!(
        ".other.backup.partial-{}",
        stale.to_str().unwrap().rsplit('-').next().unwrap()
    ));
    std::fs::write(&other, b"another file's").unwrap();

    let mut command = cli::photoclaim();
    command.args(["backup", "--data-dir", s(&data), "--out", s(&out_file)]);
    let output = run(command);
    succeeded(&output);
    let stderr = text(&output.stderr);
    assert!(
        !stale.exists(),
        "stale partial file kept: {}",
        show(&output)
    );
    assert!(
        stderr.contains("WARN") && stderr.contains(stale.to_str().unwrap()),
        "no warning naming {}: {}",
        stale.display(),
        show(&output)
    );
    assert_eq!(
        std::fs::read(&live).unwrap(),
        b"still being written",
        "a running process's partial file was touched"
    );
    assert!(other.exists(), "another file's partial file was removed");
    assert!(!stderr.contains(live.to_str().unwrap()), "{stderr}");
    assert_eq!(mode(&out_file), 0o600);
}
