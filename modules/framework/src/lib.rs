//! kiln-framework (being built).
