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

/// The hosts that changed their consensus key in the current block, in
/// address order; their markers are deleted. Staking calls this at the end
/// of the block to swap the keys it gave CometBFT (see
/// `kiln_staking::validators`); nothing else consumes the markers, so they
/// never outlive the block that wrote them.
pub fn take_key_rotations<S: StateWrite + ?Sized>(state: &mut S) -> TxResult<Vec<Address>> {
    let mut hosts = Vec::new();
    let mut keys_to_delete = Vec::new();
    state.for_each_under(keys::KEY_ROTATED_PREFIX, |suffix, _| {
        if let Some(addr) = Address::from_bytes(suffix) {
            hosts.push(addr);
        }
        keys_to_delete.push([keys::KEY_ROTATED_PREFIX, suffix].concat());
        Ok(())
    })?;
    for key in keys_to_delete {
        state.delete_raw(key);
    }
    Ok(hosts)
}

/// Writes `host` and its consensus-key index entry.
pub(crate) fn put_host<S: StateWrite + ?Sized>(state: &mut S, host: &Host) -> TxResult<()> {
    state.put_value(keys::host(&host.owner), host)?;
    state.put_raw(
        keys::by_consensus(&host.consensus_key_bytes()),
        host.owner.as_bytes().to_vec(),
    );
    Ok(())
}
