//! kiln-genesis (being built).
