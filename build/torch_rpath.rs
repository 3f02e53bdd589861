//! Build script shared by the crates whose binaries link libtorch
//! (hindsight-model, and with their `model` feature hindsight-engine,
//! hindsight-server, hindsight-cli, hindsight-benches): it gives the
//! binaries and test binaries of the crate an rpath to libtorch's lib
//! folder, so that they run without `LD_LIBRARY_PATH` (without sourcing
//! `scripts/env.sh`).
//!
//! The folder is the one torch-sys linked against, which torch-sys reports
//! to its direct dependents as `DEP_TCH_LIBTORCH_LIB` (hindsight-model);
//! hindsight-model passes it on as `DEP_HINDSIGHT_MODEL_LIBTORCH_LIB` to
//! the crates that depend on it (its `links` key). Without either (the
//! `model` feature off) this does nothing.

use std::env;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=DEP_HINDSIGHT_MODEL_LIBTORCH_LIB");
    let Some(dir) = ["DEP_TCH_LIBTORCH_LIB", "DEP_HINDSIGHT_MODEL_LIBTORCH_LIB"]
        .iter()
        .find_map(|k| env::var(k).ok().filter(|d| !d.is_empty()))
    else {
        return;
    };
    if env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux" || os == "macos") {
        // Binaries, tests, benches and examples of this crate.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    if env::var_os("CARGO_MANIFEST_LINKS").is_some() {
        // hindsight-model: pass the folder on to its dependents.
        println!("cargo:libtorch_lib={dir}");
    }
}
