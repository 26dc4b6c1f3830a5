//! kiln-app (being built).
