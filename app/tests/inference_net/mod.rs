//! A small inference market for scenario tests: genesis hosts serving
//! SmolLM2's registry entry at 1 ukiln per token, a funded requester and a
//! poor one; every block checks SPEC §11's invariants.
#![allow(dead_code)]

use kiln_framework::{Address, Coin, BASE_DENOM};
use kiln_inference::query;
use kiln_testkit::inference::SignedRequest;
use kiln_testkit::{sign_tx, BlockDriver, ConsensusTestKey, TestKey, GENESIS_TIME};
use serde_json::Value;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{ExecTxResult, RequestQuery};

pub const CHAIN: &str = "kiln-inference-settle";
pub const MODEL: &str = "smollm2-135m";
/// 1 ukiln per token: the arithmetic below is easy to read.
pub const PRICE: u64 = 1_000_000;
pub const FEE: u128 = 5_000;

pub struct Net {
    pub d: BlockDriver,
    pub requester: TestKey,
    pub poor: TestKey,
    pub hosts: Vec<TestKey>,
    _dir: tempfile::TempDir,
}

/// Three hosts of weights 10, 20, 30 serving the model.
pub fn net() -> Net {
    net_with(&[10, 20, 30])
}

/// Hosts of `weights` serving the model, a funded requester and a poor one.
pub fn net_with(weights: &[u64]) -> Net {
    let requester = TestKey::from_label("settle-requester");
    let poor = TestKey::from_label("settle-poor");
    let hosts: Vec<TestKey> = (0..weights.len())
        .map(|i| TestKey::from_label(&format!("settle-host-{i}")))
        .collect();
    let mut g = kiln_genesis::AppGenesis::default();
    g.add_balance(requester.address, vec![Coin::new(BASE_DENOM, 10_000_000)]);
    g.add_balance(poor.address, vec![Coin::new(BASE_DENOM, 50)]);
    for (i, h) in hosts.iter().enumerate() {
        g.add_balance(h.address, vec![Coin::new(BASE_DENOM, 1_000_000)]);
        g.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: h.address,
            worker_url: format!("http://host{i}.test:8080"),
            consensus_pubkey: hex::encode(
                ConsensusTestKey::from_label(&format!("settle-host-{i}")).public,
            ),
            models: vec![MODEL.into()],
            hardware: "test".into(),
            weight: weights[i],
        });
    }
    let mut model = kiln_genesis::devnet_model();
    model.price_floor_pkiln = PRICE;
    g.inference.models.push(model);
    let dir = tempfile::tempdir().unwrap();
    let d = BlockDriver::open(dir.path(), CHAIN, &serde_json::to_value(&g).unwrap(), 0).unwrap();
    Net {
        d,
        requester,
        poor,
        hosts,
        _dir: dir,
    }
}

impl Net {
    pub fn host(&self, addr: Address) -> &TestKey {
        self.hosts.iter().find(|h| h.address == addr).unwrap()
    }

    /// One block with `txs`, invariants checked; the txs' results.
    pub fn block(&mut self, txs: Vec<Vec<u8>>) -> Vec<ExecTxResult> {
        let out = self.d.deliver(txs).unwrap();
        self.d.check_invariants().unwrap();
        out.response.tx_results
    }

    pub fn tx(&self, key: &TestKey, msg: Vec<cosmos_sdk_proto::Any>) -> Vec<u8> {
        sign_tx(key, msg, &self.d.opts_for(key))
    }

    /// A request signed now for `ta`, with its drawn executor.
    pub fn request(
        &self,
        requester: &TestKey,
        ta: Address,
        body: &str,
        max_tokens: u64,
    ) -> (SignedRequest, Address) {
        let now = GENESIS_TIME + self.d.height as i64 + 1;
        let r = SignedRequest::new(
            requester,
            CHAIN,
            ta,
            MODEL,
            body.as_bytes(),
            max_tokens,
            now,
        );
        let executor = r.draw(&self.d.app.latest_view(), self.d.height).unwrap();
        (r, executor)
    }

    pub fn query(&self, path: &str, data: &str) -> (u32, Value, String) {
        let r = self.d.app.query(RequestQuery {
            path: path.into(),
            data: data.as_bytes().to_vec().into(),
            height: 0,
            prove: false,
        });
        let v = serde_json::from_slice(&r.value).unwrap_or(Value::Null);
        (r.code, v, r.log)
    }

    pub fn record(&self, id: [u8; 32]) -> Value {
        let (code, v, log) = self.query(query::INFERENCE_PATH, &hex::encode(id));
        assert_eq!(code, 0, "{log}");
        v
    }
}

pub fn assert_refused(r: &ExecTxResult, code: u32, words: &str) {
    assert_eq!(r.codespace, "inference", "{}", r.log);
    assert_eq!(r.code, code, "{}", r.log);
    assert!(r.log.contains(words), "{:?} lacks {words:?}", r.log);
}
