//! The HTTP scoring API of hindsight (axum on tokio).
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/score` | score candidate items for a user: one index snapshot, retrieval per candidate, one batched forward pass |
//! | `POST /v1/recommend` | recall then rank: a SASRec user vector, an ANN search over the catalog (seen items left out), optionally the top candidates re-ranked by the CTR model |
//! | `POST /v1/behaviors` | append behaviors; answered once committed (fsynced) and visible |
//! | `GET /v1/users/{id}/behaviors` | a user's newest behaviors |
//! | `POST /v1/admin/reload` | swap in a model (and index) without failing requests; `SIGHUP` does the same with the current paths |
//! | `GET /healthz`, `GET /readyz` | liveness, readiness |
//! | `GET /metrics` | Prometheus text |
//! | `GET /openapi.json` | the OpenAPI document, generated from the types |
//!
//! Errors are JSON `{"error": {"code", "message"}}` with a 4xx status for
//! every client mistake (see [`api`] and the OpenAPI document), including
//! the protocol-level ones the application sees (414, 431, 408, extractor
//! rejections). Connections have limits and timeouts of their own (see
//! `conn.rs`: idle, header read, body read, a cap on open connections).
//!
//! Retrieval follows SIM (Pi et al., CIKM 2020) and UBR4CTR (Qin et al.,
//! SIGIR 2020); the models DIN (Zhou et al., KDD 2018) and DIEN (Zhou et
//! al., AAAI 2019): see `hindsight-retrieval` and `hindsight-model`.

pub mod api;
mod appender;
pub mod config;
mod conn;
pub mod error;
mod extract;
mod handlers;
pub mod metrics;
mod state;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;

pub use appender::AppendError;
pub use config::{Secret, ServerConfig};
pub use error::{ApiError, ServerError};
pub use state::{AppState, Deadline, Serving};

/// The OpenAPI document of the routes every build has (see [`openapi`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "hindsight",
        description = "CTR scoring with lifelong user behavior retrieval."
    ),
    paths(
        handlers::behaviors::append,
        handlers::behaviors::user_behaviors,
        handlers::admin::reload,
        handlers::health::healthz,
        handlers::health::readyz,
        handlers::health::metrics,
        handlers::health::openapi
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail))
)]
pub struct ApiDoc;

/// The scoring route's part of the document (builds with the `model`
/// feature).
#[cfg(feature = "model")]
#[derive(OpenApi)]
#[openapi(paths(handlers::score::score, handlers::recommend::recommend))]
struct ScoreApiDoc;

/// The OpenAPI document of this build: [`ApiDoc`], plus `POST /v1/score`
/// with the `model` feature.
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[allow(unused_mut)]
    let mut doc = ApiDoc::openapi();
    #[cfg(feature = "model")]
    doc.merge(ScoreApiDoc::openapi());
    doc
}

/// Which endpoints a token guards.
#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
}

async fn authorize(
    State((st, access)): State<(Arc<AppState>, Access)>,
    req: Request,
    next: Next,
) -> Response {
    let needed = match access {
        Access::Write => st.config.token.is_some(),
        Access::Read => st.config.auth_reads,
    };
    if needed {
        let token = st.config.token.as_ref().expect("checked");
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer_token(v.as_bytes()));
        if !given.is_some_and(|g| token.matches(g)) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this endpoint needs the header `Authorization: Bearer <token>` with the server's token",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is
/// matched case-insensitively (RFC 9110 section 11.1), the token exactly.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii_start();
    (!token.is_empty()).then_some(token)
}

/// The outermost layer: refuses request targets and heads beyond the
/// configured limits (414, 431, as JSON), starts the request's
/// [`Deadline`], and gives every error response the JSON error body.
async fn protocol(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let cfg = &st.config;
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > cfg.max_uri_bytes {
        let mut e = ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!(
                "the request target is {uri} bytes, more than this server takes (max_uri_bytes = {}); send parameters in the body",
                cfg.max_uri_bytes
            ),
        );
        e.close = true;
        return e.into_response();
    }
    let head: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let lines = req.headers().len();
    if head > cfg.max_header_bytes || lines > MAX_HEADER_LINES {
        let mut e = ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request has {lines} header lines of {head} bytes in all; this server takes at most {MAX_HEADER_LINES} lines and {} bytes (max_header_bytes)",
                cfg.max_header_bytes
            ),
        );
        e.close = true;
        return e.into_response();
    }
    req.extensions_mut().insert(Deadline::starting_now(cfg));
    error::json_errors(next.run(req).await).await
}

/// Most header lines a request may have.
const MAX_HEADER_LINES: usize = 100;

async fn track(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let m = &st.metrics;
    m.in_flight.inc();
    let t0 = Instant::now();
    let resp = next.run(req).await;
    m.in_flight.dec();
    let status = resp.status().as_u16().to_string();
    m.requests
        .with_label_values(&[&route, &method, &status])
        .inc();
    m.latency
        .with_label_values(&[&route, &status])
        .observe(t0.elapsed().as_secs_f64());
    resp
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("the request handler panicked; this is a bug, please report it")
        .into_response()
}

/// The application: every route with its limits, authentication and
/// metrics. Test it in process with `tower::ServiceExt::oneshot`.
pub fn router(state: Arc<AppState>) -> Router {
    let writes = Router::new()
        .route("/v1/behaviors", post(handlers::behaviors::append))
        .route("/v1/admin/reload", post(handlers::admin::reload))
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), Access::Write),
            authorize,
        ));
    let reads = Router::new();
    #[cfg(feature = "model")]
    let reads = reads
        .route("/v1/score", post(handlers::score::score))
        .route("/v1/recommend", post(handlers::recommend::recommend));
    let reads = reads
        .route(
            "/v1/users/{id}/behaviors",
            get(handlers::behaviors::user_behaviors),
        )
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), Access::Read),
            authorize,
        ));
    let open = Router::new()
        .route("/healthz", get(handlers::health::healthz))
        .route("/readyz", get(handlers::health::readyz))
        .route("/metrics", get(handlers::health::metrics))
        .route("/openapi.json", get(handlers::health::openapi));
    Router::new()
        .merge(writes)
        .merge(reads)
        .merge(open)
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(handlers::health::not_found)
        .method_not_allowed_fallback(handlers::health::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(state.clone(), protocol))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves, then stops
/// accepting, closes connections with no request being handled, lets
/// in-flight requests finish (at most `shutdown_grace_secs`), and closes
/// the writer, which commits anything pending and releases the index.
/// Connections have the limits and timeouts of the configuration
/// (`max_connections`, `idle_timeout_ms`, `header_read_timeout_ms`,
/// `body_read_timeout_ms`).
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let app = router(state.clone());
    let st = state.clone();
    conn::accept_loop(
        listener,
        app,
        &state.config,
        state.metrics.clone(),
        shutdown,
        move || {
            st.draining.store(true, Ordering::SeqCst);
            tracing::info!("shutting down: finishing in-flight requests");
        },
    )
    .await;
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.close())
        .await
        .map_err(|e| ServerError::Config(format!("closing the writer failed: {e}")))?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Reloads the current model and index paths on every SIGHUP.
pub fn reload_on_sighup(state: Arc<AppState>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; use POST /v1/admin/reload");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            let _ = state.reload(None, None, None).await;
        }
    });
    #[cfg(not(unix))]
    let _ = state;
}

#[cfg(test)]
mod conn_tests;
#[cfg(all(test, feature = "model"))]
mod recommend_tests;
#[cfg(test)]
mod tests;
