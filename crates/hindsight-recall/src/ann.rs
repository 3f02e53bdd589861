//! Approximate nearest-neighbour search over item vectors, for recall by
//! inner product (SASRec scores an item by `user · item`).
//!
//! [`AnnIndex`] is an HNSW graph (Malkov & Yashunin, "Efficient and robust
//! approximate nearest neighbor search using Hierarchical Navigable Small
//! World graphs", TPAMI 2020), built with the `hnsw_rs` crate
//! (`examples/ann_bench.rs` measures it against `instant-distance`; the
//! first figures, docs/benchmarks.md `ann`, favour `instant-distance` at
//! equal ef, so the choice is still open). [`ExactIndex`] is brute force: the
//! baseline of the benchmark and the oracle of the tests.
//!
//! **Inner product through L2.** HNSW libraries search by a metric; the
//! maximum-inner-product search is turned into an L2 search with the
//! augmentation of Bachrach et al. ("Speeding up the Xbox recommender
//! system using a Euclidean transformation for inner-product spaces",
//! RecSys 2014): with `M` the largest item norm, an item `x` is indexed as
//! `[x, sqrt(M² - |x|²)]` and a query `q` searched as `[q, 0]`; then
//! `|q' - x'|² = |q|² + M² - 2 q·x`, so the nearest items in L2 are exactly
//! those of largest inner product, whatever the items' norms. Scores are
//! returned as inner products, recovered from the L2 distance.
//!
//! **On disk** (`save(dir)`): `ann.json` (format `hindsight-ann`, version
//! [`FORMAT_VERSION`], the parameters, dimension, count, `M`, the
//! `source_sha256` of the checkpoint whose item vectors it holds, and the
//! sha256 of each file below), `ids.bin` (the item ids, u64 little endian,
//! in graph order), `graph.hnsw.graph` and `graph.hnsw.data` (`hnsw_rs`'s
//! dump). [`AnnIndex::load`] checks the format, the version, that the
//! source checkpoint is the expected one, and every file's sha256 before
//! reading the graph: a mismatched pair or a damaged file is an error that
//! says to rebuild, never a panic inside the graph reader.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use hindsight_core::ItemId;
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::{DistL2, Hnsw};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{RecallError, Result};

/// The version of the on-disk format written by [`AnnIndex::save`].
pub const FORMAT_VERSION: u32 = 1;
/// The `format` field of `ann.json`.
pub const FORMAT: &str = "hindsight-ann";
/// The manifest's file name.
pub const MANIFEST: &str = "ann.json";
const IDS: &str = "ids.bin";
const BASENAME: &str = "graph";
/// The largest `m` (`hnsw_rs` stores neighbour counts in a byte).
pub const MAX_M: usize = 255;
/// The largest `k` a search may ask for.
pub const MAX_K: usize = 10_000;
/// Layers of the graph (`hnsw_rs`'s maximum).
const MAX_LAYERS: usize = 16;

/// HNSW construction and search settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnParams {
    /// Neighbours per node and layer (the `M` of the paper; layer 0 keeps
    /// twice as many).
    pub m: usize,
    /// Candidate list size while inserting (quality of the graph).
    pub ef_construction: usize,
    /// Candidate list size while searching (raised to `k` when smaller):
    /// the recall / latency knob.
    pub ef_search: usize,
}

impl Default for AnnParams {
    /// m 16, ef_construction 200, ef_search 200. Not yet tuned: on the
    /// 5k x 64 benchmark catalog these give recall@100 of about 0.5
    /// (docs/benchmarks.md, `ann`); the 1M run is still to be measured.
    fn default() -> Self {
        AnnParams {
            m: 16,
            ef_construction: 200,
            ef_search: 200,
        }
    }
}

impl AnnParams {
    fn check(&self) -> Result<()> {
        if self.m < 2 || self.m > MAX_M {
            return Err(RecallError::InvalidParameter(format!(
                "ANN m must be in 2..={MAX_M}, got {}",
                self.m
            )));
        }
        if self.ef_construction == 0 || self.ef_search == 0 {
            return Err(RecallError::InvalidParameter(format!(
                "ANN ef_construction and ef_search must be at least 1 (got {} and {})",
                self.ef_construction, self.ef_search
            )));
        }
        Ok(())
    }
}

/// Checks the shapes and values of `ids` and `vectors`.
fn check_input(ids: &[ItemId], vectors: &[f32], dim: usize) -> Result<()> {
    if dim == 0 {
        return Err(RecallError::InvalidParameter(
            "vector dimension must be at least 1".to_owned(),
        ));
    }
    if ids.is_empty() {
        return Err(RecallError::InvalidParameter(
            "no item vectors to index: the catalog is empty".to_owned(),
        ));
    }
    if vectors.len() != ids.len() * dim {
        return Err(RecallError::InvalidParameter(format!(
            "{} vector values for {} items of dimension {dim}: expected {}",
            vectors.len(),
            ids.len(),
            ids.len() * dim
        )));
    }
    if let Some(p) = vectors.iter().position(|v| !v.is_finite()) {
        return Err(RecallError::InvalidParameter(format!(
            "item {} has a non-finite vector value; the checkpoint's item vectors must be finite",
            ids[p / dim]
        )));
    }
    Ok(())
}

fn check_query(query: &[f32], dim: usize, k: usize) -> Result<()> {
    if query.len() != dim {
        return Err(RecallError::InvalidParameter(format!(
            "query of dimension {}, the index holds vectors of dimension {dim}",
            query.len()
        )));
    }
    if k == 0 || k > MAX_K {
        return Err(RecallError::InvalidParameter(format!(
            "k must be in 1..={MAX_K}, got {k}"
        )));
    }
    if query.iter().any(|v| !v.is_finite()) {
        return Err(RecallError::InvalidParameter(
            "the query vector has a non-finite value".to_owned(),
        ));
    }
    Ok(())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight accumulators, so that the compiler vectorises the loop.
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
}

/// Brute-force inner-product search: every item scored, the top k kept.
#[derive(Debug, Clone)]
pub struct ExactIndex {
    ids: Vec<ItemId>,
    vectors: Vec<f32>,
    dim: usize,
}

impl ExactIndex {
    /// Holds `vectors` (row-major, `ids.len() * dim`).
    pub fn build(ids: &[ItemId], vectors: &[f32], dim: usize) -> Result<ExactIndex> {
        check_input(ids, vectors, dim)?;
        Ok(ExactIndex {
            ids: ids.to_vec(),
            vectors: vectors.to_vec(),
            dim,
        })
    }

    /// The `k` items of largest inner product with `query`, best first
    /// (ties by position in the index); at most the catalog.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(ItemId, f32)>> {
        check_query(query, self.dim, k)?;
        let k = k.min(self.ids.len());
        // A min-heap of the best k: (score, Reverse(position)).
        let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<(OrdF32, usize)>> =
            std::collections::BinaryHeap::with_capacity(k + 1);
        for (i, v) in self.vectors.chunks_exact(self.dim).enumerate() {
            let s = OrdF32(dot(query, v));
            if heap.len() < k {
                heap.push(std::cmp::Reverse((s, usize::MAX - i)));
            } else if let Some(min) = heap.peek() {
                if (s, usize::MAX - i) > min.0 {
                    heap.pop();
                    heap.push(std::cmp::Reverse((s, usize::MAX - i)));
                }
            }
        }
        let mut out: Vec<(OrdF32, usize)> = heap.into_iter().map(|r| r.0).collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        Ok(out
            .into_iter()
            .map(|(s, i)| (self.ids[usize::MAX - i], s.0))
            .collect())
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the index is empty (never: `build` refuses it).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
}

/// A total order on finite f32 (inputs are checked finite).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF32(f32);
impl Eq for OrdF32 {}
impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF32 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// `ann.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    backend: String,
    metric: String,
    params: AnnParams,
    dim: usize,
    count: usize,
    max_norm: f32,
    source_sha256: String,
    /// File name -> sha256 (hex).
    files: std::collections::BTreeMap<String, String>,
}

/// An HNSW index over item vectors, searched by inner product.
pub struct AnnIndex {
    hnsw: Hnsw<'static, f32, DistL2>,
    ids: Vec<ItemId>,
    dim: usize,
    max_norm: f32,
    params: AnnParams,
    source_sha256: String,
}

impl std::fmt::Debug for AnnIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnIndex")
            .field("items", &self.ids.len())
            .field("dim", &self.dim)
            .field("params", &self.params)
            .field("source_sha256", &self.source_sha256)
            .finish()
    }
}

impl AnnIndex {
    /// Builds the graph over `vectors` (row-major, `ids.len() * dim`) on
    /// the rayon thread pool, recording `source_sha256` (the checkpoint's
    /// weights sha256) as where the vectors came from.
    pub fn build(
        ids: &[ItemId],
        vectors: &[f32],
        dim: usize,
        params: AnnParams,
        source_sha256: &str,
    ) -> Result<AnnIndex> {
        params.check()?;
        check_input(ids, vectors, dim)?;
        let norms: Vec<f32> = vectors
            .chunks_exact(dim)
            .map(|v| dot(v, v).sqrt())
            .collect();
        let max_norm = norms.iter().copied().fold(0.0f32, f32::max);
        let augmented: Vec<Vec<f32>> = vectors
            .chunks_exact(dim)
            .zip(&norms)
            .map(|(v, &n)| {
                let mut a = Vec::with_capacity(dim + 1);
                a.extend_from_slice(v);
                a.push((max_norm * max_norm - n * n).max(0.0).sqrt());
                a
            })
            .collect();
        let hnsw = Hnsw::<f32, DistL2>::new(
            params.m,
            ids.len(),
            MAX_LAYERS,
            params.ef_construction,
            DistL2 {},
        );
        let data: Vec<(&Vec<f32>, usize)> = augmented.iter().zip(0..).collect();
        hnsw.parallel_insert(&data);
        let mut hnsw = hnsw;
        hnsw.set_searching_mode(true);
        Ok(AnnIndex {
            hnsw,
            ids: ids.to_vec(),
            dim,
            max_norm,
            params,
            source_sha256: source_sha256.to_owned(),
        })
    }

    /// The (about) `k` items of largest inner product with `query`, best
    /// first, with their inner products. Fewer than `k` only when the
    /// catalog is smaller.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(ItemId, f32)>> {
        self.search_ef(query, k, self.params.ef_search)
    }

    /// [`search`](Self::search) with another `ef_search`.
    pub fn search_ef(
        &self,
        query: &[f32],
        k: usize,
        ef_search: usize,
    ) -> Result<Vec<(ItemId, f32)>> {
        check_query(query, self.dim, k)?;
        let mut q = Vec::with_capacity(self.dim + 1);
        q.extend_from_slice(query);
        q.push(0.0);
        let q2 = dot(query, query);
        let m2 = self.max_norm * self.max_norm;
        let found = self.hnsw.search(&q, k, ef_search.max(k));
        let mut out: Vec<(ItemId, f32)> = found
            .into_iter()
            .filter_map(|n| {
                let id = *self.ids.get(n.d_id)?;
                // |q' - x'|^2 = |q|^2 + M^2 - 2 q.x
                Some((id, (q2 + m2 - n.distance * n.distance) / 2.0))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.truncate(k);
        Ok(out)
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the index is empty (never: `build` refuses it).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The parameters it was built with (`ef_search` as set).
    pub fn params(&self) -> AnnParams {
        self.params
    }

    /// Sets the search-time candidate list size.
    pub fn set_ef_search(&mut self, ef_search: usize) {
        self.params.ef_search = ef_search.max(1);
    }

    /// The sha256 of the checkpoint the vectors came from.
    pub fn source_sha256(&self) -> &str {
        &self.source_sha256
    }

    /// Writes the index into `dir` (created if missing; an index already
    /// there is replaced). The manifest is written last, atomically, so an
    /// interrupted save leaves no manifest that points at partial files.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| RecallError::Io {
                action,
                path,
                source,
            }
        };
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let manifest_path = dir.join(MANIFEST);
        if manifest_path.exists() {
            fs::remove_file(&manifest_path).map_err(io("removing", &manifest_path))?;
        }
        let graph = format!("{BASENAME}.hnsw.graph");
        let data = format!("{BASENAME}.hnsw.data");
        for f in [&graph, &data] {
            let p = dir.join(f);
            if p.exists() {
                fs::remove_file(&p).map_err(io("removing", &p))?;
            }
        }
        use hnsw_rs::api::AnnT;
        let written = self
            .hnsw
            .file_dump(dir, BASENAME)
            .map_err(|e| RecallError::Io {
                action: "writing the HNSW graph into",
                path: dir.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?;
        if written != BASENAME {
            return Err(RecallError::Io {
                action: "writing the HNSW graph into",
                path: dir.to_path_buf(),
                source: std::io::Error::other(format!(
                    "the graph was written as {written}.hnsw.* instead of {BASENAME}.hnsw.*"
                )),
            });
        }
        let ids_path = dir.join(IDS);
        let mut bytes = Vec::with_capacity(self.ids.len() * 8);
        for id in &self.ids {
            bytes.extend_from_slice(&id.to_le_bytes());
        }
        fs::write(&ids_path, &bytes).map_err(io("writing", &ids_path))?;
        let mut files = std::collections::BTreeMap::new();
        for f in [IDS.to_owned(), graph, data] {
            let p = dir.join(&f);
            files.insert(f, sha256_file(&p)?);
        }
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            version: FORMAT_VERSION,
            backend: "hnsw_rs 0.3".to_owned(),
            metric: "inner product (L2 over [x, sqrt(M^2 - |x|^2)])".to_owned(),
            params: self.params,
            dim: self.dim,
            count: self.ids.len(),
            max_norm: self.max_norm,
            source_sha256: self.source_sha256.clone(),
            files,
        };
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        let json = serde_json::to_vec_pretty(&manifest).expect("the manifest serialises");
        let mut f = fs::File::create(&tmp).map_err(io("writing", &tmp))?;
        f.write_all(&json).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("writing", &tmp))?;
        fs::rename(&tmp, &manifest_path).map_err(io("writing", &manifest_path))?;
        Ok(())
    }

    /// Reads an index written by [`save`](Self::save), refusing one built
    /// from another checkpoint than `expected_source_sha256` and any file
    /// whose sha256 differs from the manifest's.
    ///
    /// Each load keeps `hnsw_rs`'s small loader struct (paths and options,
    /// not the data) alive for the life of the process, as the graph
    /// borrows it; reloads are rare (a model reload), so this is bounded.
    pub fn load(dir: &Path, expected_source_sha256: &str) -> Result<AnnIndex> {
        let corrupt = |reason: String| RecallError::CorruptAnn {
            path: dir.to_path_buf(),
            reason,
        };
        let manifest_path = dir.join(MANIFEST);
        let text = fs::read(&manifest_path).map_err(|source| RecallError::Io {
            action: "reading the ANN manifest",
            path: manifest_path.clone(),
            source,
        })?;
        let m: Manifest = serde_json::from_slice(&text)
            .map_err(|e| corrupt(format!("{MANIFEST} is not a manifest: {e}")))?;
        if m.format != FORMAT {
            return Err(corrupt(format!(
                "{MANIFEST} has format {:?}, not {FORMAT:?}",
                m.format
            )));
        }
        if m.version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {} (this build reads version {FORMAT_VERSION})",
                m.version
            )));
        }
        if m.source_sha256 != expected_source_sha256 {
            return Err(RecallError::AnnSourceMismatch {
                path: dir.to_path_buf(),
                expected: expected_source_sha256.to_owned(),
                found: m.source_sha256,
            });
        }
        m.params.check().map_err(|e| corrupt(e.to_string()))?;
        for name in [
            IDS.to_owned(),
            format!("{BASENAME}.hnsw.graph"),
            format!("{BASENAME}.hnsw.data"),
        ] {
            let want = m
                .files
                .get(&name)
                .ok_or_else(|| corrupt(format!("{MANIFEST} lists no sha256 for {name}")))?;
            let p = dir.join(&name);
            if !p.exists() {
                return Err(corrupt(format!("{name} is missing")));
            }
            let got = sha256_file(&p)?;
            if &got != want {
                return Err(corrupt(format!(
                    "{name} has sha256 {got}, the manifest says {want}"
                )));
            }
        }
        let bytes = fs::read(dir.join(IDS)).map_err(|source| RecallError::Io {
            action: "reading",
            path: dir.join(IDS),
            source,
        })?;
        if bytes.len() != m.count * 8 {
            return Err(corrupt(format!(
                "{IDS} holds {} bytes for {} items",
                bytes.len(),
                m.count
            )));
        }
        let ids: Vec<ItemId> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let loader: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, BASENAME)));
        let mut hnsw: Hnsw<'static, f32, DistL2> = loader
            .load_hnsw::<f32, DistL2>()
            .map_err(|e| corrupt(format!("the HNSW graph does not load: {e}")))?;
        if hnsw.get_nb_point() != m.count {
            return Err(corrupt(format!(
                "the graph holds {} points, the manifest {}",
                hnsw.get_nb_point(),
                m.count
            )));
        }
        hnsw.set_searching_mode(true);
        Ok(AnnIndex {
            hnsw,
            ids,
            dim: m.dim,
            max_norm: m.max_norm,
            params: m.params,
            source_sha256: m.source_sha256,
        })
    }
}

fn sha256_file(path: &PathBuf) -> Result<String> {
    let bytes = fs::read(path).map_err(|source| RecallError::Io {
        action: "reading",
        path: path.clone(),
        source,
    })?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `n` seeded vectors of dimension `dim` with values in [-1, 1).
    fn vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        (0..n * dim)
            .map(|i| {
                let r = hindsight_core::splitmix64(seed ^ (i as u64).wrapping_mul(0x9e37));
                (r >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn exact_search_is_the_brute_force_top_k() {
        let ids = [10, 11, 12, 13];
        let v = [1.0, 0.0, 0.0, 1.0, 2.0, 2.0, -1.0, 0.0];
        let e = ExactIndex::build(&ids, &v, 2).unwrap();
        let r = e.search(&[1.0, 0.5], 3).unwrap();
        assert_eq!(r, vec![(12, 3.0), (10, 1.0), (11, 0.5)]);
        // k above the catalog returns the catalog.
        assert_eq!(e.search(&[1.0, 0.5], 9).unwrap().len(), 4);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let e = ExactIndex::build(&[1, 2], &[1.0, 0.0, 0.0, 1.0], 2).unwrap();
        for (q, k) in [
            (&[1.0f32][..], 1),
            (&[1.0, 0.0][..], 0),
            (&[f32::NAN, 0.0][..], 1),
        ] {
            let err = e.search(q, k).unwrap_err();
            assert!(matches!(err, RecallError::InvalidParameter(_)), "{err}");
        }
        assert!(e.search(&[1.0, 0.0], MAX_K + 1).is_err());
        assert!(ExactIndex::build(&[1], &[1.0, 2.0, 3.0], 2).is_err());
        assert!(ExactIndex::build(&[], &[], 2).is_err());
        assert!(ExactIndex::build(&[1], &[1.0], 0).is_err());
        let err = ExactIndex::build(&[7], &[f32::INFINITY], 1).unwrap_err();
        assert!(err.to_string().contains("item 7"), "{err}");
        for p in [
            AnnParams {
                m: 1,
                ..AnnParams::default()
            },
            AnnParams {
                m: 300,
                ..AnnParams::default()
            },
            AnnParams {
                ef_search: 0,
                ..AnnParams::default()
            },
        ] {
            let err = AnnIndex::build(&[1, 2], &[1.0, 0.0, 0.0, 1.0], 2, p, "s").unwrap_err();
            assert!(matches!(err, RecallError::InvalidParameter(_)), "{err}");
        }
    }

    #[test]
    fn ann_returns_the_exact_top_k_on_a_small_catalog() {
        let (n, dim) = (500, 8);
        let v = vectors(n, dim, 7);
        let ids: Vec<u64> = (0..n as u64).map(|i| 1000 + i).collect();
        let exact = ExactIndex::build(&ids, &v, dim).unwrap();
        let params = AnnParams {
            m: 16,
            ef_construction: 200,
            ef_search: 500,
        };
        let ann = AnnIndex::build(&ids, &v, dim, params, "abc").unwrap();
        for q in 0..20 {
            let query = &vectors(1, dim, 1000 + q)[..];
            let a = ann.search(query, 10).unwrap();
            let e = exact.search(query, 10).unwrap();
            let a_ids: Vec<u64> = a.iter().map(|x| x.0).collect();
            let e_ids: Vec<u64> = e.iter().map(|x| x.0).collect();
            assert_eq!(a_ids, e_ids, "query {q}");
            for (x, y) in a.iter().zip(&e) {
                assert!((x.1 - y.1).abs() < 1e-3, "{x:?} {y:?}");
            }
        }
    }

    #[test]
    fn save_load_round_trip_and_refusals() {
        let (n, dim) = (300, 6);
        let v = vectors(n, dim, 3);
        let ids: Vec<u64> = (0..n as u64).map(|i| i * 3).collect();
        let ann = AnnIndex::build(&ids, &v, dim, AnnParams::default(), "sha-a").unwrap();
        let dir = tempfile::tempdir().unwrap();
        ann.save(dir.path()).unwrap();
        // Saving twice replaces the index in place.
        ann.save(dir.path()).unwrap();
        let back = AnnIndex::load(dir.path(), "sha-a").unwrap();
        assert_eq!(back.len(), n);
        assert_eq!(back.dim(), dim);
        assert_eq!(back.params(), AnnParams::default());
        assert_eq!(back.source_sha256(), "sha-a");
        let q = vectors(1, dim, 99);
        assert_eq!(back.search(&q, 20).unwrap(), ann.search(&q, 20).unwrap());

        let err = AnnIndex::load(dir.path(), "sha-b").unwrap_err();
        assert!(
            matches!(err, RecallError::AnnSourceMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("sha-a") && err.to_string().contains("rebuild"));

        // A flipped byte in the graph.
        let g = dir.path().join("graph.hnsw.graph");
        let mut bytes = fs::read(&g).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&g, &bytes).unwrap();
        let err = AnnIndex::load(dir.path(), "sha-a").unwrap_err();
        assert!(matches!(err, RecallError::CorruptAnn { .. }), "{err}");
        assert!(err.to_string().contains("graph.hnsw.graph"), "{err}");

        // A damaged manifest; a missing one.
        fs::write(dir.path().join(MANIFEST), b"{ not json").unwrap();
        let err = AnnIndex::load(dir.path(), "sha-a").unwrap_err();
        assert!(matches!(err, RecallError::CorruptAnn { .. }), "{err}");
        let empty = tempfile::tempdir().unwrap();
        let err = AnnIndex::load(empty.path(), "sha-a").unwrap_err();
        assert!(matches!(err, RecallError::Io { .. }), "{err}");
    }

    #[test]
    fn a_truncated_data_file_is_refused() {
        let v = vectors(50, 4, 5);
        let ids: Vec<u64> = (0..50).collect();
        let ann = AnnIndex::build(&ids, &v, 4, AnnParams::default(), "s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        ann.save(dir.path()).unwrap();
        let d = dir.path().join("graph.hnsw.data");
        let bytes = fs::read(&d).unwrap();
        fs::write(&d, &bytes[..bytes.len() / 2]).unwrap();
        let err = AnnIndex::load(dir.path(), "s").unwrap_err();
        assert!(err.to_string().contains("graph.hnsw.data"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// The heap top-k equals sorting every score.
        #[test]
        fn exact_equals_a_full_sort(n in 1usize..60, dim in 1usize..10, k in 1usize..70, seed: u64) {
            let v = vectors(n, dim, seed);
            let ids: Vec<u64> = (0..n as u64).collect();
            let e = ExactIndex::build(&ids, &v, dim).unwrap();
            let q = vectors(1, dim, seed ^ 1);
            let mut all: Vec<(u64, f32)> = v.chunks_exact(dim).enumerate().map(|(i, x)| (i as u64, dot(&q, x))).collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            all.truncate(k);
            prop_assert_eq!(e.search(&q, k).unwrap(), all);
        }
    }
}
