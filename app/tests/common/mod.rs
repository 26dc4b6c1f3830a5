//! A small sprint network for scenario tests: genesis hosts (weight 100
//! each) with ML-ops hot keys, every sprint message sent by the hot key
//! through `MsgExec`, SPEC §11 invariants checked after every block.
#![allow(dead_code)]

use kiln_epochs::{EpochParams, Stage};
use kiln_framework::Address;
use kiln_sprint::msgs::{MsgSprintVoteCommit, MsgSprintVoteReveal};
use kiln_testkit::{any_of, msg_exec, sign_tx, BlockDriver, TestKey};
use tendermint_proto::v0_38::abci::ExecTxResult;

pub const CHAIN: &str = "kiln-sprint-protocol-scenario";

pub struct Host {
    pub key: TestKey,
    pub hot: TestKey,
}

impl Host {
    pub fn addr(&self) -> Address {
        self.key.address
    }
}

pub struct Net {
    pub d: BlockDriver,
    pub hosts: Vec<Host>,
    pub samples: u32,
    _dir: tempfile::TempDir,
}

/// `count` share leaves `(nonce, d_q)` with strictly increasing nonces.
pub fn shares(count: u64, seed: u64) -> Vec<(u64, u32)> {
    (0..count)
        .map(|i| {
            (
                i * 16 + (seed % 16),
                12_000 + ((i * 7 + seed) % 1_400) as u32,
            )
        })
        .collect()
}

pub fn at(stage: Stage) -> u64 {
    EpochParams::devnet().stage_height(1, 1, stage)
}

impl Net {
    /// `n` genesis hosts on the devnet schedule, `samples` leaves sampled per opening.
    pub fn new(label: &str, n: usize, samples: u32) -> Net {
        let hosts: Vec<Host> = (0..n)
            .map(|i| Host {
                key: TestKey::from_label(&format!("{label}-host-{i}")),
                hot: TestKey::from_label(&format!("{label}-host-{i}-hot")),
            })
            .collect();
        let mut g = kiln_genesis::AppGenesis::default();
        g.epochs.params = EpochParams::devnet();
        g.sprint.params = kiln_sprint::SprintParams {
            sprint_samples: samples,
            ..kiln_sprint::SprintParams::devnet()
        };
        g.reputation.params = kiln_reputation::ReputationParams::devnet();
        for (i, h) in hosts.iter().enumerate() {
            for a in [h.key.address, h.hot.address] {
                g.add_balance(a, vec![kiln_framework::Coin::new("ukiln", 1_000_000_000)]);
            }
            g.hosts.hosts.push(kiln_hosts::GenesisHost {
                owner: h.key.address,
                worker_url: format!("http://host{i}.example:8080"),
                consensus_pubkey: hex::encode([i as u8 + 1; 32]),
                models: vec![],
                hardware: "test".into(),
                weight: 100,
            });
            g.add_ml_ops_grants(h.key.address, h.hot.address);
        }
        let dir = tempfile::tempdir().unwrap();
        let d = BlockDriver::open(dir.path(), CHAIN, &serde_json::to_value(g).unwrap(), 0).unwrap();
        Net {
            d,
            hosts,
            samples,
            _dir: dir,
        }
    }

    /// Host `i`'s hot key sends `msgs` on its behalf through `MsgExec`.
    pub fn exec(&self, i: usize, msgs: Vec<cosmos_sdk_proto::Any>) -> Vec<u8> {
        let h = &self.hosts[i];
        let mut opts = self.d.opts_for(&h.hot);
        opts.gas_limit = 5_000_000;
        opts.fee = 150_000;
        sign_tx(&h.hot, vec![msg_exec(&h.hot.address, msgs)], &opts)
    }

    pub fn deliver(&mut self, txs: Vec<Vec<u8>>) -> Vec<ExecTxResult> {
        let out = self.d.deliver(txs).unwrap();
        self.d.check_invariants().unwrap();
        out.response.tx_results
    }

    /// Delivers `txs` in one block and asserts every one succeeded.
    pub fn deliver_ok(&mut self, txs: Vec<Vec<u8>>) {
        let r = self.deliver(txs);
        assert!(
            r.iter().all(|r| r.code == 0),
            "{:?}",
            r.iter().map(|r| &r.log).collect::<Vec<_>>()
        );
    }

    /// One tx by host `i` carrying `msg`; returns its result.
    pub fn send(&mut self, i: usize, msg: cosmos_sdk_proto::Any) -> ExecTxResult {
        let tx = self.exec(i, vec![msg]);
        self.deliver(vec![tx]).remove(0)
    }

    /// Empty blocks until the next block is `height`.
    pub fn until(&mut self, height: u64) {
        while self.d.height + 1 < height {
            self.deliver(vec![]);
        }
    }

    pub fn vote_commit(
        &self,
        voter: usize,
        host: Address,
        commitment: [u8; 32],
    ) -> cosmos_sdk_proto::Any {
        any_of(&MsgSprintVoteCommit {
            voter: self.hosts[voter].addr().to_bech32(),
            epoch: 1,
            host: host.to_bech32(),
            commitment: commitment.to_vec(),
        })
    }

    pub fn vote_reveal(
        &self,
        voter: usize,
        host: Address,
        valid: bool,
        salt: &[u8],
    ) -> cosmos_sdk_proto::Any {
        any_of(&MsgSprintVoteReveal {
            voter: self.hosts[voter].addr().to_bech32(),
            epoch: 1,
            host: host.to_bech32(),
            valid,
            salt: salt.to_vec(),
        })
    }

    /// `voter`'s honest commitment of `valid` on `host`.
    pub fn commitment(&self, voter: usize, host: Address, valid: bool, salt: &[u8]) -> [u8; 32] {
        kiln_sprint::msgs::vote_commitment(
            CHAIN,
            1,
            host.as_bytes(),
            self.hosts[voter].addr().as_bytes(),
            valid,
            salt,
        )
    }

    pub fn result(&self, host: Address) -> kiln_sprint::state::EpochResult {
        kiln_sprint::state::result(&self.d.app.latest_view(), 1, &host)
            .unwrap()
            .expect("settled result")
    }

    pub fn good_epochs(&self, host: Address) -> u64 {
        kiln_reputation::good_epochs(&self.d.app.latest_view(), &host).unwrap()
    }
}
