//! Shared set-up of the hindsight benchmarks.
