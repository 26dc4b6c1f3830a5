//! kiln-store (being built).
