//! kiln-bank (being built).
