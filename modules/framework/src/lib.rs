//! kiln-framework: the vocabulary every Kiln module shares — addresses, coins,
//! the per-transaction execution context (block info, gas meter, events), typed
//! errors with ABCI codes, and typed state helpers over `kiln-state`.
//!
//! It owns no state of its own. Modules depend on it; the app wires them.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod address;
pub mod coin;
pub mod component;
pub mod context;
pub mod epoch;
pub mod error;
pub mod event;
pub mod gas;
pub mod msg;
pub mod params;
pub mod query;
pub mod settle;
pub mod state_ext;
pub mod values;

pub use address::Address;
pub use borsh;
pub use coin::{Coin, Coins};
pub use component::{Component, GenesisCtx};
pub use context::{BlockInfo, ExecCtx};
pub use epoch::{EpochInfo, Stage};
pub use error::{TxError, TxResult};
pub use event::Event;
pub use gas::{GasMeter, Metered};
pub use kiln_state::{Changes, EmptyState, Overlay, StateRead, StateWrite, StoreError};
pub use msg::MsgKind;
pub use settle::{ComputeOutcome, RawWeightSource, RawWeights};
pub use state_ext::{StateReadExt, StateWriteExt};
pub use values::StoredValue;

/// The base denomination (6 decimals: 1 KILN = 1 000 000 ukiln).
pub const BASE_DENOM: &str = "ukiln";
/// Bech32 human-readable prefix of account addresses.
pub use coin::amount_string as serde_u128;

pub const ADDRESS_PREFIX: &str = "kiln";
/// Prefix of hosts' operator addresses (`kilnvaloper1…`), as Cosmos chains
/// name validators in the staking messages.
pub const VALOPER_PREFIX: &str = "kilnvaloper";
