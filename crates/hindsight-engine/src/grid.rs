//! The evaluation grid: every (strategy, model) pair trained and evaluated
//! on the protocol's samples of one index, what `hindsight report` runs.
//!
//! The grid is the strategies x models at the main N, the small-N models
//! (DIN) at a smaller N for every strategy, the full-history reference
//! (DIN over the whole history before the target, capped at 1,000
//! behaviors: `recent` at that N) and any extra (strategy, model) runs at
//! the main N, each with every training seed ([`GridSpec::runs`]). The
//! samples are fixed by the protocol (its sampler seed); a training seed
//! changes only the model's initialisation and batch order. Histories are
//! retrieved once per (strategy, N) and shared by the models and seeds
//! trained on them. [`Grid::run_next`] trains and evaluates one run at a time, so a
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

use std::collections::HashMap;
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
    /// The small-N models are also run at this N for every strategy (0, or
    /// equal to `n`: not).
    pub din_small_n: usize,
    /// The models run at `din_small_n` (the report: DIN).
    pub small_n_models: Vec<ModelKind>,
    /// The full-history reference: these models over `recent` at
    /// `full_history_n` (0: no reference).
    pub full_history_n: usize,
    /// The models of the full-history reference (the report: DIN).
    pub full_history_models: Vec<ModelKind>,
    /// Further (strategy, model) runs at the main N, after the others
    /// (the hard-negative table's ATRank and BST with the best strategy).
    pub extra: Vec<(StrategyKind, ModelKind)>,
    /// Training seeds (initialisation and batch order): every run is
    /// trained once with each.
    pub seeds: Vec<u64>,
    /// Each model's config (defaults for a model not in the map); the
    /// grid's `epochs`, `patience` and `stop_metric` override it.
    pub model_configs: HashMap<ModelKind, ModelConfig>,
    /// Maximum epochs of every model (`None`: each model config's).
    pub epochs: Option<usize>,
    /// Early-stopping patience of every model (`None`: each model
    /// config's).
    pub patience: Option<usize>,
    /// What early stopping maximises (`None`: the model config's).
    pub stop_metric: Option<StopMetric>,
    /// Where models train and score.
    pub device: Device,
    /// The sampling protocol.
    pub protocol: Protocol,
    /// Retrieval threads.
    pub threads: usize,
}

/// The training seeds of a report: three, as the protocol asks.
pub const DEFAULT_SEEDS: [u64; 3] = [1, 2, 3];

/// The full-history reference's cap: all behaviors before the target, at
/// most this many.
pub const FULL_HISTORY_N: usize = 1000;

impl Default for GridSpec {
    /// The report's grid: recent, sim-hard, ubr, hybrid x sum_pool, din,
    /// dien, atrank, bst at N = 50, DIN at N = 20, the full-history DIN,
    /// seeds 1, 2, 3, the default protocol, each model config's epochs
    /// (20) and patience (2).
    fn default() -> Self {
        GridSpec {
            // The embedding strategies need embeddings attached first.
            strategies: StrategyKind::ALL
                .into_iter()
                .filter(|k| !k.needs_embeddings())
                .collect(),
            models: ModelKind::ALL.to_vec(),
            n: 50,
            din_small_n: 20,
            small_n_models: vec![ModelKind::Din],
            full_history_n: FULL_HISTORY_N,
            full_history_models: vec![ModelKind::Din],
            extra: Vec::new(),
            seeds: DEFAULT_SEEDS.to_vec(),
            model_configs: HashMap::new(),
            epochs: None,
            patience: None,
            stop_metric: None,
            device: Device::Auto,
            protocol: Protocol::default(),
            threads: 2,
        }
    }
}

/// Which part of the grid a run belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// Strategies x models at the main N.
    Main,
    /// The small-N models at the small N.
    SmallN,
    /// The full-history reference.
    FullHistory,
    /// An extra (strategy, model) run at the main N.
    Extra,
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
    /// Training seed.
    pub seed: u64,
    /// The part of the grid.
    pub section: Section,
}

impl fmt::Display for GridRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} / {} N={} seed {}",
            self.model, self.strategy, self.n, self.seed
        )?;
        if self.section == Section::FullHistory {
            f.write_str(" (full history)")?;
        }
        Ok(())
    }
}

impl GridSpec {
    /// The runs in order, each once per seed: for each strategy every
    /// model at `n`; then (when `din_small_n` is neither 0 nor `n`) the
    /// small-N models at `din_small_n` for each strategy; then the
    /// full-history models on `recent` at `full_history_n` (when not 0);
    /// then the extra runs at `n`.
    pub fn runs(&self) -> Vec<GridRun> {
        let mut groups: Vec<(StrategyKind, usize, ModelKind, Section)> = Vec::new();
        for &strategy in &self.strategies {
            for &model in &self.models {
                groups.push((strategy, self.n, model, Section::Main));
            }
        }
        if self.din_small_n > 0 && self.din_small_n != self.n {
            for &strategy in &self.strategies {
                for &model in &self.small_n_models {
                    groups.push((strategy, self.din_small_n, model, Section::SmallN));
                }
            }
        }
        if self.full_history_n > 0 {
            for &model in &self.full_history_models {
                groups.push((
                    StrategyKind::Recent,
                    self.full_history_n,
                    model,
                    Section::FullHistory,
                ));
            }
        }
        for &(strategy, model) in &self.extra {
            groups.push((strategy, self.n, model, Section::Extra));
        }
        groups
            .into_iter()
            .flat_map(|(strategy, n, model, section)| {
                self.seeds.iter().map(move |&seed| GridRun {
                    strategy,
                    n,
                    model,
                    seed,
                    section,
                })
            })
            .collect()
    }

    /// The model config of a run: the model's config (from
    /// `model_configs` or the defaults) with this grid's epochs, patience
    /// and stop metric, and the run's seed, validated.
    pub fn config(&self, model: ModelKind) -> Result<ModelConfig> {
        let mut cfg = self
            .model_configs
            .get(&model)
            .cloned()
            .unwrap_or_else(|| ModelConfig::new(model));
        cfg.kind = model;
        if let Some(e) = self.epochs {
            cfg.epochs = e;
        }
        if let Some(p) = self.patience {
            cfg.patience = p;
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
        if self.strategies.is_empty() && self.extra.is_empty() {
            return Err(EngineError::EmptyGrid("strategies"));
        }
        if self.seeds.is_empty() {
            return Err(EngineError::EmptyGrid("seeds"));
        }
        if self.n == 0 {
            return Err(EngineError::InvalidInput(
                "the grid's N must be at least 1".into(),
            ));
        }
        let mut stop = None;
        let all = self
            .models
            .iter()
            .chain(&self.small_n_models)
            .chain(&self.full_history_models)
            .chain(self.extra.iter().map(|(_, m)| m));
        for &kind in all {
            let cfg = self.config(kind)?;
            stop = Some((cfg.stop_metric, cfg.patience));
        }
        if self.models.is_empty() && self.extra.is_empty() {
            return Err(EngineError::EmptyGrid("models"));
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
    /// Training seed.
    pub seed: u64,
    /// The part of the grid.
    pub section: Section,
    /// Forward floating-point operations per sample at this N, estimated
    /// analytically ([`ModelConfig::flops_per_sample`]).
    pub flops_per_sample: f64,
    /// The mean number of behaviors in the test samples' model input
    /// (retrieved, at most N).
    pub mean_input_len: f64,
    /// Forward operations per test sample at its actual input length
    /// (the mean over the test samples).
    pub mean_flops_per_sample: f64,
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
        let mut cfg = self.spec.config(run.model)?;
        cfg.seed = run.seed;
        let progress = self.progress.clone();
        let prepared = self.prepared.as_ref().expect("prepared above");
        let (model, tr) = prepared.train_with_progress(&cfg, self.spec.device, move |p| {
            let mut f = progress.lock().unwrap_or_else(|e| e.into_inner());
            f(&GridEvent::Train(*p));
        })?;
        let eval = prepared.evaluate(&model)?;
        let trained: f64 = tr.epochs.iter().map(|e| e.seconds).sum();
        let seen = tr.train_examples as f64 * tr.epochs.len() as f64;
        let types = model.vocab().behavior_type_table_size();
        let lens = prepared.input_lens(hindsight_samples::Split::Test);
        let mean_len = lens.iter().sum::<usize>() as f64 / lens.len().max(1) as f64;
        let mean_flops = lens
            .iter()
            .map(|&l| cfg.flops_per_sample(l, types))
            .sum::<f64>()
            / lens.len().max(1) as f64;
        let row = GridRow {
            strategy: run.strategy.as_str().to_owned(),
            n: run.n,
            model: run.model.as_str().to_owned(),
            seed: run.seed,
            section: run.section,
            flops_per_sample: cfg.flops_per_sample(run.n, types),
            mean_input_len: mean_len,
            mean_flops_per_sample: mean_flops,
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
            full_history_n: 0,
            seeds: vec![7],
            ..GridSpec::default()
        }
    }

    #[test]
    fn runs_are_strategies_by_models_then_the_small_n_the_full_history_and_extras() {
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
        assert!(runs.iter().all(|r| r.seed == 7));
        // No small-N runs when it is 0 or the main N.
        assert_eq!(spec(50, 0).runs().len(), 4);
        assert_eq!(spec(50, 50).runs().len(), 4);
        // Every run once per seed, seeds innermost (they share histories).
        let mut s = spec(50, 0);
        s.seeds = vec![1, 2, 3];
        s.full_history_n = 1000;
        s.extra = vec![(Ubr, Bst)];
        let runs = s.runs();
        assert_eq!(runs.len(), (4 + 1 + 1) * 3);
        let seeds: Vec<u64> = runs.iter().take(3).map(|r| r.seed).collect();
        assert_eq!(seeds, vec![1, 2, 3]);
        let full = &runs[12];
        assert_eq!(
            (full.strategy, full.n, full.model, full.section),
            (Recent, 1000, Din, Section::FullHistory)
        );
        let extra = runs.last().unwrap();
        assert_eq!(
            (extra.strategy, extra.n, extra.model, extra.section),
            (Ubr, 50, Bst, Section::Extra)
        );
        // The default: 4 strategies x 5 models, DIN at N = 20, the full
        // history, three seeds.
        assert_eq!(GridSpec::default().runs().len(), (4 * 5 + 4 + 1) * 3);
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
        s.seeds.clear();
        assert!(matches!(s.check(), Err(EngineError::EmptyGrid("seeds"))));
        let mut s = spec(50, 20);
        s.epochs = Some(0);
        assert!(s.check().is_err());
        let mut s = spec(50, 20);
        s.stop_metric = Some(StopMetric::Auc);
        s.patience = Some(4);
        let (metric, patience) = s.check().unwrap();
        assert_eq!(metric, StopMetric::Auc);
        assert_eq!(patience, 4);
        assert_eq!(
            s.config(ModelKind::Din).unwrap().stop_metric,
            StopMetric::Auc
        );
        // A model's own config, under the grid's overrides.
        let mut s = spec(50, 20);
        let mut dien = ModelConfig::new(ModelKind::Dien);
        dien.aux_loss_weight = 0.1;
        dien.epochs = 3;
        s.model_configs.insert(ModelKind::Dien, dien);
        s.epochs = None;
        let cfg = s.config(ModelKind::Dien).unwrap();
        assert_eq!((cfg.aux_loss_weight, cfg.epochs), (0.1, 3));
        s.epochs = Some(9);
        assert_eq!(s.config(ModelKind::Dien).unwrap().epochs, 9);
        let mut bad = ModelConfig::new(ModelKind::Bst);
        bad.transformer_heads = 5;
        s.model_configs.insert(ModelKind::Bst, bad);
        s.extra = vec![(StrategyKind::Ubr, ModelKind::Bst)];
        assert!(s.check().is_err());
    }
}
