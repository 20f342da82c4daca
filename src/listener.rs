//! The accept loop in front of the gRPC server: a cap on open connections
//! and a deadline for a new connection's first bytes.
//!
//! Without them a peer that opens TCP connections and never speaks (no
//! HTTP/2 preface, no TLS ClientHello) holds a descriptor each, forever:
//! enough of them exhaust the process's descriptors, and health checks and
//! every other call time out. Here every accepted connection holds one slot
//! of a semaphore until it closes; a connection beyond `max_connections` is
//! closed at once. A connection that has not sent its first
//! [`FIRST_BYTES`] bytes (the HTTP/2 client preface is 24, a TLS
//! ClientHello more) within `first_bytes_timeout` is closed: later reads
//! have no deadline of ours (HTTP/2 keepalive pings find dead peers).
//! Both are logged, at most once a second each, and counted.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Bytes a new connection must send before its deadline: the HTTP/2
/// client preface (`PRI * HTTP/2.0…`, 24 bytes) or the start of a TLS
/// ClientHello. HTTP/1.1 (gRPC-Web) requests are longer too.
pub const FIRST_BYTES: usize = 24;

/// Connections refused or closed by the accept loop, since start.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub refused_over_cap: AtomicU64,
    /// Connections closed for sending nothing (or too little) in time.
    pub closed_silent: AtomicU64,
}

/// The counters of the server's own accept loop, read by the metrics
/// endpoint.
pub fn server_stats() -> Arc<ConnectionStats> {
    static STATS: std::sync::OnceLock<Arc<ConnectionStats>> = std::sync::OnceLock::new();
    STATS.get_or_init(Default::default).clone()
}

/// The limits of [`incoming`].
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// How long a new connection may take to send its first bytes.
    pub first_bytes_timeout: Duration,
}

/// Accepts connections from `listener` under `limits`, as a stream for
/// `Server::serve_with_incoming_shutdown`. Accept errors (e.g. out of
/// descriptors) are logged and retried after a pause, never ending the
/// server.
pub fn incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<GuardedConn>> {
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::spawn(async move {
        let mut over_cap_log = RateLimitedLog::default();
        let mut accept_error_log = RateLimitedLog::default();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    if accept_error_log.due() {
                        tracing::warn!(%err, "cannot accept a connection");
                    }
                    // EMFILE and the like: give closing connections a moment.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                stats.refused_over_cap.fetch_add(1, Ordering::Relaxed);
                if over_cap_log.due() {
                    tracing::warn!(
                        %peer,
                        max_connections = limits.max_connections,
                        refused_so_far = stats.refused_over_cap.load(Ordering::Relaxed),
                        "connection refused: too many open connections"
                    );
                }
                drop(stream);
                continue;
            };
            // Small unary replies must not wait for Nagle's algorithm.
            let _ = stream.set_nodelay(true);
            stats.open.fetch_add(1, Ordering::Relaxed);
            let conn = GuardedConn {
                inner: stream,
                deadline: Some(Box::pin(tokio::time::sleep(limits.first_bytes_timeout))),
                read: 0,
                slot: Some(Slot {
                    _permit: permit,
                    stats: stats.clone(),
                }),
            };
            if tx.send(Ok(conn)).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// One accepted connection: holds its slot until dropped, and fails its
/// reads if its first bytes do not arrive in time.
pub struct GuardedConn {
    /// The socket.
    inner: TcpStream,
    /// Until [`FIRST_BYTES`] have been read: when they are due.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Bytes read so far (counted only up to [`FIRST_BYTES`]).
    read: usize,
    /// The connection's slot under the cap; freed on drop.
    slot: Option<Slot>,
}

/// A slot under the connection cap, and the count of open connections.
struct Slot {
    _permit: OwnedSemaphorePermit,
    stats: Arc<ConnectionStats>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for GuardedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.deadline.is_some() {
                    this.read += buf.filled().len() - before;
                    if this.read >= FIRST_BYTES || buf.filled().len() == before {
                        this.deadline = None;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                let expired = match this.deadline.as_mut() {
                    Some(deadline) => deadline.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                if !expired {
                    return Poll::Pending;
                }
                this.deadline = None;
                if let Some(slot) = &this.slot {
                    slot.stats.closed_silent.fetch_add(1, Ordering::Relaxed);
                }
                SILENT_LOG.with_due(|| {
                    tracing::info!(
                        peer = ?this.inner.peer_addr().ok(),
                        "connection closed: it sent too little in time"
                    )
                });
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection sent too little before its deadline",
                )))
            }
        }
    }
}

impl AsyncWrite for GuardedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for GuardedConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

/// Allows a log line at most once a second.
#[derive(Default)]
struct RateLimitedLog {
    last: Option<Instant>,
}

impl RateLimitedLog {
    fn due(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// [`RateLimitedLog`] shared by every connection's read path.
static SILENT_LOG: SharedRateLimit = SharedRateLimit(std::sync::Mutex::new(None));

/// A once-a-second gate shared between tasks.
struct SharedRateLimit(std::sync::Mutex<Option<Instant>>);

impl SharedRateLimit {
    fn with_due(&self, log: impl FnOnce()) {
        let now = Instant::now();
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|last| now.duration_since(last) < Duration::from_secs(1)) {
            return;
        }
        *last = Some(now);
        drop(last);
        log();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;

    async fn start(
        limits: ConnectionLimits,
    ) -> (
        std::net::SocketAddr,
        tokio_stream::wrappers::ReceiverStream<io::Result<GuardedConn>>,
        Arc<ConnectionStats>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(ConnectionStats::default());
        (addr, incoming(listener, limits, stats.clone()), stats)
    }

    #[tokio::test]
    async fn a_silent_connection_fails_its_read_at_the_deadline_a_talking_one_does_not() {
        let limits = ConnectionLimits {
            max_connections: 8,
            first_bytes_timeout: Duration::from_millis(200),
        };
        let (addr, mut conns, stats) = start(limits).await;
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut conn = conns.next().await.unwrap().unwrap();
        let mut buf = [0u8; 8];
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(stats.closed_silent.load(Ordering::Relaxed), 1);

        let mut talking = TcpStream::connect(addr).await.unwrap();
        let mut conn = conns.next().await.unwrap().unwrap();
        talking.write_all(&[b'x'; FIRST_BYTES]).await.unwrap();
        let mut buf = [0u8; FIRST_BYTES];
        conn.read_exact(&mut buf).await.unwrap();
        // Past the deadline, a quiet but introduced connection stays open.
        let waited = tokio::time::timeout(Duration::from_millis(400), conn.read(&mut buf)).await;
        assert!(waited.is_err(), "no deadline after the first bytes");
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_and_slots_come_back() {
        let limits = ConnectionLimits {
            max_connections: 2,
            first_bytes_timeout: Duration::from_secs(30),
        };
        let (addr, mut conns, stats) = start(limits).await;
        let _a = TcpStream::connect(addr).await.unwrap();
        let first = conns.next().await.unwrap().unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let _second = conns.next().await.unwrap().unwrap();
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
            .await
            .expect("the third connection is closed at once");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        assert_eq!(stats.refused_over_cap.load(Ordering::Relaxed), 1);
        assert_eq!(stats.open.load(Ordering::Relaxed), 2);
        drop(first);
        assert_eq!(stats.open.load(Ordering::Relaxed), 1);
        let _c = TcpStream::connect(addr).await.unwrap();
        let _fourth = tokio::time::timeout(Duration::from_secs(5), conns.next())
            .await
            .expect("a freed slot takes a new connection")
            .unwrap()
            .unwrap();
    }
}
