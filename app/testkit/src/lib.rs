//! The in-process block driver and transaction builder used by scenario,
//! determinism and benchmark code (and by later modules' tests). It drives
//! [`KilnApp`] exactly as CometBFT would — PrepareProposal → ProcessProposal →
//! FinalizeBlock → Commit — with deterministic block times and hashes, so two
//! drivers fed the same transactions must reach the same app hashes.
//!
//! A crate of its own so that no production crate links it; every signature
//! it makes goes through kiln-client's SIGN_MODE_DIRECT implementation
//! ([`kiln_client::sign`]).

pub mod inference;
pub mod settle_cost;

use std::collections::BTreeMap;
use std::path::Path;

use cosmos_sdk_proto::{Any, Timestamp};
use k256::ecdsa::SigningKey;
pub mod sprint;

use kiln_app::KilnApp;
use kiln_client::sign;
use kiln_framework::{Address, Coin};
use kiln_store::{StateRead, Storage, StorageConfig};
use prost::Message;
use sha2::{Digest, Sha256};
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{
    response_process_proposal::ProposalStatus, RequestFinalizeBlock, RequestInitChain,
    RequestPrepareProposal, RequestProcessProposal, ResponseFinalizeBlock, ValidatorUpdate,
};
use tendermint_proto::v0_38::types::{BlockParams, ConsensusParams};

/// A secp256k1 account key for tests, derived from a label.
#[derive(Clone)]
pub struct TestKey {
    pub signing: SigningKey,
    pub address: Address,
}

impl TestKey {
    pub fn from_label(label: &str) -> Self {
        let mut seed: [u8; 32] = Sha256::digest(label.as_bytes()).into();
        loop {
            if let Ok(signing) = SigningKey::from_bytes(&seed.into()) {
                let address = Address::from_pubkey(&sign::compressed_pubkey(&signing));
                return TestKey { signing, address };
            }
            seed = Sha256::digest(seed).into();
        }
    }

    pub fn pubkey_bytes(&self) -> Vec<u8> {
        sign::compressed_pubkey(&self.signing)
    }

    pub fn pubkey_any(&self) -> Any {
        sign::pubkey_any(&self.pubkey_bytes())
    }
}

/// Fields of a transaction a test may want to vary.
#[derive(Clone, Debug)]
pub struct TxOptions {
    pub chain_id: String,
    pub account_number: u64,
    pub sequence: u64,
    pub gas_limit: u64,
    pub fee: u128,
    pub memo: String,
    pub timeout_height: u64,
}

impl TxOptions {
    pub fn new(chain_id: &str, account_number: u64, sequence: u64) -> Self {
        TxOptions {
            chain_id: chain_id.to_string(),
            account_number,
            sequence,
            gas_limit: 200_000,
            fee: 5_000,
            memo: String::new(),
            timeout_height: 0,
        }
    }

    /// The fee as coins (none when it is 0).
    pub fn fee_coins(&self) -> Vec<Coin> {
        if self.fee == 0 {
            vec![]
        } else {
            vec![Coin::new(kiln_framework::BASE_DENOM, self.fee)]
        }
    }
}

pub fn any_of<M: prost::Name>(msg: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: msg.encode_to_vec(),
    }
}

/// `MsgSend` of `amount` ukiln ([`kiln_client::msgs::msg_send`]).
pub fn msg_send(from: &Address, to: &Address, amount: u128) -> Any {
    kiln_client::msgs::msg_send(
        &from.to_bech32(),
        &to.to_bech32(),
        &[Coin::new(kiln_framework::BASE_DENOM, amount)],
    )
}

/// `MsgGrant` of a generic authorization ([`kiln_client::msgs::msg_grant`]).
pub fn msg_grant(
    granter: &Address,
    grantee: &Address,
    type_url: &str,
    expiration: Option<i64>,
) -> Any {
    kiln_client::msgs::msg_grant(
        &granter.to_bech32(),
        &grantee.to_bech32(),
        type_url,
        expiration.map(|seconds| Timestamp { seconds, nanos: 0 }),
    )
}

pub fn msg_revoke(granter: &Address, grantee: &Address, type_url: &str) -> Any {
    kiln_client::msgs::msg_revoke(&granter.to_bech32(), &grantee.to_bech32(), type_url)
}

pub fn msg_exec(grantee: &Address, msgs: Vec<Any>) -> Any {
    kiln_client::msgs::msg_exec(&grantee.to_bech32(), msgs)
}

/// The body and auth-info bytes of an unsigned transaction
/// ([`kiln_client::sign::tx_body`], [`kiln_client::sign::auth_info`]).
pub fn tx_parts(key: &TestKey, msgs: Vec<Any>, opts: &TxOptions) -> (Vec<u8>, Vec<u8>) {
    let body = sign::tx_body(msgs, &opts.memo, opts.timeout_height);
    let auth_info = sign::auth_info(
        key.pubkey_any(),
        opts.sequence,
        &opts.fee_coins(),
        opts.gas_limit,
    );
    (body.encode_to_vec(), auth_info.encode_to_vec())
}

/// The SIGN_MODE_DIRECT signature over the parts ([`kiln_client::sign::sign_direct`]).
pub fn sign_parts(
    key: &TestKey,
    body_bytes: &[u8],
    auth_info_bytes: &[u8],
    opts: &TxOptions,
) -> Vec<u8> {
    sign::sign_direct(
        &key.signing,
        body_bytes,
        auth_info_bytes,
        &opts.chain_id,
        opts.account_number,
    )
    .to_bytes()
    .to_vec()
}

/// A signed transaction's bytes ([`kiln_client::sign::sign_tx_raw`]).
pub fn sign_tx(key: &TestKey, msgs: Vec<Any>, opts: &TxOptions) -> Vec<u8> {
    let body = sign::tx_body(msgs, &opts.memo, opts.timeout_height);
    let auth_info = sign::auth_info(
        key.pubkey_any(),
        opts.sequence,
        &opts.fee_coins(),
        opts.gas_limit,
    );
    sign::sign_tx_raw(
        &key.signing,
        &body,
        &auth_info,
        &opts.chain_id,
        opts.account_number,
    )
    .tx_bytes
}

/// Genesis time of test chains (2026-01-01T00:00:00Z) and seconds per block.
pub const GENESIS_TIME: i64 = 1_767_225_600;
pub const BLOCK_SECONDS: i64 = 1;

/// Drives a [`KilnApp`] block by block, as CometBFT would.
pub struct BlockDriver {
    pub app: KilnApp,
    pub chain_id: String,
    pub height: u64,
    pub last_app_hash: Vec<u8>,
    /// Transactions waiting for the next block (CheckTx-accepted).
    pub mempool: Vec<Vec<u8>>,
    /// The CometBFT validator set as the app has asked for it: ed25519
    /// consensus key → power, from InitChain (the response's validators, or
    /// the request's when the response leaves them empty, as CometBFT does)
    /// and every FinalizeBlock's `validator_updates`, applied with CometBFT
    /// 0.38's rules ([`apply_cometbft_updates`]; a list CometBFT refuses is
    /// an error). This is CometBFT's *next* validator set: updates count as
    /// soon as they are emitted, not two blocks later, because the app
    /// writes new weights and consensus keys in the block that emits their
    /// updates, so "weights in force" and "set asked for" change together;
    /// the two-block delay is the app's `StakingExt::consensus_validators`.
    pub validators: BTreeMap<Vec<u8>, u64>,
    /// Total supply per denom at genesis (from the genesis balances).
    pub genesis_supply: BTreeMap<String, u128>,
}

pub struct BlockOutcome {
    pub height: u64,
    pub response: ResponseFinalizeBlock,
    pub included: Vec<Vec<u8>>,
}

impl BlockDriver {
    /// Opens (or re-opens) an app at `path`. A fresh app gets `InitChain` with `genesis_json`.
    pub fn open(
        path: &Path,
        chain_id: &str,
        genesis_json: &serde_json::Value,
        keep_recent: u64,
    ) -> anyhow::Result<Self> {
        Self::open_with_upgrades(
            path,
            chain_id,
            genesis_json,
            keep_recent,
            kiln_app::upgrades::UpgradeHandlers::built_in(),
        )
    }

    /// [`Self::open`] for an app that knows the given software upgrades (a
    /// "new binary" in upgrade tests; opening fails where an upgrade they
    /// do not know was applied, as `kilnd` refuses to start).
    pub fn open_with_upgrades(
        path: &Path,
        chain_id: &str,
        genesis_json: &serde_json::Value,
        keep_recent: u64,
        upgrades: kiln_app::upgrades::UpgradeHandlers,
    ) -> anyhow::Result<Self> {
        let storage = Storage::open(path, StorageConfig { keep_recent })?;
        let app = KilnApp::with_upgrades(storage, upgrades)?;
        let info = app.info(Default::default());
        let height = u64::try_from(info.last_block_height).unwrap_or(0);
        let app_genesis: Option<kiln_genesis::AppGenesis> =
            serde_json::from_value(genesis_json.clone()).ok();
        let mut genesis_supply: BTreeMap<String, u128> = BTreeMap::new();
        for balance in app_genesis.iter().flat_map(|g| &g.bank.balances) {
            for coin in &balance.coins {
                let total = genesis_supply.entry(coin.denom.clone()).or_insert(0);
                *total = total
                    .checked_add(coin.amount)
                    .ok_or_else(|| anyhow::anyhow!("genesis supply of {} overflows", coin.denom))?;
            }
        }
        let mut driver = BlockDriver {
            app,
            chain_id: chain_id.to_string(),
            height,
            last_app_hash: info.last_block_app_hash.to_vec(),
            mempool: Vec::new(),
            validators: BTreeMap::new(),
            genesis_supply,
        };
        if height == 0 {
            // genesis.json's validators, as `kilnd` writes them: the genesis
            // hosts with weight, power-capped (what InitChain must answer).
            let genesis_validators: Vec<ValidatorUpdate> = match &app_genesis {
                Some(g) => g
                    .validators()?
                    .into_iter()
                    .map(|(key, power)| Ok(ed25519_update(key, i64::try_from(power)?)))
                    .collect::<anyhow::Result<_>>()?,
                None => Vec::new(),
            };
            let response = driver.app.init_chain(RequestInitChain {
                time: Some(Timestamp {
                    seconds: GENESIS_TIME,
                    nanos: 0,
                }),
                chain_id: chain_id.to_string(),
                consensus_params: Some(ConsensusParams {
                    block: Some(BlockParams {
                        max_bytes: 4 << 20,
                        max_gas: 100_000_000,
                    }),
                    ..Default::default()
                }),
                validators: genesis_validators.clone(),
                app_state_bytes: serde_json::to_vec(genesis_json)?.into(),
                initial_height: 1,
            });
            driver.last_app_hash = response.app_hash.to_vec();
            // CometBFT builds the genesis set with NewValidatorSet (no removals).
            let initial = if response.validators.is_empty() {
                genesis_validators
            } else {
                response.validators
            };
            driver.validators = apply_cometbft_updates(&BTreeMap::new(), &initial, true)?;
        } else {
            // A reopened driver has not seen the earlier updates; it starts
            // from the set the app has given CometBFT (CometBFT would
            // restore its own persisted set, which is that set), and tracks
            // changes from here.
            let view = driver.app.latest_view();
            driver.validators = kiln_staking::StakingExt::given_validators(&view)
                .map_err(|e| anyhow::anyhow!(e.log))?
                .into_iter()
                .map(|(key, v)| (key, v.power))
                .collect();
        }
        Ok(driver)
    }

    /// Applies CometBFT validator updates to [`Self::validators`] exactly as
    /// CometBFT 0.38 does ([`kiln_app::validator_rules`]): a list CometBFT
    /// would refuse — negative power, a key twice, removal of a validator not
    /// in the set, a key type other than ed25519, total power above
    /// `MaxTotalVotingPower`, an empty resulting set — is an error (for
    /// CometBFT a block execution error that halts every node), and the set
    /// is left unchanged.
    pub fn apply_validator_updates(&mut self, updates: &[ValidatorUpdate]) -> anyhow::Result<()> {
        self.validators = apply_cometbft_updates(&self.validators, updates, false)?;
        Ok(())
    }

    /// Checks the SPEC §11 invariants on the latest committed state (see
    /// [`Self::check_invariants_on`]).
    pub fn check_invariants(&self) -> anyhow::Result<()> {
        self.check_invariants_on(&self.app.latest_view())
    }

    /// Checks the SPEC §11 invariants on `state`:
    /// * supply: the bank's supply record equals the sum of all balances, per
    ///   denom, with no overflow and no malformed (or stored zero) balance —
    ///   balances are u128, so "no negative balance" means exactly this; and
    ///   it equals genesis supply + minted − burned (the bank's minted
    ///   and burned totals); the sprint's bond escrow holds exactly the
    ///   bonds recorded for unsettled commitments;
    /// * consensus power: the tracked validator set equals the effective
    ///   weights in force, host by host through each host's consensus key
    ///   (so the totals agree), and once `min_hosts_for_cap` hosts have weight
    ///   no host holds more than `max_power_share_bps` of the total;
    /// * escrow: the inference escrow account holds exactly the escrows of
    ///   the open inferences, and every settled inference paid + refunded
    ///   exactly its escrow;
    /// * collateral: the bonded account holds Σ pool tokens, the unbonding
    ///   account Σ unbonding balances, each pool's shares are the sum of
    ///   its delegations', and the distribution account covers every
    ///   delegator's pending rewards.
    pub fn check_invariants_on<S: StateRead>(&self, state: &S) -> anyhow::Result<()> {
        Self::check_invariants_with(state, &self.genesis_supply, &self.validators)
    }

    /// [`Self::check_invariants_on`] for a chain this driver does not run
    /// (a devnet node): its genesis supply and its next validator set.
    pub fn check_invariants_with<S: StateRead>(
        state: &S,
        genesis_supply: &BTreeMap<String, u128>,
        validators: &BTreeMap<Vec<u8>, u64>,
    ) -> anyhow::Result<()> {
        let err = |e: kiln_framework::TxError| anyhow::anyhow!(e.log);

        // Supply = sum of balances = genesis supply.
        let prefix = kiln_bank::keys::BALANCE_PREFIX;
        let mut balances: BTreeMap<String, u128> = BTreeMap::new();
        for (key, value) in state.prefix_raw(prefix)? {
            let rest = &key[prefix.len()..];
            let (addr, denom) = (
                rest.get(..20),
                rest.get(20..)
                    .map(|d| String::from_utf8_lossy(d).into_owned()),
            );
            let (Some(addr), Some(denom)) = (addr.and_then(Address::from_bytes), denom) else {
                anyhow::bail!("malformed balance key {}", hex::encode(&key))
            };
            let amount = <[u8; 16]>::try_from(value.as_slice())
                .map(u128::from_be_bytes)
                .map_err(|_| anyhow::anyhow!("balance of {addr} in {denom} is not a u128"))?;
            anyhow::ensure!(
                amount > 0,
                "zero balance of {addr} in {denom} is stored (zero balances must be deleted)"
            );
            let total = balances.entry(denom.clone()).or_insert(0);
            *total = total
                .checked_add(amount)
                .ok_or_else(|| anyhow::anyhow!("sum of {denom} balances overflows u128"))?;
        }
        let supply: BTreeMap<String, u128> = kiln_bank::state::total_supply_readonly(state)
            .map_err(err)?
            .into_iter()
            .filter(|c| c.amount > 0)
            .map(|c| (c.denom, c.amount))
            .collect();
        anyhow::ensure!(
            supply == balances,
            "total supply {supply:?} differs from the sum of balances {balances:?}"
        );
        let genesis: BTreeMap<String, u128> = genesis_supply
            .iter()
            .filter(|(_, a)| **a > 0)
            .map(|(d, a)| (d.clone(), *a))
            .collect();
        let burned: BTreeMap<String, u128> = kiln_bank::state::total_burned_readonly(state)
            .map_err(err)?
            .into_iter()
            .map(|c| (c.denom, c.amount))
            .collect();
        let minted: BTreeMap<String, u128> = kiln_bank::state::total_minted_readonly(state)
            .map_err(err)?
            .into_iter()
            .map(|c| (c.denom, c.amount))
            .collect();
        let mut denoms: std::collections::BTreeSet<String> = genesis.keys().cloned().collect();
        denoms.extend(minted.keys().cloned());
        let expected_supply: BTreeMap<String, u128> = denoms
            .into_iter()
            .map(|d| {
                let a =
                    genesis.get(&d).copied().unwrap_or(0) + minted.get(&d).copied().unwrap_or(0);
                let a = a.saturating_sub(burned.get(&d).copied().unwrap_or(0));
                (d, a)
            })
            .filter(|(_, a)| *a > 0)
            .collect();
        anyhow::ensure!(
            supply == expected_supply,
            "total supply {supply:?} differs from genesis supply {genesis:?} + minted {minted:?} − burned {burned:?}"
        );
        // Bonds in escrow = sum of the recorded, unsettled bonds.
        let mut bonds: u128 = 0;
        for (_, value) in state.prefix_raw(kiln_sprint::keys::BOND_PREFIX)? {
            let amount = <[u8; 16]>::try_from(value.as_slice())
                .map(u128::from_be_bytes)
                .map_err(|_| anyhow::anyhow!("a sprint bond record is not a u128"))?;
            bonds = bonds
                .checked_add(amount)
                .ok_or_else(|| anyhow::anyhow!("sum of bonds overflows"))?;
        }
        let escrow = kiln_bank::state::balance_readonly(
            state,
            &Address::module(kiln_sprint::keys::BOND_ESCROW),
            kiln_framework::BASE_DENOM,
        )
        .map_err(err)?;
        anyhow::ensure!(
            escrow == bonds,
            "the sprint bond escrow holds {escrow} but the recorded bonds sum to {bonds}"
        );

        // Consensus power = effective weights; power cap.
        let expected = expected_validator_set(state)?;
        anyhow::ensure!(
            &expected == validators,
            "consensus validator set {} differs from the effective weights in force {}",
            show_set(validators),
            show_set(&expected)
        );
        let weights = kiln_staking::StakingExt::weights_in_force(state).map_err(err)?;
        // The count a sprint commitment reads for the epoch's reserved places.
        let counted = state
            .get_raw(kiln_staking::keys::HOSTS_WITH_WEIGHT)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            counted == Some((weights.len() as u64).to_be_bytes().to_vec()),
            "staking/hosts_with_weight is {counted:?} but {} hosts have weight in force",
            weights.len()
        );
        let params = kiln_staking::StakingExt::staking_params(state).map_err(err)?;
        let total: u128 = weights.values().map(|w| u128::from(*w)).sum();
        if weights.len() >= params.min_hosts_for_cap as usize {
            for (host, w) in &weights {
                anyhow::ensure!(
                    u128::from(*w) * 10_000 <= total * u128::from(params.max_power_share_bps),
                    "host {host} holds {w} of {total} weight, above the power cap of {} bps",
                    params.max_power_share_bps
                );
            }
        }

        // Escrow total = sum of open inferences' escrows = what the escrow
        // account holds.
        let mut open_escrows: u128 = 0;
        let records: Vec<(Vec<u8>, kiln_inference::state::InferenceRecord)> =
            kiln_framework::StateReadExt::prefix_values(state, kiln_inference::keys::RECORD_PREFIX)
                .map_err(err)?;
        for (_, record) in &records {
            if record.status == kiln_inference::state::Status::Open {
                open_escrows = open_escrows
                    .checked_add(record.escrow)
                    .ok_or_else(|| anyhow::anyhow!("sum of inference escrows overflows"))?;
            } else {
                anyhow::ensure!(
                    record.paid.checked_add(record.refunded) == Some(record.escrow),
                    "settled inference {} paid {} and refunded {} of an escrow of {}",
                    hex::encode(record.id),
                    record.paid,
                    record.refunded,
                    record.escrow
                );
            }
        }
        let held = kiln_inference::state::SettlementExt::escrow_total(state).map_err(err)?;
        anyhow::ensure!(
            held == open_escrows,
            "inference escrow: the account holds {held}, open inferences escrow {open_escrows}"
        );

        // Collateral: the bonded account holds every pool's tokens, the
        // unbonding account every entry's balance, and each pool's shares
        // are its delegations' shares.
        let pools: Vec<(Vec<u8>, kiln_staking::pools::HostPool)> =
            kiln_framework::StateReadExt::prefix_values(state, kiln_staking::keys::POOL_PREFIX)
                .map_err(err)?;
        let mut pooled: u128 = 0;
        for (host, pool) in &pools {
            pooled = pooled
                .checked_add(pool.tokens)
                .ok_or_else(|| anyhow::anyhow!("pool tokens overflow"))?;
            let mut shares: u128 = 0;
            for (_, value) in
                state.prefix_raw(&[kiln_staking::keys::DELEGATION_PREFIX, host].concat())?
            {
                let s = <[u8; 16]>::try_from(value.as_slice())
                    .map(u128::from_be_bytes)
                    .map_err(|_| anyhow::anyhow!("malformed delegation shares"))?;
                shares = shares
                    .checked_add(s)
                    .ok_or_else(|| anyhow::anyhow!("delegation shares overflow"))?;
            }
            anyhow::ensure!(
                shares == pool.shares,
                "pool of {}: {} shares issued, delegations hold {shares}",
                hex::encode(host),
                pool.shares
            );
        }
        let bonded = kiln_bank::state::balance_readonly(
            state,
            &Address::module(kiln_staking::pools::BONDED_ACCOUNT),
            kiln_framework::BASE_DENOM,
        )
        .map_err(err)?;
        anyhow::ensure!(
            bonded == pooled,
            "staking: the bonded account holds {bonded}, the pools {pooled}"
        );
        let entries: Vec<(Vec<u8>, kiln_staking::pools::UnbondingEntry)> =
            kiln_framework::StateReadExt::prefix_values(
                state,
                kiln_staking::keys::UNBONDING_PREFIX,
            )
            .map_err(err)?;
        let owed: u128 = entries.iter().map(|(_, e)| e.balance).sum();
        let unbonding = kiln_bank::state::balance_readonly(
            state,
            &Address::module(kiln_staking::pools::UNBONDING_ACCOUNT),
            kiln_framework::BASE_DENOM,
        )
        .map_err(err)?;
        anyhow::ensure!(
            unbonding == owed,
            "staking: the unbonding account holds {unbonding}, the entries owe {owed}"
        );
        // Delegators' rewards: the distribution account covers every
        // pending reward (what it holds beyond is rounding dust).
        let mut pending: u128 = 0;
        for (host, _) in &pools {
            let Some(host) = Address::from_bytes(host) else {
                anyhow::bail!("malformed pool key");
            };
            for (key, _) in state.prefix_raw(&kiln_staking::keys::delegations_of_host(&host))? {
                let prefix = kiln_staking::keys::delegations_of_host(&host).len();
                let Some(delegator) = key.get(prefix..).and_then(Address::from_bytes) else {
                    anyhow::bail!("malformed delegation key");
                };
                pending = pending
                    .checked_add(
                        kiln_staking::pools::PoolsExt::pending_rewards(state, &host, &delegator)
                            .map_err(err)?,
                    )
                    .ok_or_else(|| anyhow::anyhow!("pending rewards overflow"))?;
            }
        }
        let distribution = kiln_bank::state::balance_readonly(
            state,
            &Address::module(kiln_staking::pools::DISTRIBUTION_ACCOUNT),
            kiln_framework::BASE_DENOM,
        )
        .map_err(err)?;
        anyhow::ensure!(
            distribution >= pending,
            "rewards: the distribution account holds {distribution}, delegators are owed {pending}"
        );
        // Governance: the module account holds exactly the deposits of the
        // proposals still open (settled ones were refunded or burned).
        let mut deposited: u128 = 0;
        for (_, value) in state.prefix_raw(kiln_gov::DEPOSIT_PREFIX)? {
            let d = <[u8; 16]>::try_from(value.as_slice())
                .map(u128::from_be_bytes)
                .map_err(|_| anyhow::anyhow!("malformed governance deposit"))?;
            deposited = deposited
                .checked_add(d)
                .ok_or_else(|| anyhow::anyhow!("governance deposits overflow"))?;
        }
        let held = kiln_bank::state::balance_readonly(
            state,
            &kiln_gov::module_account(),
            kiln_framework::BASE_DENOM,
        )
        .map_err(err)?;
        anyhow::ensure!(
            held == deposited,
            "gov: the module account holds {held}, open proposals' deposits are {deposited}"
        );
        Ok(())
    }

    /// Genesis JSON funding each key with `amount` ukiln, with one genesis
    /// validator host ([`add_genesis_validator`]): a chain needs a validator.
    pub fn genesis_funding(keys: &[&TestKey], amount: u128) -> serde_json::Value {
        let mut genesis = kiln_genesis::AppGenesis::default();
        for key in keys {
            genesis.add_balance(
                key.address,
                vec![Coin::new(kiln_framework::BASE_DENOM, amount)],
            );
        }
        add_genesis_validator(&mut genesis);
        serde_json::to_value(genesis).unwrap_or_default()
    }

    /// CheckTx; accepted transactions wait in the driver's mempool.
    pub fn submit(&mut self, tx: Vec<u8>) -> tendermint_proto::v0_38::abci::ResponseCheckTx {
        let response = self
            .app
            .check_tx(tendermint_proto::v0_38::abci::RequestCheckTx {
                tx: tx.clone().into(),
                r#type: 0,
            });
        if response.code == 0 {
            self.mempool.push(tx);
        }
        response
    }

    fn block_hash(&self, height: u64) -> Vec<u8> {
        Sha256::new()
            .chain_update(self.chain_id.as_bytes())
            .chain_update(height.to_le_bytes())
            .chain_update(&self.last_app_hash)
            .finalize()
            .to_vec()
    }

    /// Produces one block from the mempool through PrepareProposal and
    /// ProcessProposal; txs it leaves out stay in the mempool if a recheck
    /// after Commit accepts them.
    pub fn produce_block(&mut self) -> anyhow::Result<BlockOutcome> {
        let height = self.height + 1;
        let time = Timestamp {
            seconds: GENESIS_TIME + BLOCK_SECONDS * i64::try_from(height)?,
            nanos: 0,
        };
        let candidates_bytes = std::mem::take(&mut self.mempool);
        let candidates: Vec<_> = candidates_bytes.iter().cloned().map(Into::into).collect();
        let prepared = self.app.prepare_proposal(RequestPrepareProposal {
            max_tx_bytes: 4 << 20,
            txs: candidates,
            height: i64::try_from(height)?,
            time: Some(time),
            ..Default::default()
        });
        let txs: Vec<Vec<u8>> = prepared.txs.iter().map(|t| t.to_vec()).collect();
        let status = self.app.process_proposal(RequestProcessProposal {
            txs: prepared.txs.clone(),
            height: i64::try_from(height)?,
            time: Some(time),
            hash: self.block_hash(height).into(),
            ..Default::default()
        });
        anyhow::ensure!(
            status.status == ProposalStatus::Accept as i32,
            "the app rejected its own proposal at height {height}"
        );
        // As in CometBFT's mempool: what the proposal left out waits for a
        // later block, and is rechecked against the new state after Commit.
        let mut left_out: Vec<Vec<u8>> = candidates_bytes
            .into_iter()
            .filter(|t| !txs.contains(t))
            .collect();
        let outcome = self.deliver(txs)?;
        left_out.retain(|tx| {
            self.app
                .check_tx(tendermint_proto::v0_38::abci::RequestCheckTx {
                    tx: tx.clone().into(),
                    r#type: tendermint_proto::v0_38::abci::CheckTxType::Recheck as i32,
                })
                .code
                == 0
        });
        self.mempool = left_out;
        Ok(outcome)
    }

    /// Executes a block with exactly `txs` (no PrepareProposal filtering), then commits.
    pub fn deliver(&mut self, txs: Vec<Vec<u8>>) -> anyhow::Result<BlockOutcome> {
        self.deliver_with_misbehavior(txs, Vec::new())
    }

    /// [`Self::deliver`] with the evidence CometBFT would report in the
    /// block's FinalizeBlock (`misbehavior`).
    pub fn deliver_with_misbehavior(
        &mut self,
        txs: Vec<Vec<u8>>,
        misbehavior: Vec<tendermint_proto::v0_38::abci::Misbehavior>,
    ) -> anyhow::Result<BlockOutcome> {
        self.deliver_with_evidence(txs, misbehavior, None)
    }

    /// [`Self::deliver`] with the previous block's commit as CometBFT
    /// reports it (`decided_last_commit`: who signed).
    pub fn deliver_with_commit(
        &mut self,
        txs: Vec<Vec<u8>>,
        commit: tendermint_proto::v0_38::abci::CommitInfo,
    ) -> anyhow::Result<BlockOutcome> {
        self.deliver_with_evidence(txs, Vec::new(), Some(commit))
    }

    /// [`Self::deliver`] with both: CometBFT's `misbehavior` and the
    /// previous block's commit.
    pub fn deliver_with_evidence(
        &mut self,
        txs: Vec<Vec<u8>>,
        misbehavior: Vec<tendermint_proto::v0_38::abci::Misbehavior>,
        commit: Option<tendermint_proto::v0_38::abci::CommitInfo>,
    ) -> anyhow::Result<BlockOutcome> {
        let height = self.height + 1;
        let time = Timestamp {
            seconds: GENESIS_TIME + BLOCK_SECONDS * i64::try_from(height)?,
            nanos: 0,
        };
        let response = self.app.finalize_block(RequestFinalizeBlock {
            txs: txs.iter().cloned().map(Into::into).collect(),
            hash: self.block_hash(height).into(),
            height: i64::try_from(height)?,
            time: Some(time),
            misbehavior,
            decided_last_commit: commit,
            ..Default::default()
        });
        self.commit_finalized(txs, response)
    }

    /// FinalizeBlock alone for the next height (no misbehaviour); finish
    /// the block with [`Self::commit_finalized`]. For benchmarks that time
    /// the two apart.
    pub fn finalize_next(&mut self, txs: &[Vec<u8>]) -> anyhow::Result<ResponseFinalizeBlock> {
        let height = self.height + 1;
        let time = Timestamp {
            seconds: GENESIS_TIME + BLOCK_SECONDS * i64::try_from(height)?,
            nanos: 0,
        };
        Ok(self.app.finalize_block(RequestFinalizeBlock {
            txs: txs.iter().cloned().map(Into::into).collect(),
            hash: self.block_hash(height).into(),
            height: i64::try_from(height)?,
            time: Some(time),
            ..Default::default()
        }))
    }

    /// Commits the block `response` finalized and applies its validator updates.
    pub fn commit_finalized(
        &mut self,
        txs: Vec<Vec<u8>>,
        response: ResponseFinalizeBlock,
    ) -> anyhow::Result<BlockOutcome> {
        let height = self.height + 1;
        self.app.commit();
        self.height = height;
        self.last_app_hash = response.app_hash.to_vec();
        self.apply_validator_updates(&response.validator_updates)?;
        Ok(BlockOutcome {
            height,
            response,
            included: txs,
        })
    }

    /// Signs `msgs` as one tx from `key` at its committed sequence, executes it
    /// alone in the next block and fails with the tx's log unless it succeeded:
    /// the one-liner for a scenario's setup steps (fund, grant, register).
    pub fn deliver_ok(&mut self, key: &TestKey, msgs: Vec<Any>) -> anyhow::Result<BlockOutcome> {
        let opts = self.opts_for(key);
        let outcome = self.deliver(vec![sign_tx(key, msgs, &opts)])?;
        let result = outcome
            .response
            .tx_results
            .first()
            .ok_or_else(|| anyhow::anyhow!("the block has no tx result"))?;
        anyhow::ensure!(
            result.code == 0,
            "tx from {} failed with code {}: {}",
            key.address,
            result.code,
            result.log
        );
        Ok(outcome)
    }

    /// The current state of an account (number, sequence), if it exists.
    pub fn account(&self, addr: &Address) -> Option<(u64, u64)> {
        let snapshot = self.app.latest_view();
        kiln_bank::state::AuthExt::account(&snapshot, addr)
            .ok()
            .flatten()
            .map(|a| (a.account_number, a.sequence))
    }

    pub fn balance(&self, addr: &Address) -> u128 {
        let snapshot = self.app.latest_view();
        kiln_bank::state::balance_readonly(&snapshot, addr, kiln_framework::BASE_DENOM).unwrap_or(0)
    }

    /// Options for the next tx from `key` with the committed sequence.
    pub fn opts_for(&self, key: &TestKey) -> TxOptions {
        let (number, sequence) = self.account(&key.address).unwrap_or((0, 0));
        TxOptions::new(&self.chain_id, number, sequence)
    }
}

/// An ed25519 consensus key for tests, derived from a label: its public key
/// and the proof of possession registration and rotation require.
pub struct ConsensusTestKey {
    pair: kiln_client::host::ConsensusKeyPair,
    pub public: [u8; 32],
}

impl ConsensusTestKey {
    pub fn from_label(label: &str) -> Self {
        let seed: [u8; 32] = Sha256::new()
            .chain_update(b"kiln-testkit/consensus-key/")
            .chain_update(label.as_bytes())
            .finalize()
            .into();
        let pair = kiln_client::host::ConsensusKeyPair::from_seed(seed);
        let public = pair.public();
        ConsensusTestKey { pair, public }
    }

    /// The proof of possession of this key for `owner` on `chain_id`.
    pub fn proof(&self, chain_id: &str, owner: &Address) -> Vec<u8> {
        self.pair
            .prove_possession(chain_id, &owner.to_string())
            .unwrap_or_default()
    }

    /// `MsgRegisterHost` for `owner` with this key and its proof.
    pub fn msg_register_host(&self, chain_id: &str, owner: &Address, worker_url: &str) -> Any {
        any_of(&kiln_hosts::msgs::MsgRegisterHost {
            owner: owner.to_string(),
            worker_url: worker_url.into(),
            consensus_pubkey: self.public.to_vec(),
            models: Vec::new(),
            hardware: "test".into(),
            consensus_key_proof: self.proof(chain_id, owner),
        })
    }

    /// `MsgUpdateHost` rotating `owner`'s consensus key to this key.
    pub fn msg_rotate_to(&self, chain_id: &str, owner: &Address, worker_url: &str) -> Any {
        any_of(&kiln_hosts::msgs::MsgUpdateHost {
            owner: owner.to_string(),
            worker_url: worker_url.into(),
            consensus_pubkey: self.public.to_vec(),
            models: Vec::new(),
            hardware: "test".into(),
            consensus_key_proof: self.proof(chain_id, owner),
        })
    }
}

/// Label of the key that owns the test kit's default genesis validator host.
pub const GENESIS_VALIDATOR_LABEL: &str = "testkit-genesis-validator";

/// Makes a host of its own (owner: the [`GENESIS_VALIDATOR_LABEL`] key, no
/// balance) the genesis validator, with weight 10: for test genesis files
/// whose scenario has no genesis host of its own.
pub fn add_genesis_validator(genesis: &mut kiln_genesis::AppGenesis) {
    let owner = TestKey::from_label(GENESIS_VALIDATOR_LABEL).address;
    let key = ConsensusTestKey::from_label(GENESIS_VALIDATOR_LABEL);
    genesis.hosts.hosts.push(kiln_hosts::GenesisHost {
        owner,
        worker_url: "http://genesis-validator.test:8080".into(),
        consensus_pubkey: hex::encode(key.public),
        models: Vec::new(),
        hardware: "test".into(),
        weight: 10,
    });
}

/// `updates` applied to `set` with CometBFT 0.38's rules; `genesis` uses
/// InitChain's (`NewValidatorSet`: no removals).
pub fn apply_cometbft_updates(
    set: &BTreeMap<Vec<u8>, u64>,
    updates: &[ValidatorUpdate],
    genesis: bool,
) -> anyhow::Result<BTreeMap<Vec<u8>, u64>> {
    use kiln_app::validator_rules::{self as rules, ConsensusKey};
    let mut current = rules::PowerSet::new();
    for (key, power) in set {
        let key = <[u8; 32]>::try_from(key.as_slice())
            .map_err(|_| anyhow::anyhow!("tracked validator key is not 32 bytes"))?;
        current.insert(ConsensusKey::Ed25519(key), i64::try_from(*power)?);
    }
    let applied = if genesis {
        rules::genesis_validator_set(updates, rules::DEFAULT_KEY_TYPES)
    } else {
        rules::apply_validator_updates(&current, updates, rules::DEFAULT_KEY_TYPES)
    }
    .map_err(|e| {
        anyhow::anyhow!(
            "CometBFT would refuse these validator updates (block execution error): {e}"
        )
    })?;
    applied
        .into_iter()
        .map(|(key, power)| Ok((key.bytes().to_vec(), u64::try_from(power)?)))
        .collect()
}

/// An ed25519 validator update (tests build lists with it).
pub fn ed25519_update(key: Vec<u8>, power: i64) -> ValidatorUpdate {
    ValidatorUpdate {
        pub_key: Some(tendermint_proto::v0_38::crypto::PublicKey {
            sum: Some(tendermint_proto::v0_38::crypto::public_key::Sum::Ed25519(
                key,
            )),
        }),
        power,
    }
}

/// The validator set the effective weights in force describe: each host with
/// weight, at power = weight, under its consensus key.
fn expected_validator_set<S: StateRead>(state: &S) -> anyhow::Result<BTreeMap<Vec<u8>, u64>> {
    let mut out = BTreeMap::new();
    for (host, weight) in
        kiln_staking::StakingExt::weights_in_force(state).map_err(|e| anyhow::anyhow!(e.log))?
    {
        let record = kiln_hosts::HostsExt::host(state, &host)
            .map_err(|e| anyhow::anyhow!(e.log))?
            .ok_or_else(|| anyhow::anyhow!("host {host} has weight {weight} but no host record"))?;
        let key = record.consensus_key_bytes();
        anyhow::ensure!(
            key.len() == 32,
            "host {host} has no valid ed25519 consensus key"
        );
        anyhow::ensure!(
            out.insert(key, weight).is_none(),
            "two hosts with weight share the consensus key of {host}"
        );
    }
    Ok(out)
}

fn show_set(set: &BTreeMap<Vec<u8>, u64>) -> String {
    let total: u128 = set.values().map(|p| u128::from(*p)).sum();
    let entries: Vec<String> = set
        .iter()
        .map(|(k, p)| format!("{}…={p}", hex::encode(k.get(..4).unwrap_or(k))))
        .collect();
    format!("[{}] (total {total})", entries.join(", "))
}

#[cfg(test)]
mod tests {
    use kiln_store::{Overlay, StateWrite};

    use super::*;

    fn driver(dir: &Path) -> (BlockDriver, TestKey) {
        let alice = TestKey::from_label("invariants-alice");
        let mut genesis = kiln_genesis::AppGenesis::default();
        genesis.add_balance(
            alice.address,
            vec![Coin::new(kiln_framework::BASE_DENOM, 1_000_000)],
        );
        genesis.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: alice.address,
            worker_url: "http://alice.example:8080".into(),
            consensus_pubkey: hex::encode([3u8; 32]),
            models: vec![],
            hardware: "test".into(),
            weight: 10,
        });
        let mut d = BlockDriver::open(
            dir,
            "kiln-invariants",
            &serde_json::to_value(genesis).unwrap(),
            0,
        )
        .unwrap();
        d.deliver(vec![]).unwrap();
        (d, alice)
    }

    #[test]
    fn a_consistent_chain_passes() {
        let dir = tempfile::tempdir().unwrap();
        let (d, _) = driver(dir.path());
        assert_eq!(d.validators, [(vec![3u8; 32], 10)].into_iter().collect());
        d.check_invariants().unwrap();
    }

    #[test]
    fn a_balance_written_without_supply_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let (d, alice) = driver(dir.path());
        let view = d.app.latest_view();
        let mut broken = Overlay::new(&view);
        broken.put_raw(
            kiln_bank::keys::balance(&alice.address, kiln_framework::BASE_DENOM),
            1_000_001u128.to_be_bytes().to_vec(),
        );
        let e = d.check_invariants_on(&broken).unwrap_err().to_string();
        assert!(e.contains("differs from the sum of balances"), "{e}");

        // Minting "properly" (supply and balance together) still breaks genesis + minted − burned.
        let mut minted = Overlay::new(&view);
        kiln_bank::state::BankExt::mint(
            &mut minted,
            &alice.address,
            &kiln_framework::Coins::normalize(vec![Coin::new("ukiln", 5)]).unwrap(),
        )
        .unwrap();
        let e = d.check_invariants_on(&minted).unwrap_err().to_string();
        assert!(e.contains("differs from genesis supply"), "{e}");
        // Emission (mint with the minted total) keeps it.
        let mut emitted = Overlay::new(&view);
        kiln_bank::state::BankExt::mint_emission(
            &mut emitted,
            &alice.address,
            &kiln_framework::Coins::normalize(vec![Coin::new("ukiln", 5)]).unwrap(),
        )
        .unwrap();
        d.check_invariants_on(&emitted).unwrap();

        // A tracked burn keeps supply = genesis − burned; coins destroyed
        // without the burned total do not.
        let five = kiln_framework::Coins::normalize(vec![Coin::new("ukiln", 5)]).unwrap();
        let mut burned = Overlay::new(&view);
        kiln_bank::state::BankExt::burn(&mut burned, &alice.address, &five).unwrap();
        d.check_invariants_on(&burned).unwrap();
        let mut vanished = Overlay::new(&view);
        kiln_bank::state::BankExt::burn(&mut vanished, &alice.address, &five).unwrap();
        vanished.delete_raw(kiln_bank::keys::burned("ukiln"));
        let e = d.check_invariants_on(&vanished).unwrap_err().to_string();
        assert!(e.contains("differs from genesis supply"), "{e}");

        // Coins moved into the bond escrow without a bond record are caught.
        let mut escrowed = Overlay::new(&view);
        kiln_bank::state::BankExt::sub_coins(&mut escrowed, &alice.address, &five).unwrap();
        kiln_bank::state::BankExt::add_coins(
            &mut escrowed,
            &Address::module(kiln_sprint::keys::BOND_ESCROW),
            &five,
        )
        .unwrap();
        let e = d.check_invariants_on(&escrowed).unwrap_err().to_string();
        assert!(e.contains("bond escrow"), "{e}");

        let mut zero = Overlay::new(&view);
        zero.put_raw(
            kiln_bank::keys::balance(&alice.address, "uother"),
            0u128.to_be_bytes().to_vec(),
        );
        assert!(d
            .check_invariants_on(&zero)
            .unwrap_err()
            .to_string()
            .contains("zero balance"));
    }

    #[test]
    fn the_driver_refuses_every_update_list_cometbft_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, _) = driver(dir.path());
        let before = d.validators.clone();
        let secp = ValidatorUpdate {
            pub_key: Some(tendermint_proto::v0_38::crypto::PublicKey {
                sum: Some(tendermint_proto::v0_38::crypto::public_key::Sum::Secp256k1(
                    vec![2; 33],
                )),
            }),
            power: 5,
        };
        let max = i64::MAX / 8;
        for (name, list, want) in [
            (
                "negative power",
                vec![ed25519_update(vec![4; 32], -1)],
                "negative",
            ),
            (
                "duplicate key",
                vec![
                    ed25519_update(vec![4; 32], 1),
                    ed25519_update(vec![4; 32], 2),
                ],
                "duplicate",
            ),
            (
                "unknown removal",
                vec![
                    ed25519_update(vec![4; 32], 0),
                    ed25519_update(vec![5; 32], 1),
                ],
                "failed to find validator",
            ),
            ("unsupported key type", vec![secp], "unsupported"),
            (
                "total above the max",
                vec![ed25519_update(vec![4; 32], max)],
                "exceeds the max",
            ),
            (
                "empty set",
                vec![ed25519_update(vec![3; 32], 0)],
                "empty set",
            ),
        ] {
            let e = d.apply_validator_updates(&list).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
            assert_eq!(d.validators, before, "{name}: the set is unchanged");
        }
    }

    #[test]
    fn a_validator_set_that_does_not_follow_the_weights_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, alice) = driver(dir.path());
        d.apply_validator_updates(&[ed25519_update(vec![3u8; 32], 11)])
            .unwrap();
        let e = d.check_invariants().unwrap_err().to_string();
        assert!(e.contains("validator set"), "{e}");
        d.apply_validator_updates(&[ed25519_update(vec![3u8; 32], 10)])
            .unwrap();
        d.check_invariants().unwrap();

        // Weight written directly without a matching validator update.
        let view = d.app.latest_view();
        let mut broken = Overlay::new(&view);
        broken.put_raw(
            kiln_staking::keys::weight(&alice.address),
            12u64.to_be_bytes().to_vec(),
        );
        assert!(d.check_invariants_on(&broken).is_err());
    }

    #[test]
    fn a_host_above_the_power_cap_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let (d, _) = driver(dir.path());
        let view = d.app.latest_view();
        let mut broken = Overlay::new(&view);
        // Five more hosts with weight 1 next to alice's 10: 10 of 15 > 25%.
        let mut validators = d.validators.clone();
        for i in 0..5u8 {
            let owner = Address([100 + i; 20]);
            let host = kiln_hosts::Host {
                owner,
                worker_url: "http://x.example".into(),
                consensus_pubkey: hex::encode([50 + i; 32]),
                models: vec![],
                hardware: String::new(),
                registered_height: 0,
            };
            kiln_framework::StateWriteExt::put_value(
                &mut broken,
                kiln_hosts::keys::host(&owner),
                &host,
            )
            .unwrap();
            broken.put_raw(
                kiln_staking::keys::weight(&owner),
                1u64.to_be_bytes().to_vec(),
            );
            validators.insert(vec![50 + i; 32], 1);
        }
        // Weights written by hand: the count beside them too.
        broken.put_raw(
            kiln_staking::keys::HOSTS_WITH_WEIGHT.to_vec(),
            6u64.to_be_bytes().to_vec(),
        );
        let d = BlockDriver { validators, ..d };
        let e = d.check_invariants_on(&broken).unwrap_err().to_string();
        assert!(e.contains("power cap"), "{e}");
    }
}
