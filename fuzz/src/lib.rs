//! Shared harness of the Kiln fuzz targets.
//!
//! A small chain is built once per process with the testkit's [`BlockDriver`]
//! (rocksdb in a temp dir): funded accounts, an authz grant, a committed
//! block. Every input then gets a *fresh* [`KilnApp`] over that same committed
//! storage (fresh mempool view and signature cache, nothing is ever committed),
//! so runs are deterministic and independent of each other, and goes through:
//!
//! * `CheckTx` (the ante, as the mempool runs it);
//! * `FinalizeBlock` with the tx as the only one in the block (never committed);
//! * the same transaction executed directly with [`execute_decoded`] on an
//!   overlay over the committed state, to inspect what it wrote.
//!
//! Properties checked (besides "never panics"):
//! * CheckTx and FinalizeBlock agree: a tx the ante refuses in CheckTx gets the
//!   same code from FinalizeBlock, and its block has exactly the app hash of an
//!   empty block (no state change at all);
//! * the direct execution gets the same code as FinalizeBlock;
//! * coins are conserved (the sum of balance changes is zero, supply untouched);
//! * a failing tx changes no balance except paying its fee: the payer loses
//!   exactly the fee and the fee collector gains it (the Cosmos rule — the fee
//!   and sequence are charged when the ante passed but a message failed); when
//!   the ante failed, nothing at all is written.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use cosmos_sdk_proto::cosmos::authz::v1beta1::{GenericAuthorization, Grant, MsgExec, MsgGrant, MsgRevoke};
use cosmos_sdk_proto::cosmos::bank::v1beta1::MsgSend;
use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmos_sdk_proto::cosmos::tx::signing::v1beta1::SignMode;
use cosmos_sdk_proto::cosmos::tx::v1beta1::{mode_info, AuthInfo, Fee, ModeInfo, SignerInfo, TxBody, TxRaw};
use cosmos_sdk_proto::Any;
use k256::ecdsa::Signature;
use kiln_app::ante::SigCache;
use kiln_app::exec::{execute_decoded, ExecMode};
use kiln_testkit::{msg_grant, sign_tx, BlockDriver, TestKey, TxOptions, GENESIS_TIME};
use kiln_app::tx::decode_tx;
use kiln_app::KilnApp;
use kiln_framework::{Address, BlockInfo, BASE_DENOM};
use kiln_store::{Overlay, StateRead, Storage};
use prost::Message;
use tendermint_abci::Application;
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::abci::{RequestCheckTx, RequestFinalizeBlock};

pub const CHAIN_ID: &str = "kiln-fuzz";
/// Starting balance of the funded accounts.
pub const FUNDS: u128 = 1_000_000_000;

pub struct Harness {
    _dir: tempfile::TempDir,
    pub storage: Storage,
    /// alice, bob, carol (funded; alice granted bob `MsgSend`), dave (no account).
    pub keys: Vec<TestKey>,
    /// (account number, sequence) of each key, `None` if it has no account.
    pub accounts: Vec<Option<(u64, u64)>>,
    /// Height of the block every input is executed in.
    pub height: u64,
    /// App hash FinalizeBlock returns for an empty block at `height`.
    pub empty_block_hash: Vec<u8>,
}

fn finalize_request(height: u64, txs: Vec<Vec<u8>>) -> RequestFinalizeBlock {
    let h = i64::try_from(height).unwrap_or(i64::MAX);
    RequestFinalizeBlock {
        txs: txs.into_iter().map(Into::into).collect(),
        hash: vec![0x42; 32].into(),
        height: h,
        time: Some(Timestamp { seconds: GENESIS_TIME + h, nanos: 0 }),
        ..Default::default()
    }
}

impl Harness {
    fn setup() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys: Vec<TestKey> = ["alice", "bob", "carol", "dave"].iter().map(|l| TestKey::from_label(&format!("fuzz-{l}"))).collect();
        let genesis = BlockDriver::genesis_funding(&[&keys[0], &keys[1], &keys[2]], FUNDS);
        let mut driver = BlockDriver::open(dir.path(), CHAIN_ID, &genesis, 0).expect("open driver");
        // Block 1: alice lets bob send her coins (exercises MsgExec paths).
        let opts = driver.opts_for(&keys[0]);
        let grant = sign_tx(&keys[0], vec![msg_grant(&keys[0].address, &keys[1].address, kiln_bank::handler::MSG_SEND_TYPE_URL, None)], &opts);
        let out = driver.deliver(vec![grant]).expect("block 1");
        assert!(out.response.tx_results.iter().all(|r| r.code == 0), "setup tx failed: {:?}", out.response.tx_results);
        let accounts = keys.iter().map(|k| driver.account(&k.address)).collect();
        let height = driver.height + 1;
        let storage = driver.app.storage().clone();
        drop(driver);
        let app = KilnApp::new(storage.clone()).expect("app");
        let empty_block_hash = app.finalize_block(finalize_request(height, Vec::new())).app_hash.to_vec();
        Harness { _dir: dir, storage, keys, accounts, height, empty_block_hash }
    }

    /// The process-wide harness (built on first use).
    pub fn get() -> &'static Harness {
        static HARNESS: OnceLock<Harness> = OnceLock::new();
        HARNESS.get_or_init(Harness::setup)
    }

    fn block(&self) -> BlockInfo {
        let request = finalize_request(self.height, Vec::new());
        BlockInfo {
            chain_id: CHAIN_ID.to_string(),
            height: self.height,
            time_seconds: request.time.map_or(0, |t| t.seconds),
            hash: request.hash.to_vec(),
            ..Default::default()
        }
    }

    /// Options for a correct next tx from key `i`.
    pub fn opts_for(&self, i: usize) -> TxOptions {
        let (number, sequence) = self.accounts[i].unwrap_or((0, 0));
        TxOptions::new(CHAIN_ID, number, sequence)
    }

    /// A few valid transactions (seed corpus for the byte-level targets).
    pub fn seed_txs(&self) -> Vec<Vec<u8>> {
        use kiln_testkit::{msg_exec, msg_revoke, msg_send};
        let k = &self.keys;
        let mut memo = self.opts_for(2);
        memo.memo = "seed memo".into();
        memo.timeout_height = self.height + 10;
        vec![
            sign_tx(&k[0], vec![msg_send(&k[0].address, &k[1].address, 1_000)], &self.opts_for(0)),
            sign_tx(&k[1], vec![msg_exec(&k[1].address, vec![msg_send(&k[0].address, &k[1].address, 7)])], &self.opts_for(1)),
            sign_tx(&k[2], vec![msg_grant(&k[2].address, &k[3].address, kiln_bank::handler::MSG_SEND_TYPE_URL, Some(GENESIS_TIME + 1_000))], &memo),
            sign_tx(&k[0], vec![msg_revoke(&k[0].address, &k[1].address, kiln_bank::handler::MSG_SEND_TYPE_URL)], &self.opts_for(0)),
            sign_tx(&k[2], vec![msg_send(&k[2].address, &k[3].address, 5), msg_send(&k[2].address, &k[0].address, 6)], &self.opts_for(2)),
        ]
    }

    /// Runs `tx` through CheckTx, FinalizeBlock and a direct execution, and
    /// checks the properties in the module docs. Returns the FinalizeBlock code.
    pub fn run(&self, tx: &[u8]) -> u32 {
        let app = KilnApp::new(self.storage.clone()).expect("app");
        let check = app.check_tx(RequestCheckTx { tx: tx.to_vec().into(), r#type: 0 });
        let finalize = app.finalize_block(finalize_request(self.height, vec![tx.to_vec()]));
        assert_eq!(finalize.tx_results.len(), 1);
        let result = &finalize.tx_results[0];

        if check.code != 0 {
            // Refused by the ante (or undecodable): same answer in the block,
            // and the block is exactly an empty block.
            assert_eq!((result.code, &result.codespace), (check.code, &check.codespace), "CheckTx and FinalizeBlock disagree: {} / {}", check.log, result.log);
            assert_eq!(finalize.app_hash.to_vec(), self.empty_block_hash, "a tx refused by the ante changed the state: {}", check.log);
        }

        // Direct execution over the committed state, to see what it writes.
        let view = app.latest_view();
        let decoded = decode_tx(tx);
        let mut state = Overlay::new(&view);
        let code = match &decoded {
            Err(e) => e.code,
            Ok(decoded) => {
                let block = self.block();
                let cache = SigCache::new(16);
                let outcome = execute_decoded(&mut state, &block, decoded, &cache, ExecMode::Deliver);
                assert_eq!(outcome.code, result.code, "direct execution and FinalizeBlock disagree: {} / {}", outcome.log, result.log);
                outcome.code
            }
        };
        let changes = state.changes();
        if check.code != 0 {
            assert!(changes.is_empty(), "ante failed but the tx wrote {} keys", changes.len());
        }
        // Supply never changes through transactions.
        assert!(!changes.keys().any(|k| k.starts_with(kiln_bank::keys::SUPPLY_PREFIX)), "a tx changed the supply");
        // Balance deltas.
        let mut deltas: BTreeMap<Vec<u8>, i128> = BTreeMap::new();
        for (key, value) in changes.range(kiln_bank::keys::BALANCE_PREFIX.to_vec()..) {
            if !key.starts_with(kiln_bank::keys::BALANCE_PREFIX) {
                break;
            }
            let before = balance_value(view.get_raw(key).expect("read"));
            let after = balance_value(value.clone());
            let delta = i128::try_from(after).expect("balance fits i128") - i128::try_from(before).expect("balance fits i128");
            if delta != 0 {
                deltas.insert(key.clone(), delta);
            }
        }
        assert_eq!(deltas.values().sum::<i128>(), 0, "coins were created or destroyed: {deltas:?}");
        if code != 0 && !deltas.is_empty() {
            // Only the fee moved: payer -> fee collector, exactly the fee.
            let decoded = decoded.as_ref().expect("a decodable tx, since it wrote");
            let payer = decoded.signers().expect("signers")[0];
            let collector = Address::module(kiln_bank::FEE_COLLECTOR);
            let fee = kiln_framework::Coins::from_proto(&decoded.auth_info.fee.clone().unwrap_or_default().amount).expect("fee coins");
            let mut expected: BTreeMap<Vec<u8>, i128> = BTreeMap::new();
            for coin in fee.iter() {
                let amount = i128::try_from(coin.amount).expect("fee fits i128");
                *expected.entry(kiln_bank::keys::balance(&payer, &coin.denom)).or_default() -= amount;
                *expected.entry(kiln_bank::keys::balance(&collector, &coin.denom)).or_default() += amount;
            }
            expected.retain(|_, d| *d != 0);
            assert_eq!(deltas, expected, "a failing tx (code {code}) moved more than its fee");
        }
        result.code
    }
}

fn balance_value(value: Option<Vec<u8>>) -> u128 {
    value.map_or(0, |v| u128::from_be_bytes(<[u8; 16]>::try_from(v.as_slice()).expect("16-byte balance")))
}

// ---- structured inputs ------------------------------------------------------

/// An address: one of the harness keys, a module account, or arbitrary text.
#[derive(Arbitrary, Debug, Clone)]
pub enum AddrSpec {
    Key(u8),
    FeeCollector,
    Text(String),
}

#[derive(Arbitrary, Debug, Clone)]
pub struct CoinSpec {
    pub denom: Option<String>,
    pub amount: AmountSpec,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum AmountSpec {
    Small(u16),
    Big(u128),
    Text(String),
}

#[derive(Arbitrary, Debug, Clone)]
pub enum MsgSpec {
    Send { from: AddrSpec, to: AddrSpec, amount: Vec<CoinSpec> },
    Grant { granter: AddrSpec, grantee: AddrSpec, type_url: Option<String>, expiration: Option<i64>, no_grant: bool },
    Revoke { granter: AddrSpec, grantee: AddrSpec, type_url: Option<String> },
    Exec { grantee: AddrSpec, msgs: Vec<MsgSpec> },
    Raw { type_url: String, value: Vec<u8> },
}

#[derive(Arbitrary, Debug, Clone)]
pub enum SigMutation {
    None,
    FlipBit(u8),
    HighS,
    Truncate(u8),
    Empty,
    Random(Vec<u8>),
}

/// A transaction described field by field; with every knob at its neutral
/// value it is a valid signed tx from key `signer`.
#[derive(Arbitrary, Debug, Clone)]
pub struct TxSpec {
    pub signer: u8,
    /// Sign with this key instead of the signer's.
    pub sign_with: Option<u8>,
    pub msgs: Vec<MsgSpec>,
    pub account_number_delta: i8,
    pub sequence_delta: i8,
    pub wrong_chain_id: Option<String>,
    pub gas_limit: Option<u64>,
    pub fee: Option<Vec<CoinSpec>>,
    pub memo: Option<String>,
    pub timeout_height: Option<u64>,
    /// None: include the signer's key; Some(None): omit it; Some(Some(i)): key i.
    pub public_key: Option<Option<u8>>,
    pub sign_mode: Option<i32>,
    pub extra_signer_infos: u8,
    pub extra_signatures: u8,
    pub sig: SigMutation,
    pub fee_payer: Option<String>,
    /// Flip one byte of the final encoding.
    pub corrupt: Option<(u16, u8)>,
}

impl Harness {
    fn key(&self, i: u8) -> &TestKey {
        &self.keys[usize::from(i) % self.keys.len()]
    }

    fn addr(&self, spec: &AddrSpec) -> String {
        match spec {
            AddrSpec::Key(i) => self.key(*i).address.to_bech32(),
            AddrSpec::FeeCollector => Address::module(kiln_bank::FEE_COLLECTOR).to_bech32(),
            AddrSpec::Text(t) => t.clone(),
        }
    }

    fn coins(&self, specs: &[CoinSpec]) -> Vec<ProtoCoin> {
        specs
            .iter()
            .take(4)
            .map(|c| ProtoCoin {
                denom: c.denom.clone().unwrap_or_else(|| BASE_DENOM.to_string()),
                amount: match &c.amount {
                    AmountSpec::Small(n) => n.to_string(),
                    AmountSpec::Big(n) => n.to_string(),
                    AmountSpec::Text(t) => t.clone(),
                },
            })
            .collect()
    }

    fn msg(&self, spec: &MsgSpec, depth: u32) -> Any {
        let any = |type_url: &str, value: Vec<u8>| Any { type_url: type_url.to_string(), value };
        match spec {
            MsgSpec::Send { from, to, amount } => any(
                kiln_bank::handler::MSG_SEND_TYPE_URL,
                MsgSend { from_address: self.addr(from), to_address: self.addr(to), amount: self.coins(amount) }.encode_to_vec(),
            ),
            MsgSpec::Grant { granter, grantee, type_url, expiration, no_grant } => {
                let authorization = Any {
                    type_url: kiln_authz::state::GENERIC_AUTHORIZATION_TYPE_URL.to_string(),
                    value: GenericAuthorization { msg: type_url.clone().unwrap_or_else(|| kiln_bank::handler::MSG_SEND_TYPE_URL.to_string()) }.encode_to_vec(),
                };
                let grant = (!no_grant).then(|| Grant {
                    authorization: Some(authorization),
                    expiration: expiration.map(|seconds| cosmos_sdk_proto::Timestamp { seconds, nanos: 0 }),
                });
                any(kiln_authz::handler::MSG_GRANT_TYPE_URL, MsgGrant { granter: self.addr(granter), grantee: self.addr(grantee), grant }.encode_to_vec())
            }
            MsgSpec::Revoke { granter, grantee, type_url } => any(
                kiln_authz::handler::MSG_REVOKE_TYPE_URL,
                MsgRevoke {
                    granter: self.addr(granter),
                    grantee: self.addr(grantee),
                    msg_type_url: type_url.clone().unwrap_or_else(|| kiln_bank::handler::MSG_SEND_TYPE_URL.to_string()),
                }
                .encode_to_vec(),
            ),
            MsgSpec::Exec { grantee, msgs } => {
                // Depth 2 at most: nested MsgExec must be refused, not recursed into forever.
                let inner = if depth >= 2 { Vec::new() } else { msgs.iter().take(3).map(|m| self.msg(m, depth + 1)).collect() };
                any(kiln_authz::handler::MSG_EXEC_TYPE_URL, MsgExec { grantee: self.addr(grantee), msgs: inner }.encode_to_vec())
            }
            MsgSpec::Raw { type_url, value } => any(type_url, value.clone()),
        }
    }

    /// Builds and signs the transaction a [`TxSpec`] describes.
    pub fn build(&self, spec: &TxSpec) -> Vec<u8> {
        let signer_index = usize::from(spec.signer) % self.keys.len();
        let signer = &self.keys[signer_index];
        let opts = self.opts_for(signer_index);
        let msgs: Vec<Any> = if spec.msgs.is_empty() {
            // Default: a plain send to the next key.
            vec![kiln_testkit::msg_send(&signer.address, &self.key(spec.signer.wrapping_add(1)).address, 100)]
        } else {
            spec.msgs.iter().take(4).map(|m| self.msg(m, 0)).collect()
        };
        let body = TxBody {
            messages: msgs,
            memo: spec.memo.clone().unwrap_or_default(),
            timeout_height: spec.timeout_height.unwrap_or(0),
            ..Default::default()
        };
        let public_key = match spec.public_key {
            None => Some(signer.pubkey_any()),
            Some(None) => None,
            Some(Some(i)) => Some(self.key(i).pubkey_any()),
        };
        let sequence = opts.sequence.wrapping_add_signed(i64::from(spec.sequence_delta));
        let info = SignerInfo {
            public_key,
            mode_info: Some(ModeInfo { sum: Some(mode_info::Sum::Single(mode_info::Single { mode: spec.sign_mode.unwrap_or(SignMode::Direct as i32) })) }),
            sequence,
        };
        let mut signer_infos = vec![info.clone()];
        signer_infos.extend(std::iter::repeat(info).take(usize::from(spec.extra_signer_infos % 4)));
        let auth_info = AuthInfo {
            signer_infos,
            fee: Some(Fee {
                amount: spec.fee.as_ref().map_or_else(|| vec![ProtoCoin { denom: BASE_DENOM.into(), amount: opts.fee.to_string() }], |f| self.coins(f)),
                gas_limit: spec.gas_limit.unwrap_or(opts.gas_limit),
                payer: spec.fee_payer.clone().unwrap_or_default(),
                granter: String::new(),
            }),
            #[allow(deprecated)]
            tip: None,
        };
        let body_bytes = body.encode_to_vec();
        let auth_info_bytes = auth_info.encode_to_vec();
        let chain_id = spec.wrong_chain_id.clone().unwrap_or_else(|| CHAIN_ID.to_string());
        let account_number = opts.account_number.wrapping_add_signed(i64::from(spec.account_number_delta));
        let signing = spec.sign_with.map_or(&signer.signing, |i| &self.key(i).signing);
        let signature = kiln_client::sign::sign_direct(signing, &body_bytes, &auth_info_bytes, &chain_id, account_number);
        let mut sig = signature.to_bytes().to_vec();
        match &spec.sig {
            SigMutation::None => {}
            SigMutation::FlipBit(b) => {
                let i = usize::from(*b) % (sig.len() * 8);
                sig[i / 8] ^= 1 << (i % 8);
            }
            SigMutation::HighS => {
                let (r, s) = signature.split_scalars();
                let high = Signature::from_scalars(r, -s).expect("valid scalars");
                sig = high.to_bytes().to_vec();
            }
            SigMutation::Truncate(n) => sig.truncate(usize::from(*n) % 64),
            SigMutation::Empty => sig.clear(),
            SigMutation::Random(bytes) => sig = bytes.iter().take(80).copied().collect(),
        }
        let mut signatures = vec![sig.clone()];
        signatures.extend(std::iter::repeat(sig).take(usize::from(spec.extra_signatures % 4)));
        let mut bytes = TxRaw { body_bytes, auth_info_bytes, signatures }.encode_to_vec();
        if let Some((pos, xor)) = spec.corrupt {
            if !bytes.is_empty() && xor != 0 {
                let i = usize::from(pos) % bytes.len();
                bytes[i] ^= xor;
            }
        }
        bytes
    }

    /// True if the spec describes a tx that must succeed: a plain send of a
    /// small amount from a funded key with every other knob neutral.
    pub fn must_succeed(&self, spec: &TxSpec) -> bool {
        let signer_index = usize::from(spec.signer) % self.keys.len();
        self.accounts[signer_index].is_some()
            && spec.sign_with.is_none_or(|i| usize::from(i) % self.keys.len() == signer_index)
            && spec.msgs.is_empty()
            && spec.account_number_delta == 0
            && spec.sequence_delta == 0
            && spec.wrong_chain_id.as_deref().is_none_or(|c| c == CHAIN_ID)
            && spec.gas_limit.is_none()
            && spec.fee.is_none()
            && spec.memo.as_ref().is_none_or(|m| m.chars().count() <= 256)
            && spec.timeout_height.is_none_or(|h| h == 0 || h >= self.height)
            && spec.public_key.is_none()
            && spec.sign_mode.is_none()
            && spec.extra_signer_infos % 4 == 0
            && spec.extra_signatures % 4 == 0
            && matches!(spec.sig, SigMutation::None)
            && spec.fee_payer.as_deref().is_none_or(str::is_empty)
            && spec.corrupt.is_none_or(|(_, x)| x == 0)
    }
}
