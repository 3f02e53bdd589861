//! Forward pass throughput of the CTR models (no grad, eval mode), DIN and
//! DIEN (and the sum-pooling baseline) at batch 1, 32, 256 and 1024 with
//! N = 50 full histories, on the CPU (libtorch threads: `HINDSIGHT_TORCH_THREADS`,
//! default 1), or on CUDA with `HINDSIGHT_BENCH_DEVICE=cuda`.
//!
//! Goal (DESIGN.md): DIN >= 30k samples/s at batch 1024 on the 2-core CPU.
//! Throughput is reported by criterion in elements (samples) per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hindsight_core::{Behavior, ItemFeatures, Target};
use hindsight_model::{Device, Example, FeatureVocab, ModelConfig, ModelKind, TrainedModel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N: usize = 50;

/// Taobao-shaped examples: 50 behaviors each over 5,000 items in 100 categories.
fn examples(count: usize, rng: &mut ChaCha8Rng) -> Vec<Example> {
    let item = |rng: &mut ChaCha8Rng| {
        let i: u64 = rng.random_range(0..5_000);
        (i, ItemFeatures::with_categories(vec![i % 100]))
    };
    (0..count)
        .map(|u| {
            let (target_item, target_f) = item(rng);
            let history = (0..N as u32)
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

fn forward(c: &mut Criterion) {
    let threads = std::env::var("HINDSIGHT_TORCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    hindsight_model::set_cpu_threads(threads);
    let device: Device = std::env::var("HINDSIGHT_BENCH_DEVICE")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(Device::Cpu);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let vocab_examples = examples(2_000, &mut rng);
    let mut group = c.benchmark_group("model_forward");
    group.sample_size(10);
    for kind in [ModelKind::SumPool, ModelKind::Din, ModelKind::Dien] {
        let cfg = ModelConfig {
            use_tags: false,
            ..ModelConfig::new(kind)
        };
        let vocab = FeatureVocab::builder().build(&vocab_examples);
        let model = TrainedModel::init(cfg, vocab, N, device).expect("model initializes");
        for batch_size in [1usize, 32, 256, 1024] {
            let batch = model
                .batch(&examples(batch_size, &mut rng))
                .expect("batch builds");
            group.throughput(Throughput::Elements(batch_size as u64));
            group.bench_with_input(
                BenchmarkId::new(kind.as_str(), batch_size),
                &batch,
                |b, batch| {
                    b.iter(|| model.score_batch(batch).expect("forward"));
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
