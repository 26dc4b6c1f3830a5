//! One transaction through the whole pipeline: decode → ante (in its own
//! overlay, kept even if messages fail so the fee and sequence are charged) →
//! messages (in an overlay discarded on any failure or when gas runs out).

use kiln_framework::{BlockInfo, Event, ExecCtx, GasMeter, Metered, TxError};
use kiln_store::{Overlay, StateRead, StateWrite};

use crate::ante::{run_ante, AnteMode, SigCache};
use crate::tx::{decode_tx, DecodedTx};
use kiln_messages::dispatch;

/// The result CometBFT records for a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxOutcome {
    pub code: u32,
    pub codespace: String,
    pub log: String,
    pub gas_wanted: u64,
    pub gas_used: u64,
    pub events: Vec<Event>,
}

impl TxOutcome {
    pub fn failed(error: &TxError, gas_wanted: u64, gas_used: u64) -> Self {
        TxOutcome {
            code: error.code,
            codespace: error.codespace.to_string(),
            log: error.log.clone(),
            gas_wanted,
            gas_used,
            events: Vec::new(),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.code == 0
    }
}

/// What to run after the ante.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    /// CheckTx: ante only (messages run at block execution), in its mempool
    /// form ([`AnteMode::Admit`]).
    Check,
    /// PrepareProposal's trial run: ante only, with every limit of block
    /// execution, so a tx that would fail its ante in this block stays in
    /// the mempool for a later one.
    Propose,
    /// Block execution: ante and messages, gas enforced.
    Deliver,
    /// Simulation: ante without signatures/fee floor, messages, no gas limit.
    Simulate,
}

/// Executes `tx_bytes` against `state`; on return `state` holds the effects
/// (ante effects even when messages failed; nothing when the ante failed).
pub fn execute_tx<S: StateRead + StateWrite>(
    state: &mut S,
    block: &BlockInfo,
    tx_bytes: &[u8],
    sig_cache: &SigCache,
    mode: ExecMode,
) -> TxOutcome {
    match decode_tx(tx_bytes) {
        Err(e) => TxOutcome::failed(&e, 0, 0),
        Ok(tx) => execute_decoded(state, block, &tx, sig_cache, mode),
    }
}

pub fn execute_decoded<S: StateRead + StateWrite>(
    state: &mut S,
    block: &BlockInfo,
    tx: &DecodedTx,
    sig_cache: &SigCache,
    mode: ExecMode,
) -> TxOutcome {
    let gas_wanted = tx.gas_limit();
    let meter = if mode == ExecMode::Simulate {
        GasMeter::infinite()
    } else {
        GasMeter::new(gas_wanted)
    };
    let mut ctx = ExecCtx::new(block);
    let ante_mode = match mode {
        ExecMode::Simulate => AnteMode::Simulate,
        ExecMode::Check => AnteMode::Admit,
        ExecMode::Propose | ExecMode::Deliver => AnteMode::Full,
    };

    let ante_changes = {
        let mut overlay = Overlay::new(&*state);
        let result = {
            let mut metered = Metered::new(&mut overlay, &meter);
            run_ante(
                &mut metered,
                &mut ctx,
                block,
                tx,
                &meter,
                sig_cache,
                ante_mode,
            )
        };
        if let Err(e) = result {
            return TxOutcome::failed(&e, gas_wanted, meter.used());
        }
        if meter.is_out_of_gas() {
            let e = TxError::out_of_gas(format!(
                "gas wanted {gas_wanted}, used {} in the ante",
                meter.used()
            ));
            return TxOutcome::failed(&e, gas_wanted, meter.used());
        }
        overlay.into_changes()
    };
    apply(state, ante_changes);
    let ante_events = std::mem::take(&mut ctx.events);
    if matches!(mode, ExecMode::Check | ExecMode::Propose) {
        return TxOutcome {
            gas_wanted,
            gas_used: meter.used(),
            events: ante_events,
            ..Default::default()
        };
    }

    let msg_result = {
        let mut overlay = Overlay::new(&*state);
        let mut result = Ok(());
        {
            let mut metered = Metered::new(&mut overlay, &meter);
            for msg in &tx.msgs {
                result = dispatch(&mut metered, &mut ctx, msg);
                if result.is_err() {
                    break;
                }
                if meter.is_out_of_gas() {
                    result = Err(TxError::out_of_gas(format!(
                        "gas wanted {gas_wanted}, used {}",
                        meter.used()
                    )));
                    break;
                }
            }
        }
        result.map(|()| overlay.into_changes())
    };
    match msg_result {
        Ok(changes) => {
            apply(state, changes);
            let mut events = ante_events;
            events.append(&mut ctx.events);
            TxOutcome {
                gas_wanted,
                gas_used: meter.used(),
                events,
                ..Default::default()
            }
        }
        Err(e) => {
            let mut outcome = TxOutcome::failed(&e, gas_wanted, meter.used());
            outcome.events = ante_events;
            outcome
        }
    }
}

fn apply<S: StateWrite>(state: &mut S, changes: kiln_store::Changes) {
    for (key, value) in changes {
        match value {
            Some(v) => state.put_raw(key, v),
            None => state.delete_raw(key),
        }
    }
}
