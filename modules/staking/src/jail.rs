//! Jail (SPEC §7): a host caught double-signing loses its consensus power at
//! once and cannot regain weight until it sends `MsgUnjail` after its jail
//! period. The slashing module decides who is jailed and for how long;
//! staking owns the consequence, because it owns the weights in force and
//! the validator set.
//!
//! Jailing deletes the host's weight in force and marks the validator set
//! for an update at the end of the block, so CometBFT drops the key two
//! blocks later. While jailed, the settle gives the host no effective
//! weight (no power, no rewards, no committee seats). `MsgUnjail` gives back
//! the weight the jail took (the compute it had proven), until the next
//! settle recomputes every host's weight from its sprint work.
//!
//! The one exception: jailing never empties the validator set (CometBFT
//! halts on an empty set). The last host with weight keeps it, jailed, and
//! an event says so.

use kiln_framework::{Address, Event, ExecCtx, StateReadExt, StateWriteExt, TxResult};
use kiln_state::{StateRead, StateWrite};

use crate::keys;
use crate::pools::{codes, err, PoolsExt};
use crate::state::StakingExt;

/// Why and until when a host is jailed.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, borsh::BorshSerialize, borsh::BorshDeserialize,
)]
pub struct JailRecord {
    /// The block that jailed it.
    pub since_height: u64,
    /// `MsgUnjail` is accepted once the settle of this epoch has run.
    pub until_epoch: u64,
    pub reason: String,
    /// The weight in force the jail took away (given back by `MsgUnjail`).
    pub weight_removed: u64,
}

kiln_framework::stored_value!(JailRecord, "jail record", 1);

/// Reads of the jail.
pub trait JailExt: StateRead {
    fn jail_record(&self, host: &Address) -> TxResult<Option<JailRecord>> {
        self.get_value(&keys::jailed(host))
    }

    fn is_jailed(&self, host: &Address) -> TxResult<bool> {
        Ok(self.get_raw(&keys::jailed(host))?.is_some())
    }
}

impl<S: StateRead + ?Sized> JailExt for S {}

/// Jails `host` until the settle of `until_epoch` (a longer existing jail is
/// kept) and takes its weight in force away.
pub fn jail<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    host: &Address,
    height: u64,
    until_epoch: u64,
    reason: &str,
) -> TxResult<()> {
    let existing = state.jail_record(host)?;
    let until_epoch = existing
        .as_ref()
        .map_or(until_epoch, |e| e.until_epoch.max(until_epoch));
    let weight = state.weight_in_force(host)?;
    let mut removed = 0u64;
    let mut note = "";
    if weight > 0 {
        let hosts = state.hosts_with_weight()?;
        if hosts <= 1 {
            note = "the last host with weight keeps it: CometBFT halts on an empty validator set";
        } else {
            state.delete_raw(keys::weight(host));
            state.put_u64(keys::HOSTS_WITH_WEIGHT.to_vec(), hosts.saturating_sub(1));
            state.put_raw(keys::VALIDATOR_SET_DIRTY.to_vec(), vec![1]);
            removed = weight;
        }
    }
    state.put_value(
        keys::jailed(host),
        &JailRecord {
            since_height: height,
            until_epoch,
            reason: reason.to_string(),
            weight_removed: existing
                .map_or(0, |e| e.weight_removed)
                .saturating_add(removed),
        },
    )?;
    let mut event = Event::new("kiln.staking.v1.EventJailed")
        .attr("host", host)
        .attr("until_epoch", until_epoch)
        .attr("reason", reason)
        .attr("weight_removed", removed);
    if !note.is_empty() {
        event = event.attr("note", note);
    }
    ctx.emit(event);
    Ok(())
}

/// `MsgUnjail`: the host leaves jail once the settle of its `until_epoch`
/// has run; it earns weight again from the next settle.
pub fn unjail<S: StateWrite>(state: &mut S, ctx: &mut ExecCtx<'_>, host: &Address) -> TxResult<()> {
    let Some(record) = state.jail_record(host)? else {
        return Err(err(
            codes::NOT_JAILED,
            format!("{} is not jailed", host.to_valoper()),
        ));
    };
    let settled = state.settled_epoch()?;
    if settled < record.until_epoch {
        return Err(err(
            codes::STILL_JAILED,
            format!(
                "{} is jailed until the settle of epoch {} (last settle: epoch {settled}); reason: {}",
                host.to_valoper(),
                record.until_epoch,
                record.reason
            ),
        ));
    }
    state.delete_raw(keys::jailed(host));
    // The weight it proved before the jail signs again (CometBFT applies
    // the update two blocks later) until the next settle recomputes
    // everyone's from their sprint work. (A host that kept its weight as
    // the last one with weight has nothing to restore.)
    let restored = if record.weight_removed > 0 && state.weight_in_force(host)? == 0 {
        let hosts = state.hosts_with_weight()?;
        state.put_u64(keys::weight(host), record.weight_removed);
        state.put_u64(keys::HOSTS_WITH_WEIGHT.to_vec(), hosts.saturating_add(1));
        state.put_raw(keys::VALIDATOR_SET_DIRTY.to_vec(), vec![1]);
        record.weight_removed
    } else {
        0
    };
    ctx.emit(
        Event::new("kiln.staking.v1.EventUnjailed")
            .attr("host", host)
            .attr("jailed_since_height", record.since_height)
            .attr("weight_restored", restored),
    );
    Ok(())
}

/// Whether a jail changed the weights in force in this block (cleared by
/// the read): the end of the block must then emit validator updates.
pub fn take_validator_set_dirty<S: StateWrite>(state: &mut S) -> TxResult<bool> {
    if state.get_raw(keys::VALIDATOR_SET_DIRTY)?.is_some() {
        state.delete_raw(keys::VALIDATOR_SET_DIRTY.to_vec());
        return Ok(true);
    }
    Ok(false)
}
