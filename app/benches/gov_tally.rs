//! `make bench`: what the end of a vote costs (issue 14). A chain with `n`
//! genesis hosts, one proposal (a gov `MsgUpdateParams`) that every host
//! votes on, then the block where voting ends — tally over every vote by
//! the weights in force, deposit refund, the message executed — timed
//! against the empty block just before it (the baseline, same chain, same
//! run). Reported: the tally block ÷ the empty block at 10 and at 1 000
//! voters, and the 1 000-voter tally block ÷ the 10-voter one (linear
//! would be 100). Medians of several chains; the wall clock of FinalizeBlock
//! + Commit, as `BlockDriver::deliver` runs them.

// A benchmark is not consensus code: it reads the wall clock and prints rates.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmos_sdk_proto::cosmos::gov::v1::{MsgSubmitProposal, MsgVote};
use cosmos_sdk_proto::Any;
use kiln_framework::params::{gov_authority, MsgUpdateParams};
use kiln_framework::{Coin, BASE_DENOM};
use kiln_testkit::{any_of, sign_tx, BlockDriver, TestKey};
use prost::Message;

struct Timed {
    empty: Duration,
    tally: Duration,
}

fn one_chain(n: usize, run: usize) -> Timed {
    let hosts: Vec<TestKey> = (0..n)
        .map(|i| TestKey::from_label(&format!("bench-gov-{run}-{i}")))
        .collect();
    let mut g = kiln_genesis::AppGenesis::with_devnet_params();
    g.sprint.params.max_hosts_per_epoch = g.sprint.params.max_hosts_per_epoch.max(n as u32);
    for (i, h) in hosts.iter().enumerate() {
        g.add_balance(h.address, vec![Coin::new(BASE_DENOM, 100_000_000)]);
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        g.hosts.hosts.push(kiln_hosts::GenesisHost {
            owner: h.address,
            worker_url: format!("http://h{i}.bench:8080"),
            consensus_pubkey: hex::encode(key),
            models: vec![],
            hardware: String::new(),
            weight: 10 + (i as u64 % 7),
        });
    }
    // Long enough for every vote to land before it ends.
    g.gov.params.voting_period_blocks = 20 + (n as u64 / 200);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = BlockDriver::open(
        dir.path(),
        "kiln-bench-gov",
        &serde_json::to_value(&g).unwrap(),
        0,
    )
    .expect("chain");
    d.deliver(vec![]).expect("block");
    let mut params = kiln_gov::GovParams::devnet();
    params.max_title_len = 200;
    let update = Any {
        type_url: "/kiln.gov.v1.MsgUpdateParams".into(),
        value: MsgUpdateParams {
            authority: gov_authority().to_bech32(),
            params: serde_json::to_string(&params).unwrap(),
        }
        .encode_to_vec(),
    };
    let proposer = &hosts[0];
    let submit = any_of(&MsgSubmitProposal {
        messages: vec![update],
        initial_deposit: vec![ProtoCoin {
            denom: BASE_DENOM.into(),
            amount: "10000000".into(),
        }],
        proposer: proposer.address.to_bech32(),
        metadata: String::new(),
        title: "bench".into(),
        summary: String::new(),
        expedited: false,
    });
    let mut o = d.opts_for(proposer);
    o.gas_limit = 1_000_000;
    o.fee = 25_000;
    let r = d
        .deliver(vec![sign_tx(proposer, vec![submit], &o)])
        .expect("submit");
    assert_eq!(
        r.response.tx_results[0].code, 0,
        "{}",
        r.response.tx_results[0].log
    );
    let start = d.height;
    let votes: Vec<Vec<u8>> = hosts
        .iter()
        .map(|h| {
            let vote = any_of(&MsgVote {
                proposal_id: 1,
                voter: h.address.to_bech32(),
                option: 1 + (h.address.as_bytes()[0] % 4) as i32,
                metadata: String::new(),
            });
            sign_tx(h, vec![vote], &d.opts_for(h))
        })
        .collect();
    for chunk in votes.chunks(200) {
        let r = d.deliver(chunk.to_vec()).expect("votes");
        assert!(r.response.tx_results.iter().all(|t| t.code == 0));
    }
    let end = start + g.gov.params.voting_period_blocks;
    assert!(d.height < end - 1, "the votes took the whole voting period");
    while d.height < end - 2 {
        d.deliver(vec![]).expect("block");
    }
    let t0 = Instant::now();
    d.deliver(vec![]).expect("empty block");
    let empty = t0.elapsed();
    let t1 = Instant::now();
    let r = d.deliver(vec![]).expect("tally block");
    let tally = t1.elapsed();
    assert_eq!(d.height, end);
    assert!(
        r.response
            .events
            .iter()
            .any(|e| e.r#type.starts_with("kiln.gov.v1.EventProposal")),
        "the proposal did not end at {end}"
    );
    Timed { empty, tally }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn measure(n: usize, runs: usize) -> Timed {
    let all: Vec<Timed> = (0..runs).map(|r| one_chain(n, r)).collect();
    Timed {
        empty: median(all.iter().map(|t| t.empty).collect()),
        tally: median(all.iter().map(|t| t.tally).collect()),
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn main() {
    let small = measure(10, 9);
    let large = measure(1_000, 3);
    for (n, t) in [(10, &small), (1000, &large)] {
        println!(
            "{n} voters: tally block {:?}, empty block before it {:?}, ratio {:.2}",
            t.tally,
            t.empty,
            ratio(t.tally, t.empty)
        );
    }
    println!(
        "RESULT gov_tally_block_over_empty_block_1000_voters={:.2} gov_tally_block_over_empty_block_10_voters={:.2} gov_tally_1000_over_10={:.1} (linear 100)",
        ratio(large.tally, large.empty),
        ratio(small.tally, small.empty),
        ratio(large.tally, small.tally)
    );
}
