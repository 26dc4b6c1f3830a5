//! kiln-store: Kiln's authenticated, versioned state (see the module docs of
//! `storage` for the on-disk layout) and the [`StateRead`]/[`StateWrite`] seam
//! that consensus code uses to reach it.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod state;

pub use state::{Changes, EmptyState, Overlay, StateRead, StateWrite, StoreError};
