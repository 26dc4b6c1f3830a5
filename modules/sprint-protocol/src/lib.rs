//! kiln-sprint-protocol (being built).
