//! The ante pipeline (SPEC §2): everything a transaction must pass before its
//! messages run — limits, timeout, fee floor, signers and sequences, public
//! keys, and secp256k1 signatures (low-S only) over SIGN_MODE_DIRECT sign bytes
//! built from the bytes as received. On success the fee is moved to the fee
//! collector and every signer's sequence is incremented.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;

use cosmos_sdk_proto::cosmos::auth::v1beta1::BaseAccount;
use cosmos_sdk_proto::cosmos::crypto::secp256k1::PubKey as Secp256k1PubKey;
use cosmos_sdk_proto::cosmos::tx::signing::v1beta1::SignMode;
use cosmos_sdk_proto::cosmos::tx::v1beta1::{mode_info, SignDoc};
use cosmos_sdk_proto::Any;
use k256::ecdsa::signature::Verifier;
use k256::ecdsa::{Signature, VerifyingKey};
use kiln_bank::state::{AuthExt, AuthWriteExt, BankExt};
use kiln_framework::{Address, BlockInfo, Coins, Event, ExecCtx, GasMeter, TxError, TxResult};
use kiln_store::StateWrite;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::tx::{DecodedTx, Msg};

pub const SECP256K1_PUBKEY_TYPE_URL: &str = "/cosmos.crypto.secp256k1.PubKey";

/// How much of the ante to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnteMode {
    /// Block execution and block proposal: everything.
    Full,
    /// Mempool admission (CheckTx, new and recheck): everything except the
    /// per-block part of the ML-ops fee allowance. Which block a mempool tx
    /// lands in is the proposer's choice, so that limit is the proposer's to
    /// keep: PrepareProposal leaves a tx over it for a later block. Refusing
    /// it here would make a recheck drop it from the mempool for good (a
    /// host's sprint commit sent beside a burst of inference reports missed
    /// its deadline that way).
    Admit,
    /// Gas estimation: signatures are not checked and the fee floor is not
    /// enforced (the client does not know the fee yet), but the signature
    /// verification gas is still charged so the estimate is right.
    Simulate,
}

/// One signature to check: the compressed key, the exact sign bytes, the 64-byte signature.
#[derive(Debug, Clone)]
pub struct SigCheck {
    pub pubkey: Vec<u8>,
    pub sign_bytes: Vec<u8>,
    pub signature: Vec<u8>,
}

impl SigCheck {
    fn cache_key(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((self.pubkey.len() as u64).to_le_bytes());
        h.update(&self.pubkey);
        h.update((self.sign_bytes.len() as u64).to_le_bytes());
        h.update(&self.sign_bytes);
        h.update(&self.signature);
        h.finalize().into()
    }

    /// Verifies without the cache. High-S signatures are rejected explicitly
    /// (they are malleable twins of valid low-S ones).
    pub fn verify(&self) -> TxResult<()> {
        let key = VerifyingKey::from_sec1_bytes(&self.pubkey)
            .map_err(|_| TxError::invalid_pubkey("not a valid secp256k1 public key"))?;
        if self.signature.len() != 64 {
            return Err(TxError::signature_failed(format!(
                "signature must be 64 bytes (r||s), got {}",
                self.signature.len()
            )));
        }
        let sig = Signature::from_slice(&self.signature)
            .map_err(|_| TxError::signature_failed("malformed signature"))?;
        if sig.normalize_s().is_some() {
            return Err(TxError::signature_failed(
                "high-S signature; only low-S signatures are accepted",
            ));
        }
        key.verify(&self.sign_bytes, &sig).map_err(|_| {
            TxError::signature_failed("please check the account number, sequence and chain-id")
        })
    }
}

/// Remembers signatures already verified by this process. Verification is a
/// pure function of (key, bytes, signature), so a hit is exactly as good as a
/// re-check; CheckTx and the parallel pre-verification fill it, block
/// execution reads it. Bounded FIFO, no hash maps (deterministic by construction
/// even though it cannot affect results).
/// Verified keys plus their insertion order (for FIFO eviction).
type SeenSignatures = (BTreeSet<[u8; 32]>, VecDeque<[u8; 32]>);

pub struct SigCache {
    inner: Mutex<SeenSignatures>,
    capacity: usize,
}

impl SigCache {
    pub fn new(capacity: usize) -> Self {
        SigCache {
            inner: Mutex::new((BTreeSet::new(), VecDeque::new())),
            capacity,
        }
    }

    pub fn verify(&self, check: &SigCheck) -> TxResult<()> {
        let key = check.cache_key();
        if let Ok(guard) = self.inner.lock() {
            if guard.0.contains(&key) {
                return Ok(());
            }
        }
        check.verify()?;
        if let Ok(mut guard) = self.inner.lock() {
            if guard.0.insert(key) {
                guard.1.push_back(key);
                while guard.1.len() > self.capacity {
                    if let Some(old) = guard.1.pop_front() {
                        guard.0.remove(&old);
                    }
                }
            }
        }
        Ok(())
    }
}

pub fn sign_bytes(tx: &DecodedTx, chain_id: &str, account_number: u64) -> Vec<u8> {
    SignDoc {
        body_bytes: tx.raw.body_bytes.clone(),
        auth_info_bytes: tx.raw.auth_info_bytes.clone(),
        chain_id: chain_id.to_string(),
        account_number,
    }
    .encode_to_vec()
}

fn decode_pubkey(any: &Any) -> TxResult<Vec<u8>> {
    if any.type_url != SECP256K1_PUBKEY_TYPE_URL {
        return Err(TxError::invalid_pubkey(format!(
            "unsupported key type {:?}; Kiln accounts use {SECP256K1_PUBKEY_TYPE_URL}",
            any.type_url
        )));
    }
    let pk = Secp256k1PubKey::decode(any.value.as_slice())
        .map_err(|e| TxError::invalid_pubkey(e.to_string()))?;
    if pk.key.len() != 33 {
        return Err(TxError::invalid_pubkey(
            "secp256k1 keys must be 33-byte compressed points",
        ));
    }
    Ok(pk.key)
}

/// The signature checks of a transaction, given each signer's account as of
/// now. Used both inside the ante and for parallel pre-verification.
pub fn signature_checks(
    tx: &DecodedTx,
    chain_id: &str,
    accounts: &[BaseAccount],
) -> TxResult<Vec<SigCheck>> {
    let mut checks = Vec::with_capacity(accounts.len());
    for ((info, account), signature) in tx
        .auth_info
        .signer_infos
        .iter()
        .zip(accounts)
        .zip(&tx.raw.signatures)
    {
        let pubkey = match (&info.public_key, &account.pub_key) {
            (Some(any), _) => decode_pubkey(any)?,
            (None, Some(stored)) => decode_pubkey(stored)?,
            (None, None) => {
                return Err(TxError::invalid_pubkey(format!(
                    "account {} has no public key yet; include it in signer_infos",
                    account.address
                )))
            }
        };
        checks.push(SigCheck {
            pubkey,
            sign_bytes: sign_bytes(tx, chain_id, account.account_number),
            signature: signature.clone(),
        });
    }
    Ok(checks)
}

/// Outcome of a successful ante: the fee payer and the fee.
pub struct AnteOk {
    pub fee: Coins,
    pub payer: Address,
}

/// A transaction that qualifies for the ML-ops fee allowance: whose host pays
/// (in allowance) and where its counter stands.
struct MlOpsAllowance {
    host: Address,
    epoch: u64,
    used: kiln_authz::state::FeeAllowanceUse,
    params: kiln_authz::AuthzParams,
    /// Why the host gets no allowance at all (no weight, no self-bond).
    ineligible: Option<String>,
}

impl MlOpsAllowance {
    /// Why a tx asking `gas` cannot be fee-free in block `height`, if it cannot.
    /// `per_block` says whether the per-block limit applies (see [`AnteMode::Admit`]).
    fn refusal(&self, gas: u64, height: u64, per_block: bool) -> Option<String> {
        let p = &self.params;
        let (host, epoch, used) = (self.host, self.epoch, &self.used);
        if let Some(why) = &self.ineligible {
            return Some(why.clone());
        }
        if p.ml_ops_free_txs_per_epoch == 0 {
            return Some(
                "the ML-ops fee allowance is disabled (authz param ml_ops_free_txs_per_epoch = 0)"
                    .into(),
            );
        }
        if gas > p.ml_ops_max_free_gas_per_tx {
            return Some(format!(
                "a fee-free tx may ask for at most {} gas (authz param ml_ops_max_free_gas_per_tx)",
                p.ml_ops_max_free_gas_per_tx
            ));
        }
        if used.txs >= p.ml_ops_free_txs_per_epoch {
            return Some(format!(
                "the ML-ops fee allowance of host {host} for epoch {epoch} is exhausted ({} of {} fee-free txs used): pay the fee or wait for the next epoch",
                used.txs, p.ml_ops_free_txs_per_epoch
            ));
        }
        if used.gas.saturating_add(gas) > p.ml_ops_free_gas_per_epoch {
            return Some(format!(
                "the ML-ops fee allowance of host {host} for epoch {epoch} has {} of {} gas left: pay the fee or wait for the next epoch",
                p.ml_ops_free_gas_per_epoch.saturating_sub(used.gas),
                p.ml_ops_free_gas_per_epoch
            ));
        }
        if per_block && used.gas_in_block(height).saturating_add(gas) > p.ml_ops_free_gas_per_block
        {
            return Some(format!(
                "host {host} has used {} of its {} fee-free gas in this block: pay the fee or send it in a later block",
                used.gas_in_block(height),
                p.ml_ops_free_gas_per_block
            ));
        }
        None
    }
}

/// Whether `tx` may use the ML-ops fee allowance (SPEC §2): every message is a
/// `MsgExec` whose grantee is the tx's only signer, and every inner message is
/// an ML-ops message (the message list's `MsgKind::ML_OPS`) on behalf of one
/// single registered host (the granter) that granted the signer that type,
/// unexpired. The host must hold weight in force, or a self-bond above
/// zero and at least staking's `min_self_bond`; otherwise the answer says
/// why it gets nothing.
/// Only called when the offered fee is below the floor, so paying
/// transactions never consume allowance nor pay for these reads.
fn ml_ops_allowance<S: StateWrite>(
    state: &S,
    block: &BlockInfo,
    tx: &DecodedTx,
    signers: &[Address],
) -> TxResult<Option<MlOpsAllowance>> {
    let [signer] = signers else { return Ok(None) };
    let mut inner_msgs: Vec<(Address, &str)> = Vec::new();
    for msg in &tx.msgs {
        let Msg::Exec { exec, inner } = msg else {
            return Ok(None);
        };
        if kiln_authz::handler::signer_of_exec(exec)? != *signer {
            return Ok(None);
        }
        for m in inner {
            // An inner message without a parsable signer cannot qualify (it
            // fails in its handler anyway).
            let Ok(granter) = m.signer() else {
                return Ok(None);
            };
            if !m.is_ml_ops() {
                return Ok(None);
            }
            inner_msgs.push((granter, m.type_url()));
        }
    }
    let Some(host) = kiln_authz::state::ml_ops_host(state, block, signer, &inner_msgs)? else {
        return Ok(None);
    };
    // The allowance is per *host*: an account that merely granted a key (and
    // never registered) gets none, or one paid grant would buy a stream of
    // free transactions every epoch.
    if !kiln_hosts::HostsExt::is_host(state, &host)? {
        return Ok(None);
    }
    let epoch = kiln_epochs::EpochExt::epoch_info(state, block.height)?.epoch;
    let params = kiln_authz::state::authz_params(state)?;
    let used = kiln_authz::state::fee_allowance_use(state, epoch, &host)?;
    // Registering is cheap: without weight or a self-bond a host could
    // register N times for N allowances.
    let ineligible = if kiln_staking::StakingExt::weight_in_force(state, &host)? > 0 {
        None
    } else {
        let min = kiln_staking::StakingExt::staking_params(state)?.min_self_bond;
        let bond = kiln_staking::pools::PoolsExt::delegation_tokens(state, &host, &host)?;
        if bond > 0 && bond >= min {
            None
        } else {
            Some(format!(
                "host {host} has no weight in force and a self-bond of {bond}ukiln (needs more than 0 and at least {min}): it pays fees until it has either"
            ))
        }
    };
    Ok(Some(MlOpsAllowance {
        host,
        epoch,
        used,
        params,
        ineligible,
    }))
}

/// Runs the ante on `state` (a per-transaction overlay). Consumes gas on
/// `meter` for bytes and signatures; state reads/writes are charged by the
/// caller's `Metered` wrapper.
pub fn run_ante<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    block: &BlockInfo,
    tx: &DecodedTx,
    meter: &GasMeter,
    sig_cache: &SigCache,
    mode: AnteMode,
) -> TxResult<AnteOk> {
    let params = state.auth_params()?;
    let fee_proto = tx.auth_info.fee.clone().unwrap_or_default();
    let gas_limit = fee_proto.gas_limit;
    if mode != AnteMode::Simulate {
        if gas_limit == 0 {
            return Err(TxError::invalid_gas_limit("gas limit must be positive"));
        }
        if gas_limit > params.max_tx_gas {
            return Err(TxError::invalid_gas_limit(format!(
                "gas limit {gas_limit} exceeds the maximum of {}",
                params.max_tx_gas
            )));
        }
    }
    if tx.body.timeout_height != 0 && block.height > tx.body.timeout_height {
        return Err(TxError::tx_timeout_height(format!(
            "block height {} is past the timeout height {}",
            block.height, tx.body.timeout_height
        )));
    }
    if u64::try_from(tx.body.memo.chars().count()).unwrap_or(u64::MAX) > params.max_memo_characters
    {
        return Err(TxError::memo_too_large(format!(
            "memo has more than {} characters",
            params.max_memo_characters
        )));
    }
    meter.consume(
        params
            .tx_size_cost_per_byte
            .saturating_mul(u64::try_from(tx.size).unwrap_or(u64::MAX)),
    );

    // Signers, signer infos and signatures line up one to one.
    let signers = tx.signers()?;
    let infos = &tx.auth_info.signer_infos;
    if tx.raw.signatures.is_empty() {
        return Err(TxError::no_signatures(""));
    }
    if u64::try_from(signers.len()).unwrap_or(u64::MAX) > params.tx_sig_limit {
        return Err(TxError::too_many_signatures(format!(
            "{} signers; the limit is {}",
            signers.len(),
            params.tx_sig_limit
        )));
    }
    if infos.len() != signers.len() || tx.raw.signatures.len() != signers.len() {
        return Err(TxError::unauthorized(format!(
            "wrong number of signers: messages need {}, signer_infos has {}, signatures has {}",
            signers.len(),
            infos.len(),
            tx.raw.signatures.len()
        )));
    }
    if !fee_proto.payer.is_empty() || !fee_proto.granter.is_empty() {
        return Err(TxError::invalid_request(
            "fee payer and fee granter are not supported; the first signer pays",
        ));
    }

    // Fee floor, or the ML-ops fee allowance (SPEC §2).
    let mut fee = Coins::from_proto(&fee_proto.amount)?;
    if mode != AnteMode::Simulate {
        let required = params.min_gas_price.required_fee(gas_limit)?;
        let offered = fee.amount_of(&params.min_gas_price.denom);
        if offered < required {
            let insufficient = |extra: &str| {
                TxError::insufficient_fee(format!(
                    "got {offered}{denom}, required at least {required}{denom} (gas {gas_limit} × {price}){extra}",
                    denom = params.min_gas_price.denom,
                    price = params.min_gas_price
                ))
            };
            match ml_ops_allowance(state, block, tx, &signers)? {
                None => return Err(insufficient("")),
                Some(allowance) => {
                    if let Some(why) =
                        allowance.refusal(gas_limit, block.height, mode == AnteMode::Full)
                    {
                        return Err(insufficient(&format!("; {why}")));
                    }
                    let mut used = allowance.used;
                    let in_block = used.gas_in_block(block.height).saturating_add(gas_limit);
                    used.txs = used.txs.saturating_add(1);
                    used.gas = used.gas.saturating_add(gas_limit);
                    used.last_height = block.height;
                    used.gas_at_last_height = in_block;
                    kiln_authz::state::set_fee_allowance_use(
                        state,
                        allowance.epoch,
                        &allowance.host,
                        &used,
                    )?;
                    ctx.emit(
                        Event::new("kiln.authz.v1.EventFeeAllowanceUsed")
                            .attr("host", allowance.host)
                            .attr("epoch", allowance.epoch)
                            .attr("used", used.txs)
                            .attr("limit", allowance.params.ml_ops_free_txs_per_epoch)
                            .attr("gas_used", used.gas)
                            .attr("gas_limit", allowance.params.ml_ops_free_gas_per_epoch),
                    );
                    // Accepted fee-free: nothing is charged, not even an
                    // offered amount below the floor.
                    fee = Coins::default();
                }
            }
        }
    }

    // Accounts, sequences, keys.
    let mut accounts = Vec::with_capacity(signers.len());
    for (signer, info) in signers.iter().zip(infos) {
        let account = state.account(signer)?.ok_or_else(|| {
            TxError::unknown_address(format!(
                "account {signer} does not exist; it must receive funds first"
            ))
        })?;
        // Simulations come unsigned (cosmjs sends SIGN_MODE_UNSPECIFIED), so
        // the sign mode is only enforced when signatures are checked.
        if mode != AnteMode::Simulate {
            match &info.mode_info.as_ref().and_then(|m| m.sum.clone()) {
                Some(mode_info::Sum::Single(single)) if single.mode == SignMode::Direct as i32 => {}
                _ => {
                    return Err(TxError::invalid_request(
                        "only SIGN_MODE_DIRECT single signatures are supported",
                    ))
                }
            }
        }
        if info.sequence != account.sequence {
            return Err(TxError::wrong_sequence(format!(
                "account sequence mismatch, expected {}, got {}",
                account.sequence, info.sequence
            )));
        }
        if let Some(any) = &info.public_key {
            let key = decode_pubkey(any)?;
            if Address::from_pubkey(&key) != *signer {
                return Err(TxError::invalid_pubkey(format!(
                    "public key does not belong to signer {signer}"
                )));
            }
            if let Some(stored) = &account.pub_key {
                if decode_pubkey(stored)? != key {
                    return Err(TxError::invalid_pubkey(format!(
                        "public key differs from the one registered for {signer}"
                    )));
                }
            }
        }
        accounts.push(account);
    }
    let checks = signature_checks(tx, &block.chain_id, &accounts)?;
    for check in &checks {
        meter.consume(params.sig_verify_cost_secp256k1);
        if mode != AnteMode::Simulate {
            sig_cache.verify(check)?;
        }
    }

    // Effects: fee to the collector, keys recorded, sequences bumped.
    let payer = signers
        .first()
        .copied()
        .ok_or_else(|| TxError::no_signatures(""))?;
    // A simulation without a fee (what cosmjs's `gas: "auto"` sends) still
    // pays for moving one: the delivered tx will, and its estimate must
    // cover those bank reads and writes. The simulation's state is thrown
    // away, so a token amount moved here costs nobody anything.
    if mode == AnteMode::Simulate && fee.is_empty() {
        let probe = Coins::normalize(vec![kiln_framework::Coin::new(
            params.min_gas_price.denom.clone(),
            1,
        )])?;
        if state.balance(&payer, &params.min_gas_price.denom)? >= 1 {
            fee = probe;
        }
    }
    if !fee.is_empty() {
        let collector = Address::module(kiln_bank::FEE_COLLECTOR);
        state
            .sub_coins(&payer, &fee)
            .map_err(|e| TxError::insufficient_funds(format!("cannot pay fee {fee}: {}", e.log)))?;
        state.ensure_account(&collector)?;
        state.add_coins(&collector, &fee)?;
    }
    for ((signer, info), mut account) in signers.iter().zip(infos).zip(accounts) {
        if account.pub_key.is_none() {
            account.pub_key = info.public_key.clone();
        }
        account.sequence = account
            .sequence
            .checked_add(1)
            .ok_or_else(|| TxError::internal("sequence overflow"))?;
        state.set_account(signer, &account);
        ctx.emit(Event::new("tx").attr("acc_seq", format!("{signer}/{}", info.sequence)));
    }
    ctx.emit(
        Event::new("tx")
            .attr("fee", fee.to_string())
            .attr("fee_payer", payer),
    );
    Ok(AnteOk { fee, payer })
}
