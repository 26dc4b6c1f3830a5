//! kiln-authz (being built).
