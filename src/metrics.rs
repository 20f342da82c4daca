//! Prometheus metrics for operators, served on their own port
//! (`--metrics-listen`, by [`crate::server::serve_metrics`]) at `GET
//! /metrics` in the OpenMetrics text format:
//!
//! - `photoclaim_rpc_requests_total{method, code}`: calls handled, by
//!   method and gRPC status code (calls refused before a handler runs
//!   count under their method too: by the guard, for authentication or
//!   load, and by the codec, for a body that is not a valid request
//!   message);
//! - `photoclaim_rpc_duration_seconds{method}`: handler latency histogram;
//! - `photoclaim_rpc_in_flight{method}`: calls being handled now;
//! - `photoclaim_flush_duration_seconds`: latency of the flush after each
//!   write batch;
//! - `photoclaim_claims`, `photoclaim_store_bytes`: claims stored and the
//!   data directory's size on disk, read at scrape time;
//! - `photoclaim_storage_corruption_total`: storage reads that found
//!   corrupt data (answered DATA_LOSS);
//! - `photoclaim_storage_writable` (1 or 0), `photoclaim_disk_free_bytes`,
//!   `photoclaim_storage_writes_refused_total{reason}` (`disk_full`,
//!   `reopening`) and `photoclaim_storage_reopens_total`: whether writes are
//!   taken, the data directory's free space, the writes refused for want of
//!   either, and the in-process reopenings after a failed write.
//!
//! The metrics are process-wide ([`global`]): one server per process.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

type Histograms = Family<MethodLabels, Histogram, fn() -> Histogram>;

/// Latency buckets: 100 µs to about 3.3 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The store's figures read at each scrape (the server reads them from
/// its store: this module sits below storage and knows no store).
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreFigures {
    /// Claims stored.
    pub claims: u64,
    /// Size of the data on disk, in bytes.
    pub bytes_on_disk: u64,
    /// Free space of the data directory's file system, where known.
    pub disk_free_bytes: Option<u64>,
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Histograms,
    in_flight: Family<MethodLabels, Gauge>,
    flush: Histogram,
    claims: Gauge,
    store_bytes: Gauge,
    /// Connections open now (the accept loop's count).
    connections_open: Gauge,
    /// Connections the accept loop closed: over the cap, or silent.
    connections_closed: Family<ReasonLabels, Counter>,
    /// Storage reads that found corrupt data.
    corruption: Counter,
    /// 1 while the store takes writes, 0 while it refuses them.
    writable: Gauge,
    /// Free space of the data directory's file system.
    disk_free: Gauge,
    /// Writes refused by the store's state: `disk_full` or `reopening`.
    writes_refused: Family<ReasonLabels, Counter>,
    /// In-process reopenings of the store after a failed write.
    reopens: Counter,
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Counts a call as in flight until dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The canonical name of a gRPC status code (`Code as i32`).
pub fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("photoclaim");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "rpc_requests",
            "RPCs handled, by method and gRPC status code",
            calls.clone(),
        );
        let latency: Histograms = Family::new_with_constructor(latency_histogram);
        registry.register(
            "rpc_duration_seconds",
            "Time to handle an RPC (to the response, or a stream's start)",
            latency.clone(),
        );
        let in_flight = Family::<MethodLabels, Gauge>::default();
        registry.register("rpc_in_flight", "RPCs being handled now", in_flight.clone());
        let flush = latency_histogram();
        registry.register(
            "flush_duration_seconds",
            "Time of one flush to disk (one per batch of writes)",
            flush.clone(),
        );
        let claims = Gauge::default();
        registry.register("claims", "Claims stored", claims.clone());
        let store_bytes = Gauge::default();
        registry.register(
            "store_bytes",
            "Size of the data directory on disk, in bytes",
            store_bytes.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "gRPC connections open now",
            connections_open.clone(),
        );
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_closed_by_server",
            "Connections closed by the server as they arrived: over --max-connections (reason over_cap) or silent past --first-bytes-timeout-seconds (reason silent)",
            connections_closed.clone(),
        );
        let corruption = Counter::default();
        registry.register(
            "storage_corruption",
            "Storage reads that found corrupt data (answered DATA_LOSS)",
            corruption.clone(),
        );
        let writable = Gauge::default();
        writable.set(1);
        registry.register(
            "storage_writable",
            "1 while the store takes writes; 0 while it refuses them (disk full, or reopening after a failed write)",
            writable.clone(),
        );
        let disk_free = Gauge::default();
        registry.register(
            "disk_free_bytes",
            "Free space of the file system that holds the data directory, in bytes",
            disk_free.clone(),
        );
        let writes_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "storage_writes_refused",
            "Writes refused because the disk is full (reason disk_full, RESOURCE_EXHAUSTED) or the store is reopening after a failed write (reason reopening, UNAVAILABLE)",
            writes_refused.clone(),
        );
        let reopens = Counter::default();
        registry.register(
            "storage_reopens",
            "Times the store was closed and opened again in-process after a failed write",
            reopens.clone(),
        );
        Metrics {
            registry,
            writable,
            disk_free,
            writes_refused,
            reopens,
            calls,
            latency,
            in_flight,
            flush,
            claims,
            store_bytes,
            connections_open,
            connections_closed,
            corruption,
        }
    }

    /// A call of `method` starts; it counts as in flight until the guard drops.
    pub fn started(&self, method: &'static str) -> InFlight {
        let gauge = self.in_flight.get_or_create_owned(&MethodLabels { method });
        gauge.inc();
        InFlight(gauge)
    }

    /// A call of `method` ended with `code` after `elapsed`.
    pub fn finished(&self, method: &'static str, code: i32, elapsed: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                method,
                code: code_name(code),
            })
            .inc();
        self.latency
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }

    /// A call of `method` was refused before its handler ran (by the guard,
    /// or by the codec for a body that does not decode).
    pub fn refused(&self, method: &str, code: i32) {
        // Only our methods are labels, so a caller cannot mint them.
        let method = crate::rpc::by_method(method).map_or("other", |rpc| rpc.method);
        self.calls
            .get_or_create(&CallLabels {
                method,
                code: code_name(code),
            })
            .inc();
    }

    /// A write batch's flush took `elapsed`.
    pub fn flushed(&self, elapsed: Duration) {
        self.flush.observe(elapsed.as_secs_f64());
    }

    /// A storage read found corrupt data (`photoclaim_storage_corruption_total`).
    pub fn storage_corrupt(&self) {
        self.corruption.inc();
    }

    /// Whether the store takes writes now (`photoclaim_storage_writable`).
    pub fn storage_writable(&self, writable: bool) {
        self.writable.set(i64::from(writable));
    }

    /// The data directory's file system has `bytes` free.
    pub fn disk_free(&self, bytes: u64) {
        self.disk_free.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A write was refused: `disk_full` or `reopening`.
    pub fn write_refused(&self, reason: &'static str) {
        self.writes_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The store was reopened after a failed write.
    pub fn storage_reopened(&self) {
        self.reopens.inc();
    }

    /// Storage reads that found corrupt data so far.
    pub fn corruption_count(&self) -> u64 {
        self.corruption.get()
    }

    /// The text exposition, with the store's figures as of now.
    pub fn render(&self, stats: &StoreFigures) -> String {
        self.claims
            .set(i64::try_from(stats.claims).unwrap_or(i64::MAX));
        self.store_bytes
            .set(i64::try_from(stats.bytes_on_disk).unwrap_or(i64::MAX));
        if let Some(free) = stats.disk_free_bytes {
            self.disk_free(free);
        }
        let connections = crate::listener::server_stats();
        let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        self.connections_open
            .set(i64::try_from(load(&connections.open)).unwrap_or(i64::MAX));
        for (reason, total) in [
            ("over_cap", load(&connections.refused_over_cap)),
            ("silent", load(&connections.closed_silent)),
        ] {
            let counter = self
                .connections_closed
                .get_or_create(&ReasonLabels { reason });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_method_and_code() {
        let metrics = Metrics::new();
        {
            let _a = metrics.started("GetClaim");
            let text = metrics.render(&StoreFigures::default());
            assert!(
                text.contains("photoclaim_rpc_in_flight{method=\"GetClaim\"} 1"),
                "{text}"
            );
        }
        metrics.finished("GetClaim", 5, Duration::from_millis(3));
        metrics.finished("GetClaim", 0, Duration::from_millis(1));
        metrics.refused("SetVerdict", 16);
        metrics.refused("\"/x.Y/Forged\"", 16);
        metrics.write_refused("disk_full");
        metrics.storage_writable(false);
        let text = metrics.render(&StoreFigures {
            claims: 7,
            bytes_on_disk: 4096,
            disk_free_bytes: Some(1 << 20),
        });
        for line in [
            "photoclaim_rpc_requests_total{method=\"GetClaim\",code=\"NOT_FOUND\"} 1",
            "photoclaim_rpc_requests_total{method=\"GetClaim\",code=\"OK\"} 1",
            "photoclaim_rpc_requests_total{method=\"SetVerdict\",code=\"UNAUTHENTICATED\"} 1",
            "photoclaim_rpc_duration_seconds_count{method=\"GetClaim\"} 2",
            "photoclaim_rpc_in_flight{method=\"GetClaim\"} 0",
            "photoclaim_claims 7",
            "photoclaim_store_bytes 4096",
            "photoclaim_disk_free_bytes 1048576",
            "photoclaim_storage_writable 0",
            "photoclaim_storage_writes_refused_total{reason=\"disk_full\"} 1",
            "photoclaim_rpc_requests_total{method=\"other\",code=\"UNAUTHENTICATED\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
        assert_eq!(code_name(99), "UNKNOWN");
    }
}
