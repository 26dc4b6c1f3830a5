//! Misbehaviour CometBFT reports in FinalizeBlock (duplicate votes, light
//! client attacks): recorded in state with the host it belongs to, emitted
//! as an event, and answered by `/kiln.staking.v1.Query/Misbehavior`.
//! `kiln-slashing` acts on the records (SPEC §7: 5% and jail for a double
//! sign).

use kiln_framework::{Address, Event, StateReadExt, StateWriteExt, TxResult};
use kiln_state::{StateRead, StateWrite};
use sha2::{Digest, Sha256};

use crate::keys;
use crate::state::StakingExt;

/// Most records one block may add (CometBFT bounds evidence by bytes; this
/// bounds the work and the state a block can add here).
pub const MAX_PER_BLOCK: usize = 100;

/// One piece of evidence as FinalizeBlock reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// `duplicate_vote`, `light_client_attack` or `unknown`.
    pub kind: String,
    /// The validator's CometBFT address: the first 20 bytes of SHA-256 of its key.
    pub validator_address: Vec<u8>,
    pub power: i64,
    /// The height the misbehaviour happened at.
    pub height: i64,
}

/// A recorded misbehaviour.
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
pub struct MisbehaviorRecord {
    pub kind: String,
    /// Hex (upper case), as CometBFT prints validator addresses.
    pub validator_address: String,
    /// The host whose consensus key it is, when the chain knows it.
    pub host: Option<Address>,
    pub power: u64,
    pub misbehavior_height: u64,
    /// The block whose FinalizeBlock reported it.
    pub reported_height: u64,
}

/// CometBFT's address of an ed25519 consensus key.
pub fn consensus_address(pubkey: &[u8]) -> [u8; 20] {
    let digest = Sha256::digest(pubkey);
    let mut out = [0u8; 20];
    out.copy_from_slice(&digest[..20]);
    out
}

/// The host whose consensus key has CometBFT address `address` in `set`.
fn owner_of(
    set: &std::collections::BTreeMap<Vec<u8>, crate::state::ConsensusValidator>,
    address: &[u8],
) -> Option<Address> {
    set.iter()
        .find(|(key, _)| consensus_address(key).as_slice() == address)
        .map(|(_, v)| v.owner)
}

/// Records `reported` at block `height` (at most [`MAX_PER_BLOCK`]; more are
/// counted in the event but not stored).
pub fn record<S: StateWrite>(
    state: &mut S,
    height: u64,
    reported: &[Reported],
) -> TxResult<(Vec<Event>, Vec<MisbehaviorRecord>)> {
    let mut events = Vec::new();
    let mut records = Vec::new();
    if reported.is_empty() {
        return Ok((events, records));
    }
    // The set given CometBFT now, read once per block.
    let current = state.given_validators()?;
    for (i, m) in reported.iter().enumerate() {
        let misbehavior_height = u64::try_from(m.height).unwrap_or(0);
        let address = hex::encode_upper(&m.validator_address);
        if i >= MAX_PER_BLOCK || m.validator_address.len() != 20 {
            events.push(
                Event::new("kiln.staking.v1.EventMisbehaviorIgnored")
                    .attr("validator", &address)
                    .attr(
                        "reason",
                        if i >= MAX_PER_BLOCK {
                            "too many in one block"
                        } else {
                            "not a 20-byte address"
                        },
                    ),
            );
            continue;
        }
        // The set that signed at the misbehaviour's height, else the current one.
        let host = owner_of(
            &state.consensus_validators(misbehavior_height)?,
            &m.validator_address,
        )
        .or_else(|| owner_of(&current, &m.validator_address));
        let record = MisbehaviorRecord {
            kind: m.kind.clone(),
            validator_address: address.clone(),
            host,
            power: u64::try_from(m.power).unwrap_or(0),
            misbehavior_height,
            reported_height: height,
        };
        state.put_value(keys::misbehavior(height, &m.validator_address), &record)?;
        let mut event = Event::new("kiln.staking.v1.EventMisbehavior")
            .attr("kind", &record.kind)
            .attr("validator", &address)
            .attr("power", record.power)
            .attr("height", misbehavior_height);
        if let Some(h) = host {
            event = event.attr("host", h);
        }
        events.push(event);
        records.push(record);
    }
    Ok((events, records))
}

/// The newest `limit` records, newest first.
pub fn recent<S: StateRead + ?Sized>(state: &S, limit: usize) -> TxResult<Vec<MisbehaviorRecord>> {
    let mut all: Vec<MisbehaviorRecord> = state
        .prefix_values::<MisbehaviorRecord>(keys::MISBEHAVIOR_PREFIX)?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    all.reverse();
    all.truncate(limit);
    Ok(all)
}
