//! Forward-pass timing of hindsight's CTR models on the CPU, for
//! `scripts/forward_compare.sh`, which runs the same model in PyTorch eager
//! and prints the ratio.
//!
//! ```sh
//! cargo run --release -p hindsight-model --example forward_timing -- --model din --batch 100,1024 --threads 1
//! ```
//!
//! Prints one JSON line per batch size: the model's table sizes and
//! layer widths (so that the PyTorch side builds the same model), and the
//! median, p99 and mean of a forward pass (eval mode, no grad, sigmoid
//! and copy-out included, batch building excluded) over `--iters` runs
//! after `--warmup` runs. Examples are Taobao-shaped: N = 50 behaviors
//! over 5,000 items in 100 categories, 4 behavior types, no tags.

use hindsight_core::{Behavior, ItemFeatures, Target};
use hindsight_model::{Device, Example, FeatureVocab, ModelConfig, ModelKind, TrainedModel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn examples(count: usize, n: usize, rng: &mut ChaCha8Rng) -> Vec<Example> {
    let item = |rng: &mut ChaCha8Rng| {
        let i: u64 = rng.random_range(0..5_000);
        (i, ItemFeatures::with_categories(vec![i % 100]))
    };
    (0..count)
        .map(|u| {
            let (target_item, target_f) = item(rng);
            let history = (0..n as u32)
                .map(|seq| {
                    let (item_id, features) = item(rng);
                    Behavior {
                        user_id: u as u64,
                        seq,
                        item_id,
                        features,
                        behavior_type: rng.random_range(0..4),
                        timestamp: 1_000_000 + seq as i64 * 60,
                    }
                })
                .collect();
            Example {
                user_id: u as u64,
                label: rng.random_range(0..2),
                target: Target {
                    item_id: target_item,
                    features: target_f,
                },
                timestamp: 1_000_000 + 3_600,
                history,
            }
        })
        .collect()
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a value, got {v:?}"))
        })
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind: ModelKind = arg(&args, "--model", "din".to_owned())
        .parse()
        .expect("--model: a model name (sum_pool, din, dien, ...)");
    let batches: Vec<usize> = arg(&args, "--batch", "100,1024".to_owned())
        .split(',')
        .map(|b| b.trim().parse().expect("--batch: comma-separated sizes"))
        .collect();
    let threads: i32 = arg(&args, "--threads", 1);
    let iters: usize = arg(&args, "--iters", 50);
    let warmup: usize = arg(&args, "--warmup", 5);
    let n: usize = arg(&args, "--n", 50);
    hindsight_model::set_cpu_threads(threads);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let vocab_examples = examples(2_000, n, &mut rng);
    let cfg = ModelConfig {
        use_tags: false,
        ..ModelConfig::new(kind)
    };
    let vocab = FeatureVocab::builder().build(&vocab_examples);
    let sizes = serde_json::json!({
        "items": vocab.item_table_size(),
        "categories": vocab.category_table_size(),
        "behavior_types": vocab.behavior_type_table_size(),
        "time_gaps": hindsight_model::TIME_GAP_BUCKETS,
        "embedding_dim": cfg.embedding_dim,
        "attention_hidden": cfg.attention_hidden,
        "mlp_hidden": cfg.mlp_hidden,
        "activation": cfg.activation,
    });
    let model = TrainedModel::init(cfg, vocab, n, Device::Cpu).expect("the model initialises");
    for &b in &batches {
        let batch = model
            .batch(&examples(b, n, &mut rng))
            .expect("the batch builds");
        for _ in 0..warmup {
            model.score_batch(&batch).expect("forward");
        }
        let mut ms: Vec<f64> = (0..iters)
            .map(|_| {
                let t = std::time::Instant::now();
                model.score_batch(&batch).expect("forward");
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        let median = hindsight_core::metrics::percentile(&ms, 0.5);
        let p99 = hindsight_core::metrics::percentile(&ms, 0.99);
        println!(
            "{}",
            serde_json::json!({
                "impl": "hindsight (tch)", "model": kind.as_str(), "batch": b, "n": n,
                "threads": threads, "iters": iters,
                "median_ms": median, "p99_ms": p99, "mean_ms": mean,
                "samples_per_s": b as f64 / (median / 1e3),
                "sizes": sizes,
            })
        );
    }
}
