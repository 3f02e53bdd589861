//! Connections: the accept loop and what each connection may hold.
//!
//! `axum::serve` has no connection limits or timeouts, so the server runs
//! its own accept loop over hyper's HTTP/1 connection builder:
//!
//! - at most `max_connections` open at once; one beyond is answered at
//!   once with 503 `too_many_connections` (JSON, `Connection: close`) and
//!   counted in `hindsight_connections_refused_total`;
//! - a connection with no request being handled that receives and sends
//!   nothing for `idle_timeout_ms` (a fresh connection, or keep-alive
//!   between requests) is closed;
//! - once the first byte of a request head has arrived, the whole head must
//!   arrive within `header_read_timeout_ms`, or the connection is closed;
//! - the body must arrive within `body_read_timeout_ms` and the request's
//!   deadline (see [`crate::state::Deadline`]): 408, connection closed;
//! - on shutdown, connections with no request being handled are closed at
//!   once; the others finish their request (at most `shutdown_grace_secs`).
//!
//! Closings by timeout are counted in
//! `hindsight_connection_timeouts_total{kind="idle"|"header"}`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::ServerConfig;
use crate::metrics::Metrics;

/// No byte of a request head has arrived yet.
const NONE: u64 = u64::MAX;

/// What a connection is doing, shared by its socket wrapper, its requests
/// and its watchdog. Times are milliseconds since `epoch`.
struct Activity {
    epoch: Instant,
    /// Requests of this connection being handled.
    busy: AtomicUsize,
    /// When the connection last became free of requests.
    idle_since: AtomicU64,
    /// When the first byte arrived while free (a request head started).
    head_started: AtomicU64,
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }

    /// Bytes arrived.
    fn on_read(&self) {
        if !self.is_busy()
            && self
                .head_started
                .compare_exchange(NONE, self.now_ms(), Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// Bytes were sent: a response still being written is not idle.
    fn on_write(&self) {
        if !self.is_busy() {
            self.idle_since.store(self.now_ms(), Ordering::SeqCst);
        }
    }

    /// Which timeout has passed, if one has: `header` once a head has
    /// started and not completed in time, `idle` when nothing has come or
    /// gone for the idle timeout; never while a request is handled.
    fn expired(&self, limits: &Limits) -> Option<&'static str> {
        if self.is_busy() {
            return None;
        }
        let now = Instant::now();
        let head = self.head_started.load(Ordering::SeqCst);
        if head != NONE {
            return (now >= self.at(head) + limits.header).then_some("header");
        }
        let idle = self.at(self.idle_since.load(Ordering::SeqCst)) + limits.idle;
        (now >= idle).then_some("idle")
    }

    /// A request reached the application (its head is complete).
    fn start_request(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.head_started.store(NONE, Ordering::SeqCst);
        self.changed.notify_one();
        Busy(self.clone())
    }
}

/// A request being handled; dropping it (answered or cancelled) frees the
/// connection.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        if a.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            a.idle_since.store(a.now_ms(), Ordering::SeqCst);
            a.head_started.store(NONE, Ordering::SeqCst);
        }
        a.changed.notify_one();
    }
}

/// The socket, telling [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        r
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
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The connection settings of [`ServerConfig`].
#[derive(Debug, Clone, Copy)]
struct Limits {
    idle: Duration,
    header: Duration,
    max_connections: usize,
    retry_after_secs: u64,
}

impl Limits {
    fn of(cfg: &ServerConfig) -> Limits {
        Limits {
            idle: Duration::from_millis(cfg.idle_timeout_ms),
            header: Duration::from_millis(cfg.header_read_timeout_ms),
            max_connections: cfg.max_connections,
            retry_after_secs: cfg.retry_after_secs,
        }
    }
}

/// Accepts connections on `listener` and serves `app` on each until `stop`
/// resolves; then closes idle connections at once and gives the others
/// `grace` to finish. Returns when every connection is closed (or the
/// grace has passed, closing the rest).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    cfg: &ServerConfig,
    metrics: Metrics,
    stop: impl Future<Output = ()>,
    on_stop: impl FnOnce(),
) {
    let limits = Limits::of(cfg);
    let grace = Duration::from_secs(cfg.shutdown_grace_secs);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(true).max_headers(MAX_HEADERS_HYPER);
    let builder = Arc::new(builder);
    tokio::pin!(stop);
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a little
                // rather than spin (a per-connection error is just skipped).
                if !is_connection_error(&e) {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let app = app.clone();
                let builder = builder.clone();
                let stop = stop_rx.clone();
                let metrics = metrics.clone();
                conns.spawn(async move {
                    metrics.open_connections.inc();
                    connection(stream, app, &builder, limits, stop, &metrics).await;
                    metrics.open_connections.dec();
                    drop(slot);
                });
            }
            Err(_) => {
                metrics.connections_refused.inc();
                tokio::spawn(refuse(stream, limits));
            }
        }
    }
    drop(listener);
    on_stop();
    let _ = stop_tx.send(true);
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "the shutdown grace period ended with requests still in flight; closing their connections"
        );
        conns.shutdown().await;
    }
}

/// Header lines hyper accepts; the application's own limit
/// (`max_header_bytes`) answers with a JSON 431 below it.
const MAX_HEADERS_HYPER: usize = 1000;

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection under its timeouts.
async fn connection(
    stream: TcpStream,
    app: Router,
    builder: &hyper::server::conn::http1::Builder,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    metrics: &Metrics,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let busy = activity.start_request();
            let app = app.clone();
            async move {
                let resp = app.oneshot(req.map(Body::new)).await;
                drop(busy);
                resp
            }
        })
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        // What to wait for: the head's deadline, the idle deadline, or
        // (while a request is handled) only a change.
        let head = activity.head_started.load(Ordering::SeqCst);
        let wake = if activity.is_busy() {
            None
        } else if head != NONE {
            Some(activity.at(head) + limits.header)
        } else {
            Some(activity.at(activity.idle_since.load(Ordering::SeqCst)) + limits.idle)
        };
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = activity.changed.notified() => {}
            _ = sleep => {
                // Re-check against the current state: it may have changed
                // at the same moment (a write moves the idle deadline).
                if let Some(kind) = activity.expired(&limits) {
                    metrics.connection_timeouts.with_label_values(&[kind]).inc();
                    tracing::debug!(kind, "closing a connection on timeout");
                    return;
                }
            }
            _ = stop.changed(), if !draining => {
                // Nothing being handled: close now, whatever the client
                // has half sent. Else hyper closes after the response.
                if !activity.is_busy() {
                    return;
                }
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Answers a connection beyond `max_connections` with a JSON 503 and
/// closes it, without reading the request.
async fn refuse(mut stream: TcpStream, limits: Limits) {
    let body = format!(
        "{{\"error\":{{\"code\":\"too_many_connections\",\"message\":\"the server has its limit of {} connections open; retry after the Retry-After delay\"}}}}",
        limits.max_connections
    );
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        limits.retry_after_secs,
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(resp.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}
