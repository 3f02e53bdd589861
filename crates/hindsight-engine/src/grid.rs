//! The evaluation grid: every (strategy, model) pair trained and evaluated
//! on the protocol's samples of one index, what `hindsight report` runs.
//!
//! The grid is the strategies x models at the main N, plus DIN at a
//! smaller N for every strategy ([`GridSpec::runs`]). Histories are
//! retrieved once per (strategy, N) and shared by the models trained on
//! them. [`Grid::run_next`] trains and evaluates one run at a time, so a
//! caller can save each result as it comes (an interrupted report keeps
//! what it finished); progress (retrieval, run start, training batches and
//! epochs) goes to one callback.
//!
//! ```no_run
//! # fn main() -> hindsight_engine::Result<()> {
//! use hindsight_engine::grid::{Grid, GridSpec};
//! let index = hindsight_index::BehaviorIndex::open("index/taobao")?;
//! let spec = GridSpec::default();
//! let mut grid = Grid::new(&index, spec, Box::new(|_event| {}))?;
//! while let Some(result) = grid.run_next()? {
//!     println!("{} AUC {:?}", result.run, result.row.eval.all.auc);
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hindsight_index::BehaviorIndex;
use hindsight_model::{Device, ModelConfig, ModelKind, StopMetric, TrainedModel};
use hindsight_retrieval::StrategyKind;
use hindsight_samples::{Protocol, SampleCounts};
use serde::Serialize;

use crate::{EngineError, EvalReport, Prepared, Result, TrainProgress};

/// What a grid runs.
#[derive(Debug, Clone, PartialEq)]
pub struct GridSpec {
    /// Retrieval strategies, in run order.
    pub strategies: Vec<StrategyKind>,
    /// Models trained on each strategy's histories at the main N.
    pub models: Vec<ModelKind>,
    /// The main budget N.
    pub n: usize,
    /// DIN is also run at this N for every strategy (0, or equal to `n`:
    /// not).
    pub din_small_n: usize,
    /// Maximum epochs of every model (`None`: each model config's).
    pub epochs: Option<usize>,
    /// What early stopping maximises (`None`: the model config's).
    pub stop_metric: Option<StopMetric>,
    /// Where models train and score.
    pub device: Device,
    /// The sampling protocol.
    pub protocol: Protocol,
    /// Retrieval threads.
    pub threads: usize,
}

impl Default for GridSpec {
    /// The report's grid: recent, sim-hard, ubr, hybrid x sum_pool, din,
    /// dien at N = 50, DIN at N = 20, the default protocol.
    fn default() -> Self {
        GridSpec {
            // The embedding strategies need embeddings attached first.
            strategies: StrategyKind::ALL
                .into_iter()
                .filter(|k| !k.needs_embeddings())
                .collect(),
            models: vec![ModelKind::SumPool, ModelKind::Din, ModelKind::Dien],
            n: 50,
            din_small_n: 20,
            epochs: None,
            stop_metric: None,
            device: Device::Auto,
            protocol: Protocol::default(),
            threads: 2,
        }
    }
}

/// One run of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridRun {
    /// Retrieval strategy.
    pub strategy: StrategyKind,
    /// Budget N.
    pub n: usize,
    /// Model trained.
    pub model: ModelKind,
}

impl fmt::Display for GridRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} / {} N={}", self.model, self.strategy, self.n)
    }
}

impl GridSpec {
    /// The runs in order: for each strategy every model at `n`, then (when
    /// `din_small_n` is neither 0 nor `n`) DIN at `din_small_n` for each
    /// strategy.
    pub fn runs(&self) -> Vec<GridRun> {
        let mut runs: Vec<GridRun> = self
            .strategies
            .iter()
            .flat_map(|&strategy| {
                self.models.iter().map(move |&model| GridRun {
                    strategy,
                    n: self.n,
                    model,
                })
            })
            .collect();
        if self.din_small_n > 0 && self.din_small_n != self.n {
            runs.extend(self.strategies.iter().map(|&strategy| GridRun {
                strategy,
                n: self.din_small_n,
                model: ModelKind::Din,
            }));
        }
        runs
    }

    /// The model config of a run: the model's defaults with this grid's
    /// epochs and stop metric, validated.
    pub fn config(&self, model: ModelKind) -> Result<ModelConfig> {
        let mut cfg = ModelConfig::new(model);
        if let Some(e) = self.epochs {
            cfg.epochs = e;
        }
        if let Some(m) = self.stop_metric {
            cfg.stop_metric = m;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every run's config (before any long retrieval or training)
    /// and returns the early stopping the runs use: the stop metric and
    /// patience (of the last model's config).
    pub fn check(&self) -> Result<(StopMetric, usize)> {
        if self.strategies.is_empty() {
            return Err(EngineError::EmptyGrid("strategies"));
        }
        if self.n == 0 {
            return Err(EngineError::InvalidInput(
                "the grid's N must be at least 1".into(),
            ));
        }
        let mut stop = None;
        for &kind in &self.models {
            let cfg = self.config(kind)?;
            stop = Some((cfg.stop_metric, cfg.patience));
        }
        stop.ok_or(EngineError::EmptyGrid("models"))
    }
}

/// A progress event of a [`Grid`].
#[derive(Debug, Clone, Copy)]
pub enum GridEvent<'a> {
    /// The histories of a (strategy, N) are being retrieved (once for all
    /// the models trained on them).
    Retrieving {
        /// Strategy.
        strategy: StrategyKind,
        /// Budget N.
        n: usize,
    },
    /// A run starts training.
    Run {
        /// The run.
        run: GridRun,
        /// 0-based position in [`Grid::runs`].
        position: usize,
        /// Number of runs.
        total: usize,
        /// Seconds since the grid was created.
        elapsed_secs: f64,
    },
    /// Training progress of the current run.
    Train(TrainProgress<'a>),
}

/// The progress callback of a [`Grid`].
pub type GridProgress = Box<dyn FnMut(&GridEvent<'_>) + Send>;

/// The figures of one run, as the report records them.
#[derive(Debug, Clone, Serialize)]
pub struct GridRow {
    /// Retrieval strategy.
    pub strategy: String,
    /// Budget N.
    pub n: usize,
    /// Model kind.
    pub model: String,
    /// The evaluation on the test split.
    pub eval: EvalReport,
    /// Wall-clock seconds of training, validation included.
    pub train_seconds: f64,
    /// Training examples per second over the epochs run.
    pub train_samples_per_sec: f64,
    /// Epochs run.
    pub epochs: usize,
    /// The epoch whose weights were kept (1-based).
    pub best_epoch: usize,
    /// Its validation AUC.
    pub best_valid_auc: Option<f64>,
    /// Seconds spent retrieving the histories of this (strategy, N).
    pub retrieval_seconds: f64,
}

/// One finished run: its figures and the trained model (to save or drop).
pub struct GridResult {
    /// The run.
    pub run: GridRun,
    /// Its figures.
    pub row: GridRow,
    /// The trained model, with its retrieval settings.
    pub model: TrainedModel,
}

/// A grid being run on one index.
pub struct Grid<'a> {
    index: &'a BehaviorIndex,
    spec: GridSpec,
    runs: Vec<GridRun>,
    next: usize,
    prepared: Option<Prepared>,
    samples: Option<SampleCounts>,
    stopping: (StopMetric, usize),
    progress: Arc<Mutex<GridProgress>>,
    started: Instant,
}

impl<'a> Grid<'a> {
    /// A grid on `index` ([`GridSpec::check`]ed), reporting to `progress`.
    pub fn new(index: &'a BehaviorIndex, spec: GridSpec, progress: GridProgress) -> Result<Self> {
        let stopping = spec.check()?;
        Ok(Grid {
            index,
            runs: spec.runs(),
            spec,
            next: 0,
            prepared: None,
            samples: None,
            stopping,
            progress: Arc::new(Mutex::new(progress)),
            started: Instant::now(),
        })
    }

    /// The runs, in the order [`Grid::run_next`] runs them.
    pub fn runs(&self) -> &[GridRun] {
        &self.runs
    }

    /// The early stopping of the runs: stop metric and patience.
    pub fn stopping(&self) -> (StopMetric, usize) {
        self.stopping
    }

    /// The sample counts of the protocol (known once the first run's
    /// histories are retrieved).
    pub fn samples(&self) -> Option<&SampleCounts> {
        self.samples.as_ref()
    }

    fn emit(&self, event: &GridEvent<'_>) {
        let mut f = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        f(event);
    }

    /// Trains and evaluates the next run; `None` when every run is done.
    pub fn run_next(&mut self) -> Result<Option<GridResult>> {
        let Some(&run) = self.runs.get(self.next) else {
            return Ok(None);
        };
        let reuse = self
            .prepared
            .as_ref()
            .is_some_and(|p| p.settings.strategy == run.strategy && p.settings.n == run.n);
        if !reuse {
            self.prepared = None;
            self.emit(&GridEvent::Retrieving {
                strategy: run.strategy,
                n: run.n,
            });
            let prepared = Prepared::new(
                self.index,
                run.strategy,
                run.n,
                self.spec.protocol.clone(),
                self.spec.threads,
            )?;
            self.samples.get_or_insert_with(|| prepared.counts.clone());
            self.prepared = Some(prepared);
        }
        self.emit(&GridEvent::Run {
            run,
            position: self.next,
            total: self.runs.len(),
            elapsed_secs: self.started.elapsed().as_secs_f64(),
        });
        let cfg = self.spec.config(run.model)?;
        let progress = self.progress.clone();
        let prepared = self.prepared.as_ref().expect("prepared above");
        let (model, tr) = prepared.train_with_progress(&cfg, self.spec.device, move |p| {
            let mut f = progress.lock().unwrap_or_else(|e| e.into_inner());
            f(&GridEvent::Train(*p));
        })?;
        let eval = prepared.evaluate(&model)?;
        let trained: f64 = tr.epochs.iter().map(|e| e.seconds).sum();
        let seen = tr.train_examples as f64 * tr.epochs.len() as f64;
        let row = GridRow {
            strategy: run.strategy.as_str().to_owned(),
            n: run.n,
            model: run.model.as_str().to_owned(),
            eval,
            train_seconds: tr.seconds,
            train_samples_per_sec: seen / trained.max(1e-9),
            epochs: tr.epochs.len(),
            best_epoch: tr.best_epoch,
            best_valid_auc: tr.best_valid_auc,
            retrieval_seconds: prepared.retrieval_secs,
        };
        self.next += 1;
        Ok(Some(GridResult { run, row, model }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(n: usize, din_small_n: usize) -> GridSpec {
        GridSpec {
            strategies: vec![StrategyKind::Recent, StrategyKind::Ubr],
            models: vec![ModelKind::SumPool, ModelKind::Dien],
            n,
            din_small_n,
            ..GridSpec::default()
        }
    }

    #[test]
    fn runs_are_strategies_by_models_then_din_at_the_small_n() {
        let runs = spec(50, 20).runs();
        let got: Vec<(StrategyKind, usize, ModelKind)> =
            runs.iter().map(|r| (r.strategy, r.n, r.model)).collect();
        use ModelKind::*;
        use StrategyKind::*;
        assert_eq!(
            got,
            vec![
                (Recent, 50, SumPool),
                (Recent, 50, Dien),
                (Ubr, 50, SumPool),
                (Ubr, 50, Dien),
                (Recent, 20, Din),
                (Ubr, 20, Din),
            ]
        );
        // No small-N runs when it is 0 or the main N.
        assert_eq!(spec(50, 0).runs().len(), 4);
        assert_eq!(spec(50, 50).runs().len(), 4);
        assert_eq!(GridSpec::default().runs().len(), 4 * 3 + 4);
    }

    #[test]
    fn check_refuses_an_empty_grid_and_bad_configs() {
        let mut s = spec(50, 20);
        s.models.clear();
        assert!(matches!(s.check(), Err(EngineError::EmptyGrid("models"))));
        let mut s = spec(50, 20);
        s.strategies.clear();
        assert!(matches!(
            s.check(),
            Err(EngineError::EmptyGrid("strategies"))
        ));
        let mut s = spec(50, 20);
        s.epochs = Some(0);
        assert!(s.check().is_err());
        let mut s = spec(50, 20);
        s.stop_metric = Some(StopMetric::Auc);
        let (metric, patience) = s.check().unwrap();
        assert_eq!(metric, StopMetric::Auc);
        assert_eq!(patience, ModelConfig::new(ModelKind::Dien).patience);
        assert_eq!(
            s.config(ModelKind::Din).unwrap().stop_metric,
            StopMetric::Auc
        );
    }
}
