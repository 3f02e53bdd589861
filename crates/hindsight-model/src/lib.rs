//! hindsight-model.
