//! The offline commands on a data directory that other commands reuse:
//! `photoclaim check` (also run on a copy of a database's tables) and
//! `photoclaim restore` (also the first half of a restore into a database).

use std::path::Path;

use crate::cli::{self, Failure};
use crate::outln;

type Outcome = Result<(), Failure>;

/// `photoclaim check --data-dir DIR`: prints every problem and a summary;
/// a problem is exit code 8.
pub fn check(dir: &Path) -> Outcome {
    crate::cli::require_data_dir(dir)?;
    let progress = cli::progress(None, "claims");
    let report = crate::store::check_dir_reporting(dir, &|at| {
        if at.claims_done == 0 {
            progress.set_total(at.claims_total);
        }
        progress.message(at.phase);
        progress.set(at.claims_done);
    });
    progress.finish();
    let report = report.map_err(|e| Failure::from(e).context("check failed"))?;
    for problem in &report.problems {
        outln!("PROBLEM {problem}");
    }
    if report.problem_count > report.problems.len() as u64 {
        outln!(
            "... and {} more problems",
            report.problem_count - report.problems.len() as u64
        );
    }
    let summary = format!(
        "{}: format version {}, {} claims, {} events, {} responses, log position {}, chain head {}; {} bytes of keys and values, {} bytes on disk",
        dir.display(),
        report.format_version,
        report.claims,
        report.events,
        report.responses,
        report.log_position,
        hex::encode(report.chain_head),
        report.logical_bytes,
        report.disk_bytes
    );
    if report.is_ok() {
        outln!("ok {summary}");
        Ok(())
    } else {
        outln!("FAILED {} problems in {summary}", report.problem_count);
        Err(Failure::problems(format!(
            "{} problems in {}",
            report.problem_count,
            dir.display()
        ))
        .hint("restore from a backup (`photoclaim restore`); docs/operations.md says how"))
    }
}

/// `photoclaim restore --in FILE --data-dir DIR`.
pub fn restore(input: &Path, dir: &Path) -> Outcome {
    let summary = crate::cli::backup::restore(input, dir)
        .map_err(|f| f.context(format!("restore failed, {} not created", dir.display())))?;
    outln!("restored {} into {}", describe(&summary), dir.display());
    Ok(())
}

/// A backup's summary in one line.
pub fn describe(summary: &crate::cli::backup::Summary) -> String {
    format!(
        "{} claims, {} responses, {} events, {} API keys, {} request ids at log position {}, chain head {}",
        summary.claims,
        summary.responses,
        summary.events,
        summary.api_keys,
        summary.requests,
        summary.log_position,
        summary.chain_head
    )
}
