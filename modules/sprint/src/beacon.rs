//! The epoch's challenge beacon (SPEC §4 "Challenge and opening"; the exact
//! form is in the README's protocol notes). Hosts commit a secret hash with
//! their sprint commitment and reveal the secret in the `SecretReveal`
//! stage; at the challenge block the sprint computes, once,
//! `beacon = SHA256("kiln/beacon/v1" ‖ challenge block hash ‖ revealed
//! secrets in key order)` (by host address, then ML node id), and each
//! host's challenge (its sampled leaves and its committee) is
//! `SHA256(beacon ‖ addr)`; an ML node's sampled leaves come from
//! `SHA256(beacon ‖ addr ‖ node id)`. A block proposer can no
//! longer grind the sample: it does not know the secrets when it builds the
//! challenge block's predecessors, and it can only censor reveals, visibly.

use kiln_epochs::EpochExt;
use kiln_framework::{Address, Event, StateReadExt, TxError, TxResult};
use kiln_sprint_protocol::challenge;
use kiln_sprint_protocol::Hash32;
use kiln_state::{StateRead, StateWrite};

use crate::keys;

fn hash32(bytes: Vec<u8>, what: &str) -> TxResult<Hash32> {
    <Hash32>::try_from(bytes.as_slice())
        .map_err(|_| TxError::internal(format!("corrupt stored {what}")))
}

/// The secret hash of the sprint unit's last commitment in `epoch` (unit:
/// `host` and `ml_node`, empty for the host's own worker).
pub fn secret_hash<S: StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    host: &Address,
    ml_node: &str,
) -> TxResult<Option<Hash32>> {
    state
        .get_raw(&keys::secret_hash(epoch, host, ml_node))?
        .map(|b| hash32(b, "secret hash"))
        .transpose()
}

/// The secret the sprint unit revealed in `epoch`, if it did.
pub fn revealed_secret<S: StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    host: &Address,
    ml_node: &str,
) -> TxResult<Option<Hash32>> {
    state
        .get_raw(&keys::secret(epoch, host, ml_node))?
        .map(|b| hash32(b, "secret"))
        .transpose()
}

/// The beacon of `epoch`, once its challenge block has executed.
pub fn beacon<S: StateRead + ?Sized>(state: &S, epoch: u64) -> TxResult<Option<Hash32>> {
    state
        .get_raw(&keys::beacon(epoch))?
        .map(|b| hash32(b, "beacon"))
        .transpose()
}

/// `host`'s challenge in `epoch`: `SHA256(beacon ‖ addr)`; `None` before the
/// challenge block.
pub fn host_challenge<S: StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    host: &Address,
) -> TxResult<Option<Hash32>> {
    Ok(beacon(state, epoch)?.map(|b| challenge::challenge_seed(&b, host.as_bytes())))
}

/// The challenge of a sprint unit's opening: `SHA256(beacon ‖ host ‖
/// ml_node)` — the host's own challenge for its own worker (empty node id),
/// so each of its ML nodes opens other leaves.
pub fn unit_challenge<S: StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    host: &Address,
    ml_node: &str,
) -> TxResult<Option<Hash32>> {
    Ok(beacon(state, epoch)?.map(|b| challenge::unit_challenge_seed(&b, host.as_bytes(), ml_node)))
}

/// At the challenge block: computes and stores the beacon from the block's
/// hash and every revealed secret, in address order (one pass, O(hosts)).
pub fn record_beacon<S: StateWrite>(state: &mut S, epoch: u64) -> TxResult<Event> {
    // The epochs component recorded it in this block's begin-block, which
    // runs first; an empty hash (never expected) must not halt the chain.
    let block_hash = state.challenge_block_hash(epoch)?.unwrap_or_default();
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    state.for_each_under(&keys::secrets_of_epoch(epoch), |_, value| {
        secrets.push(value.to_vec());
        Ok(())
    })?;
    let value = challenge::beacon(&block_hash, secrets.iter().map(Vec::as_slice));
    state.put_raw(keys::beacon(epoch), value.to_vec());
    Ok(Event::new("kiln.sprint.v1.EventBeacon")
        .attr("epoch", epoch)
        .attr("revealed_secrets", secrets.len())
        .attr("beacon", hex::encode(value)))
}
