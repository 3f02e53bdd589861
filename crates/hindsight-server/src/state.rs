//! What the server serves (a model and an index, swapped atomically on
//! reload) and the limits requests share: admission (at most
//! `max_in_flight` score/read requests, the rest get 503 at once), the
//! worker pool (at most `workers` doing CPU work) and each request's
//! deadline (`request_timeout_ms`, counted from the request's arrival, so
//! reading its body counts too).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
#[cfg(feature = "model")]
use hindsight_engine::{Recommender, Scorer};
use hindsight_index::BehaviorIndex;
#[cfg(feature = "model")]
use hindsight_model::Device;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::api::ServingInfo;
use crate::appender::Appender;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::ServerError;

/// A model and the index it scores from, with the index's writer (the
/// index alone in a build without the `model` feature).
pub struct Serving {
    /// Increases by one with each reload.
    pub generation: u64,
    /// The model folder.
    #[cfg(feature = "model")]
    pub model_path: PathBuf,
    /// The index.
    pub index: Arc<BehaviorIndex>,
    /// The model and its retrieval settings.
    #[cfg(feature = "model")]
    pub scorer: Scorer,
    /// The recall model and its catalog search (`POST /v1/recommend`),
    /// when one is configured.
    #[cfg(feature = "model")]
    pub recommender: Option<Recommender>,
    /// The index's writer; `None` when serving read-only.
    pub appender: Option<Arc<Appender>>,
}

impl Serving {
    /// What is served, for readyz and reload answers.
    pub fn info(&self) -> ServingInfo {
        #[allow(unused_mut)]
        let mut info = ServingInfo {
            generation: self.generation,
            model: None,
            model_kind: None,
            recall_model: None,
            ann: None,
            strategy: None,
            n: None,
            index: self.index.path().display().to_string(),
            dataset: self.index.manifest().mapping_name.clone(),
            index_behaviors: self.index.snapshot().num_behaviors(),
        };
        #[cfg(feature = "model")]
        {
            let s = self.scorer.settings();
            info.model = Some(self.model_path.display().to_string());
            info.model_kind = Some(self.scorer.model().config().kind.as_str().to_owned());
            info.strategy = Some(s.strategy.as_str().to_owned());
            info.n = Some(s.n);
            if let Some(r) = &self.recommender {
                info.recall_model = Some(r.model_path().display().to_string());
                info.ann = r.ann_path().map(|p| p.display().to_string());
            }
        }
        info
    }
}

/// State shared by all requests.
pub struct AppState {
    /// The validated configuration.
    pub config: ServerConfig,
    /// What is being served.
    pub serving: ArcSwap<Serving>,
    /// Metrics.
    pub metrics: Metrics,
    /// Admission: scoring and read requests in flight (try-acquire; none
    /// left means 503).
    pub admission: Arc<Semaphore>,
    /// Requests doing CPU work at once.
    pub workers: Arc<Semaphore>,
    /// Set when shutting down: readyz fails, new work is refused.
    pub draining: AtomicBool,
    reload_lock: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

#[cfg(feature = "model")]
fn device(cfg: &ServerConfig) -> Result<Device, ServerError> {
    cfg.device
        .parse()
        .map_err(|e: hindsight_model::ModelError| ServerError::Config(e.to_string()))
}

impl AppState {
    /// Opens the index, takes its writer lock, loads the model and checks
    /// that the two belong together. Blocking.
    pub fn open(config: ServerConfig) -> Result<Arc<AppState>, ServerError> {
        config.validate()?;
        #[cfg(feature = "model")]
        hindsight_model::set_cpu_threads(config.torch_threads);
        let metrics = Metrics::new();
        let index = Arc::new(open_index(&config, &config.index)?);
        #[cfg(feature = "model")]
        let scorer = Scorer::load(&config.model, device(&config)?, &index, config.workers)?;
        #[cfg(feature = "model")]
        let recommender = load_recommender(&config, config.recall_model.as_deref(), &index)?;
        let appender = start_appender(&config, &index, &metrics)?;
        let serving = Serving {
            generation: 1,
            #[cfg(feature = "model")]
            model_path: config.model.clone(),
            index,
            #[cfg(feature = "model")]
            scorer,
            #[cfg(feature = "model")]
            recommender,
            appender,
        };
        Ok(Arc::new(AppState {
            admission: Arc::new(Semaphore::new(config.in_flight_limit())),
            workers: Arc::new(Semaphore::new(config.workers)),
            config,
            serving: ArcSwap::from_pointee(serving),
            metrics,
            draining: AtomicBool::new(false),
            reload_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(1),
        }))
    }

    /// Loads a model (and, if given and different, an index) and swaps them
    /// in; requests in flight finish on the old pair. A model that does not
    /// fit the index, or files that fail to load, are refused and the old
    /// pair keeps serving. Without arguments, re-reads the current paths.
    pub async fn reload(
        self: &Arc<Self>,
        model: Option<PathBuf>,
        index: Option<PathBuf>,
        recall_model: Option<PathBuf>,
    ) -> Result<ServingInfo, ServerError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let this = self.clone();
        let result =
            tokio::task::spawn_blocking(move || this.load_next(model, index, recall_model))
                .await
                .map_err(|e| ServerError::Config(format!("the reload task failed: {e}")))?;
        match result {
            Ok((next, old_appender)) => {
                let info = next.info();
                self.serving.store(Arc::new(next));
                if let Some(old) = old_appender {
                    // Finish the old index's queued appends and release its
                    // writer lock, off the runtime.
                    tokio::task::spawn_blocking(move || old.close());
                }
                self.metrics.reloads.with_label_values(&["ok"]).inc();
                tracing::info!(generation = info.generation, model = ?info.model, index = %info.index, "reloaded");
                Ok(info)
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["refused"]).inc();
                tracing::warn!(error = %e, "reload refused; still serving the previous model and index");
                Err(e)
            }
        }
    }

    fn load_next(
        &self,
        model: Option<PathBuf>,
        index: Option<PathBuf>,
        recall_model: Option<PathBuf>,
    ) -> Result<(Serving, Option<Arc<Appender>>), ServerError> {
        let current = self.serving.load_full();
        #[cfg(feature = "model")]
        let model_path = model.unwrap_or_else(|| current.model_path.clone());
        #[cfg(not(feature = "model"))]
        if let Some(model) = model.or(recall_model) {
            return Err(ServerError::Config(format!(
                "this build of the server has no model support, so it cannot load {}; rebuild with the `model` feature",
                model.display()
            )));
        }
        let same_index = index
            .as_deref()
            .is_none_or(|p| same_path(p, current.index.path()));
        let index = match &index {
            Some(path) if !same_index => Arc::new(open_index(&self.config, path)?),
            _ => current.index.clone(),
        };
        // The model is checked against the index before the index's writer
        // lock is taken.
        #[cfg(feature = "model")]
        let scorer = Scorer::load(
            &model_path,
            device(&self.config)?,
            &index,
            self.config.workers,
        )?;
        // The recall model reloads with the ranking pair: a new folder if
        // given, else the current one re-read (its ANN with it).
        #[cfg(feature = "model")]
        let recall_path = recall_model.or_else(|| {
            current
                .recommender
                .as_ref()
                .map(|r| r.model_path().to_path_buf())
        });
        #[cfg(feature = "model")]
        let recommender = load_recommender(&self.config, recall_path.as_deref(), &index)?;
        let (appender, old) = if same_index {
            (current.appender.clone(), None)
        } else {
            let appender = start_appender(&self.config, &index, &self.metrics)?;
            (appender, current.appender.clone())
        };
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        Ok((
            Serving {
                generation,
                #[cfg(feature = "model")]
                model_path,
                index,
                #[cfg(feature = "model")]
                scorer,
                #[cfg(feature = "model")]
                recommender,
                appender,
            },
            old,
        ))
    }

    /// Stops taking appends and waits for the writer to commit and release
    /// the index. Blocking.
    pub fn close(&self) {
        self.draining.store(true, Ordering::SeqCst);
        if let Some(appender) = &self.serving.load().appender {
            appender.close();
        }
    }
}

/// Loads the recall model at `path` (if any) with its ANN index: the
/// configured `ann` folder when it is the configured recall model, else
/// `path/ann` when it exists, else exact search.
#[cfg(feature = "model")]
fn load_recommender(
    config: &ServerConfig,
    path: Option<&Path>,
    index: &BehaviorIndex,
) -> Result<Option<Recommender>, ServerError> {
    let Some(path) = path else { return Ok(None) };
    let ann = match (&config.recall_model, &config.ann) {
        (Some(configured), Some(ann)) if same_path(configured, path) => Some(ann.as_path()),
        _ => None,
    };
    Ok(Some(Recommender::load(
        path,
        ann,
        device(config)?,
        index,
        config.workers,
    )?))
}

/// Opens an index as the configuration says: read-only (no writer lock)
/// or for writing.
fn open_index(config: &ServerConfig, path: &std::path::Path) -> Result<BehaviorIndex, ServerError> {
    let index = if config.read_only {
        BehaviorIndex::open_read_only(path)?
    } else {
        BehaviorIndex::open(path)?
    };
    // Every request reads the behaviors it retrieves: decode them once
    // (and each segment an append or merge adds) rather than per request.
    let t = std::time::Instant::now();
    let bytes = index.keep_rows_warm();
    tracing::info!(
        bytes,
        secs = t.elapsed().as_secs_f64(),
        "behavior rows decoded for retrieval"
    );
    Ok(index)
}

/// The writer of `index`, or `None` when serving read-only.
fn start_appender(
    config: &ServerConfig,
    index: &Arc<BehaviorIndex>,
    metrics: &Metrics,
) -> Result<Option<Arc<Appender>>, ServerError> {
    if config.read_only {
        return Ok(None);
    }
    Ok(Some(Arc::new(Appender::start(
        index.clone(),
        config.max_queued_appends,
        metrics.clone(),
    )?)))
}

/// When a request must be answered by: its arrival plus
/// `request_timeout_ms`. Set by the router's outermost middleware; reading
/// the body, waiting for admission and a worker, and the work itself all
/// count against it.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// The request's deadline.
    pub at: Instant,
    /// When its body must have arrived: the earlier of the deadline and
    /// the arrival plus `body_read_timeout_ms`.
    pub body_at: Instant,
}

impl Deadline {
    /// The deadline of a request arriving now.
    pub fn starting_now(config: &ServerConfig) -> Deadline {
        let now = Instant::now();
        let at = now + std::time::Duration::from_millis(config.request_timeout_ms);
        let body_at = (now + std::time::Duration::from_millis(config.body_read_timeout_ms)).min(at);
        Deadline { at, body_at }
    }
}

impl AppState {
    /// Why the server cannot take appends (and is not ready), if it
    /// cannot: the writer thread of the current index died.
    pub fn writer_failure(&self) -> Option<String> {
        self.serving
            .load()
            .appender
            .as_ref()
            .and_then(|a| a.failure())
    }

    /// Counts a shed request and builds its 503.
    pub(crate) fn shed(&self, route: &str, why: &str) -> ApiError {
        self.metrics.shed.with_label_values(&[route]).inc();
        ApiError::unavailable(
            "overloaded",
            format!("{why}; retry after the Retry-After delay"),
            self.config.retry_after_secs,
        )
    }

    /// 503 `shutting_down` while draining.
    pub(crate) fn refuse_if_draining(&self) -> Result<(), ApiError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(ApiError::unavailable(
                "shutting_down",
                "the server is shutting down; retry on another instance",
                self.config.retry_after_secs,
            ));
        }
        Ok(())
    }

    /// Admits a score/read request or sheds it.
    pub(crate) fn admit(&self, route: &str) -> Result<OwnedSemaphorePermit, ApiError> {
        self.refuse_if_draining()?;
        self.admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.shed(route, "the server is at its limit of requests in flight"))
    }

    /// 503 `deadline_exceeded`.
    pub(crate) fn deadline_exceeded(&self) -> ApiError {
        ApiError::unavailable(
            "deadline_exceeded",
            format!(
                "the request took longer than request_timeout_ms ({} ms)",
                self.config.request_timeout_ms
            ),
            self.config.retry_after_secs,
        )
    }

    /// Runs CPU work on a worker within the request's deadline. The
    /// admission permit is held until the work ends, even if the deadline
    /// passes first, so abandoned work still counts as in flight.
    pub(crate) async fn run_cpu<T: Send + 'static>(
        self: &Arc<Self>,
        deadline: Deadline,
        admitted: OwnedSemaphorePermit,
        work: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let this = self.clone();
        let job = async move {
            let worker = this
                .workers
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ApiError::internal("the worker pool is closed"))?;
            let inner = this.clone();
            tokio::task::spawn_blocking(move || {
                let result = work(&inner);
                drop((worker, admitted));
                result
            })
            .await
            .map_err(|e| ApiError::internal(format!("a scoring task failed: {e}")))?
        };
        self.with_deadline(deadline, job).await
    }

    /// `fut`, or 503 `deadline_exceeded` once the deadline passes.
    pub(crate) async fn with_deadline<T>(
        &self,
        deadline: Deadline,
        fut: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout_at(deadline.at, fut).await {
            Ok(r) => r,
            Err(_) => Err(self.deadline_exceeded()),
        }
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
