//! The HTTP scoring API of hindsight (axum on tokio).
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/score` | score candidate items for a user: one index snapshot, retrieval per candidate, one batched forward pass |
//! | `POST /v1/behaviors` | append behaviors; answered once committed (fsynced) and visible |
//! | `GET /v1/users/{id}/behaviors` | a user's newest behaviors |
//! | `POST /v1/admin/reload` | swap in a model (and index) without failing requests; `SIGHUP` does the same with the current paths |
//! | `GET /healthz`, `GET /readyz` | liveness, readiness |
//! | `GET /metrics` | Prometheus text |
//! | `GET /openapi.json` | the OpenAPI document, generated from the types |
//!
//! Errors are JSON `{"error": {"code", "message"}}` with a 4xx status for
//! every client mistake (see [`api`] and the OpenAPI document).
//!
//! Retrieval follows SIM (Pi et al., CIKM 2020) and UBR4CTR (Qin et al.,
//! SIGIR 2020); the models DIN (Zhou et al., KDD 2018) and DIEN (Zhou et
//! al., AAAI 2019): see `hindsight-retrieval` and `hindsight-model`.

pub mod api;
mod appender;
pub mod config;
pub mod error;
mod extract;
mod handlers;
pub mod metrics;
mod state;

use std::future::{Future, IntoFuture};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
pub use state::{AppState, Serving};

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "hindsight",
        description = "CTR scoring with lifelong user behavior retrieval."
    ),
    paths(
        handlers::score,
        handlers::append,
        handlers::user_behaviors,
        handlers::reload,
        handlers::healthz,
        handlers::readyz,
        handlers::metrics,
        handlers::openapi
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail))
)]
pub struct ApiDoc;

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
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
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
        .route("/v1/behaviors", post(handlers::append))
        .route("/v1/admin/reload", post(handlers::reload))
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), Access::Write),
            authorize,
        ));
    let reads = Router::new()
        .route("/v1/score", post(handlers::score))
        .route("/v1/users/{id}/behaviors", get(handlers::user_behaviors))
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), Access::Read),
            authorize,
        ));
    let open = Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/openapi.json", get(handlers::openapi));
    Router::new()
        .merge(writes)
        .merge(reads)
        .merge(open)
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish (at most
/// `shutdown_grace_secs`), and closes the writer, which commits anything
/// pending and releases the index.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let app = router(state.clone());
    let draining = Arc::new(tokio::sync::Notify::new());
    let on_signal = {
        let state = state.clone();
        let draining = draining.clone();
        async move {
            shutdown.await;
            state.draining.store(true, Ordering::SeqCst);
            tracing::info!("shutting down: finishing in-flight requests");
            draining.notify_one();
        }
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(on_signal);
    let grace = Duration::from_secs(state.config.shutdown_grace_secs);
    tokio::select! {
        r = server.into_future() => r?,
        _ = async { draining.notified().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("the shutdown grace period ended with requests still in flight");
        }
    }
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
            let _ = state.reload(None, None).await;
        }
    });
    #[cfg(not(unix))]
    let _ = state;
}

#[cfg(test)]
mod tests;
