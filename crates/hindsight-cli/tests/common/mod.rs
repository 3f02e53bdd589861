//! Helpers shared by the binary's integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `hindsight` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hindsight"))
}

/// The real Taobao log beside the repository, or `None` (and a note) when
/// it is absent.
pub fn taobao_csv() -> Option<PathBuf> {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/taobao/UserBehavior.csv");
    p.exists().then_some(p).or_else(|| {
        eprintln!("skipping: real data not found");
        None
    })
}
