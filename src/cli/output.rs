//! What every `photoclaim` subcommand shares with the person at the
//! terminal: one error type printed one way with one exit-code table
//! ([`Failure`], [`ExitClass`]), standard output that ends the command
//! quietly when the reader goes away ([`outln!`](crate::outln)), progress
//! bars that log lines do not overwrite ([`progress`], [`LogWriter`]).
//!
//! Errors print as `error: CODE: message` on standard error, CODE being a
//! gRPC code name (also for failures that never reached a server), followed
//! by `hint: ...` lines where a next step helps.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tonic::Code;

use crate::client::ConnectError;
use crate::store::OpenError;

/// Exit codes of every subcommand, one per class of failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitClass {
    /// 1: anything else (INTERNAL, UNKNOWN, DATA_LOSS from a server, a
    /// local file that cannot be written, ...).
    Other = 1,
    /// 2: the request is wrong: bad flags, INVALID_ARGUMENT, OUT_OF_RANGE.
    Usage = 2,
    /// 3: NOT_FOUND (a claim, a key, a data directory, an input file).
    NotFound = 3,
    /// 4: a conflict: ABORTED (stale etag), ALREADY_EXISTS,
    /// FAILED_PRECONDITION (e.g. a data directory a server holds).
    Conflict = 4,
    /// 5: UNAUTHENTICATED or PERMISSION_DENIED.
    Access = 5,
    /// 6: the server cannot be reached or is overloaded: UNAVAILABLE,
    /// RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, CANCELLED.
    Unavailable = 6,
    /// 7: UNIMPLEMENTED (the server does not offer this call).
    Unimplemented = 7,
    /// 8: `photoclaim check` found problems in the data directory.
    Problems = 8,
}

impl ExitClass {
    /// The class of a gRPC status code.
    pub fn of(code: Code) -> Self {
        use Code::*;
        match code {
            InvalidArgument | OutOfRange => Self::Usage,
            NotFound => Self::NotFound,
            Aborted | FailedPrecondition | AlreadyExists => Self::Conflict,
            Unauthenticated | PermissionDenied => Self::Access,
            Unavailable | ResourceExhausted | DeadlineExceeded | Cancelled => Self::Unavailable,
            Unimplemented => Self::Unimplemented,
            _ => Self::Other,
        }
    }
}

/// `NOT_FOUND` for [`Code::NotFound`]: the spelling of the gRPC spec,
/// grpcurl and every other client (one table, the metrics').
pub fn code_name(code: Code) -> &'static str {
    crate::metrics::code_name(code as i32)
}

/// How to give a token, for a command that was refused without one (or
/// with one the server does not know).
pub const TOKEN_HINT: &str = "give an API key's token: export PHOTOCLAIM_TOKEN=<token>, or pass \
     --token <token> (an admin makes keys with `photoclaim keys create`)";

/// A failed command: its code, what to print, and how to exit.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The gRPC code (the server's, or the closest one for a local failure).
    pub code: Code,
    /// One line, in the user's words where we can.
    pub message: String,
    /// Next steps, printed as `hint: ...` lines.
    pub hints: Vec<String>,
    /// The exit code; by default the class of `code`.
    pub exit: ExitClass,
}

impl Failure {
    /// A failure with `code` and `message`, exiting by `code`'s class.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            hints: Vec::new(),
            exit: ExitClass::of(code),
        }
    }

    /// Bad flags or input: INVALID_ARGUMENT, exit 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    /// A local failure of no better class (a file that cannot be written):
    /// UNKNOWN, exit 1.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(Code::Unknown, message)
    }

    /// `photoclaim check` found damage: DATA_LOSS, exit 8.
    pub fn problems(message: impl Into<String>) -> Self {
        Failure {
            exit: ExitClass::Problems,
            ..Self::new(Code::DataLoss, message)
        }
    }

    /// Adds a `hint:` line.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// The message with `context: ` in front (e.g. what was not written).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Prints the failure on standard error and returns its exit code.
    pub fn report(&self) -> ExitCode {
        let mut err = io::stderr().lock();
        // Nothing useful is left to do if standard error is gone too.
        let _ = writeln!(err, "error: {self}");
        for hint in &self.hints {
            let _ = writeln!(err, "hint: {hint}");
        }
        ExitCode::from(self.exit as u8)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", code_name(self.code), self.message)
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        let failure = Failure::new(status.code(), status.message());
        match status.code() {
            Code::Unauthenticated => failure.hint(TOKEN_HINT),
            Code::PermissionDenied => failure.hint(
                "the key's role does not allow this call: use a key with a higher role \
                 (`photoclaim keys list` shows each key's role)",
            ),
            _ => failure,
        }
    }
}

impl From<crate::domain::Error> for Failure {
    fn from(err: crate::domain::Error) -> Self {
        use crate::domain::Error;
        let code = match &err {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) | Error::RequestIdReused { .. } => Code::AlreadyExists,
            Error::Aborted(_) => Code::Aborted,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::OutOfRange(_) => Code::OutOfRange,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Unavailable(_) => Code::Unavailable,
            Error::DataLoss(_) => Code::DataLoss,
            Error::Internal(_) => Code::Internal,
        };
        Failure::new(code, err.to_string())
    }
}

impl From<OpenError> for Failure {
    fn from(err: OpenError) -> Self {
        match err {
            OpenError::Locked(_) => Failure::new(Code::FailedPrecondition, err.to_string()).hint(
                "while a server runs on it, work through the server: add --server HOST:PORT \
                 (and PHOTOCLAIM_TOKEN=<an admin key's token>)",
            ),
            OpenError::TooNew { .. } => Failure::new(Code::FailedPrecondition, err.to_string()),
            OpenError::Other { .. } => Failure::other(err.to_string()),
        }
    }
}

impl From<ConnectError> for Failure {
    fn from(err: ConnectError) -> Self {
        match err {
            ConnectError::Settings(why) => Failure::usage(why),
            ConnectError::Unreachable(why) => Failure::new(Code::Unavailable, why),
        }
    }
}

/// Writes to standard output; a reader that went away (`| head`) ends the
/// process quietly with exit code 0, any other write error with exit code 1.
pub fn print_out(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(err) = out.write_fmt(args) {
        stdout_failed(err);
    }
}

/// Ends the process after a failed write to standard output: quietly when
/// the reader closed the pipe, since it has all it asked for.
pub fn stdout_failed(err: io::Error) -> ! {
    if err.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    let _ = Failure::other(format!("cannot write to standard output: {err}")).report();
    std::process::exit(ExitClass::Other as i32);
}

/// `println!` through [`print_out`]: never panics on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::cli::print_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::print_out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` through [`print_out`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::print_out(format_args!($($arg)*)) };
}

/// The progress bar on screen, if any: [`LogWriter`] hides it while a log
/// line is written so that the line does not land inside the bar.
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A progress bar on standard error for a long command: `total` units
/// (claims, entries, bytes) if known, else a counter with a rate. Hidden
/// unless standard error is a terminal (pipes and log files stay clean).
/// Call [`Progress::finish`] when done.
pub fn progress(total: Option<u64>, unit: &'static str) -> Progress {
    let target = if io::IsTerminal::is_terminal(&io::stderr()) {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(total, target);
    let progress = Progress { bar, unit };
    progress.style(total.is_some());
    progress.bar.enable_steady_tick(Duration::from_millis(200));
    *ACTIVE_BAR.lock().unwrap_or_else(|p| p.into_inner()) = Some(progress.bar.clone());
    progress
}

/// A progress bar from [`progress`].
pub struct Progress {
    /// The bar; clones share it.
    bar: ProgressBar,
    /// What is counted, e.g. "claims".
    unit: &'static str,
}

impl Progress {
    /// A bar with total, rate and ETA when the total is known, else a
    /// spinner with the count, rate and time so far.
    fn style(&self, with_total: bool) {
        let unit = self.unit;
        let template = if with_total {
            format!("{{bar:30}} {{human_pos}}/{{human_len}} {unit}, {{rate}}, {{eta}} left {{msg}}")
        } else {
            format!("{{spinner}} {{human_pos}} {unit}, {{rate}}, {{elapsed}} {{msg}}")
        };
        if let Ok(style) = ProgressStyle::with_template(&template) {
            let style = style.progress_chars("=> ").with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn fmt::Write| {
                    let _ = write!(w, "{}/s", indicatif::HumanCount(state.per_sec() as u64));
                },
            );
            self.bar.set_style(style);
        }
    }

    /// Sets the count done so far.
    pub fn set(&self, done: u64) {
        self.bar.set_position(done);
    }

    /// Adds to the count done.
    pub fn add(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Runs `f` (which prints) with the bar hidden.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Shows `message` beside the bar (e.g. the phase of a check).
    pub fn message(&self, message: &'static str) {
        self.bar.set_message(message);
    }

    /// Sets the total once it is known: the counter becomes a bar with an ETA.
    pub fn set_total(&self, total: u64) {
        if self.bar.length().is_none() {
            self.style(true);
        }
        self.bar.set_length(total);
    }

    /// Removes the bar from the screen.
    pub fn finish(self) {
        self.bar.finish_and_clear();
        ACTIVE_BAR.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

/// The writer of log lines (standard error): hides a progress bar while a
/// line is written, then draws it again below the line.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = ACTIVE_BAR.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match bar {
            Some(bar) if !bar.is_hidden() && !bar.is_finished() => {
                bar.suspend(|| io::stderr().write_all(buf))?
            }
            _ => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

/// Where an offline-or-online command (`keys`, `export`, `backup`) works.
pub enum Target {
    /// The data directory itself; fails if a server holds it.
    DataDir(std::path::PathBuf),
    /// A running server's AdminService (an admin key).
    Server(crate::client::ServerTarget),
}

/// A data directory given to a command that reads one must exist: a
/// mistyped path is NOT_FOUND, not a new, empty database.
pub fn require_data_dir(dir: &std::path::Path) -> Result<(), Failure> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Failure::new(
            Code::NotFound,
            format!("no data directory at {}", dir.display()),
        )
        .hint("give --data-dir, or --server for a running server"))
    }
}

/// Opens an existing data directory for an offline command (no PDQ index;
/// sled's page cache bounded to `cache_bytes`); a mistyped path is
/// NOT_FOUND ([`require_data_dir`]).
pub fn open_existing(
    dir: &std::path::Path,
    cache_bytes: u64,
) -> Result<crate::store::SledStore, Failure> {
    require_data_dir(dir)?;
    Ok(crate::store::SledStore::open_without_index(
        dir,
        cache_bytes,
    )?)
}

/// `body` as a request to the server, with its credentials.
pub(crate) fn admin_request<T>(
    server: &crate::client::ServerTarget,
    body: T,
) -> Result<tonic::Request<T>, Failure> {
    server.request(body).map_err(Failure::usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_print_as_the_grpc_spec_spells_them() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::Unimplemented), "UNIMPLEMENTED");
        assert_eq!(code_name(Code::DataLoss), "DATA_LOSS");
    }

    #[test]
    fn every_code_has_its_exit_class() {
        let expect = [
            (Code::InvalidArgument, 2),
            (Code::OutOfRange, 2),
            (Code::NotFound, 3),
            (Code::Aborted, 4),
            (Code::AlreadyExists, 4),
            (Code::FailedPrecondition, 4),
            (Code::Unauthenticated, 5),
            (Code::PermissionDenied, 5),
            (Code::Unavailable, 6),
            (Code::ResourceExhausted, 6),
            (Code::DeadlineExceeded, 6),
            (Code::Cancelled, 6),
            (Code::Unimplemented, 7),
            (Code::Internal, 1),
            (Code::Unknown, 1),
            (Code::DataLoss, 1),
        ];
        for (code, exit) in expect {
            assert_eq!(ExitClass::of(code) as u8, exit, "{code:?}");
        }
        assert_eq!(Failure::problems("2 problems").exit as u8, 8);
    }

    #[test]
    fn a_refused_token_hints_at_the_flag_and_the_variable() {
        let failure = Failure::from(tonic::Status::unauthenticated("missing API key"));
        assert_eq!(failure.to_string(), "UNAUTHENTICATED: missing API key");
        let hints = failure.hints.join("\n");
        assert!(
            hints.contains("PHOTOCLAIM_TOKEN") && hints.contains("--token"),
            "{hints}"
        );
        assert_eq!(failure.exit, ExitClass::Access);
    }
}
