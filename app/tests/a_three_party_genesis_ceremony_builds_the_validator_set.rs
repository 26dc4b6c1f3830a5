//! The genesis ceremony with the real `kilnd` binary: three operators each
//! `kilnd init` a home and sign a gentx with their account key (test
//! keyring) and consensus key; the coordinator collects them into one
//! genesis, which validates, and from which InitChain derives exactly the
//! three consensus keys at their weights. A gentx edited after signing, or
//! made for another chain, is refused with a clear reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_testkit::BlockDriver;

const CHAIN: &str = "kiln-ceremony";

fn kilnd(args: &[&str], home: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kilnd"))
        .args(args)
        .arg("--home")
        .arg(home)
        .output()
        .unwrap()
}

fn ok(args: &[&str], home: &Path) -> String {
    let out = kilnd(args, home);
    assert!(out.status.success(), "kilnd {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn consensus_key_hex(home: &Path) -> String {
    hex::encode(
        kiln_node::home::load_priv_validator_key(home)
            .unwrap()
            .verifying_key()
            .as_bytes(),
    )
}

#[test]
fn a_three_party_genesis_ceremony_builds_the_validator_set() {
    let dir = tempfile::tempdir().unwrap();
    let homes: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("op{i}"))).collect();
    let mut gentxs = Vec::new();
    for (i, home) in homes.iter().enumerate() {
        ok(
            &["init", "--chain-id", CHAIN, "--moniker", &format!("op{i}")],
            home,
        );
        let mnemonic = kiln_client::keyring::generate_mnemonic();
        kiln_client::keyring::write_test_key(home, "op", &mnemonic).unwrap();
        let weight = (100 * (i + 1)).to_string();
        let url = format!("http://127.0.0.1:{}", 8090 + i);
        let out = ok(
            &[
                "genesis",
                "gentx",
                "--from",
                "op",
                "--weight",
                &weight,
                "--worker-url",
                &url,
                "--keyring-backend",
                "test",
            ],
            home,
        );
        let path = out
            .rsplit(" written to ")
            .next()
            .unwrap()
            .trim()
            .to_string();
        gentxs.push(PathBuf::from(path));
    }
    // The coordinator (op0) gathers everyone's gentx.
    let collect_dir = homes[0].join("config/gentx");
    for g in &gentxs[1..] {
        std::fs::copy(g, collect_dir.join(g.file_name().unwrap())).unwrap();
    }
    // A tampered copy is refused, and nothing is written.
    let before = std::fs::read(homes[0].join("config/genesis.json")).unwrap();
    let tampered_dir = dir.path().join("tampered");
    std::fs::create_dir_all(&tampered_dir).unwrap();
    for g in &gentxs {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(g).unwrap()).unwrap();
        if g == &gentxs[2] {
            v["host"]["weight"] = serde_json::json!(1_000_000);
        }
        std::fs::write(tampered_dir.join(g.file_name().unwrap()), v.to_string()).unwrap();
    }
    let refused = kilnd(
        &[
            "genesis",
            "collect-gentxs",
            "--dir",
            tampered_dir.to_str().unwrap(),
        ],
        &homes[0],
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("edited after signing"), "{err}");
    assert_eq!(
        std::fs::read(homes[0].join("config/genesis.json")).unwrap(),
        before
    );

    let collected = ok(&["genesis", "collect-gentxs"], &homes[0]);
    assert!(collected.contains("3 genesis hosts"), "{collected}");
    ok(&["genesis", "validate"], &homes[0]);

    // InitChain derives the validator set from the collected hosts.
    let genesis: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(homes[0].join("config/genesis.json")).unwrap(),
    )
    .unwrap();
    let driver =
        BlockDriver::open(&dir.path().join("app"), CHAIN, &genesis["app_state"], 0).unwrap();
    let expected: std::collections::BTreeMap<Vec<u8>, u64> = homes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            (
                hex::decode(consensus_key_hex(h)).unwrap(),
                100 * (i as u64 + 1),
            )
        })
        .collect();
    assert_eq!(driver.validators, expected);

    // A gentx made for another chain is refused.
    let other = dir.path().join("other");
    ok(&["init", "--chain-id", "another-chain"], &other);
    std::fs::create_dir_all(other.join("config/gentx")).unwrap();
    std::fs::copy(&gentxs[1], other.join("config/gentx/gentx-op1.json")).unwrap();
    let out = kilnd(&["genesis", "collect-gentxs"], &other);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("made for chain"),
        "{out:?}"
    );
}
