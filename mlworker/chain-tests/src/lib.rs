//! kiln-mlworker-chain-tests: scenario tests of `kiln-mlworker`'s worker
//! against the real application on an in-process chain
//! (`tests/worker_network.rs`). It has no code of its own; it exists so the
//! worker crate itself never depends on the app or rocksdb, not even for tests.
