//! Typed access to the host registry.

use kiln_framework::{Address, StateReadExt, StateWriteExt, TxResult};
use kiln_state::{StateRead, StateWrite};

use crate::keys;

/// A registered host.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
pub struct Host {
    pub owner: Address,
    pub worker_url: String,
    /// Hex of the 32-byte ed25519 consensus key.
    pub consensus_pubkey: String,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub hardware: String,
    #[serde(default)]
    pub registered_height: u64,
}

impl Host {
    pub fn consensus_key_bytes(&self) -> Vec<u8> {
        hex::decode(&self.consensus_pubkey).unwrap_or_default()
    }
}

/// Reads of the registry, for any state view.
pub trait HostsExt: StateRead {
    fn host(&self, addr: &Address) -> TxResult<Option<Host>> {
        self.get_value(&keys::host(addr))
    }

    fn is_host(&self, addr: &Address) -> TxResult<bool> {
        Ok(self.get_raw(&keys::host(addr))?.is_some())
    }

    /// Every host, in address order.
    fn hosts(&self) -> TxResult<Vec<Host>> {
        Ok(self
            .prefix_values::<Host>(keys::HOST_PREFIX)?
            .into_iter()
            .map(|(_, h)| h)
            .collect())
    }

    /// The host whose consensus key is `pubkey`, if any.
    fn host_by_consensus_key(&self, pubkey: &[u8]) -> TxResult<Option<Address>> {
        Ok(self
            .get_raw(&keys::by_consensus(pubkey))?
            .and_then(|b| Address::from_bytes(&b)))
    }
}

impl<T: StateRead + ?Sized> HostsExt for T {}

/// Writes `host` and its consensus-key index entry.
pub(crate) fn put_host<S: StateWrite + ?Sized>(state: &mut S, host: &Host) -> TxResult<()> {
    state.put_value(keys::host(&host.owner), host)?;
    state.put_raw(
        keys::by_consensus(&host.consensus_key_bytes()),
        host.owner.as_bytes().to_vec(),
    );
    Ok(())
}
