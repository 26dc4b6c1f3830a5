//! kiln-node (being built).
