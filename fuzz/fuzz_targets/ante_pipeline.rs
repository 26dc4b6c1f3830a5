//! Arbitrary bytes as a transaction → CheckTx and FinalizeBlock on a small
//! funded chain never panic, agree with each other, and a failing tx changes
//! no balance beyond paying its fee (see `kiln_fuzz::Harness::run`).
//!
//! `KILN_FUZZ_WRITE_SEEDS=<dir>` writes a few valid signed txs into `<dir>`
//! on start-up (how `fuzz/seeds/{tx_decode,ante_pipeline}` were made).
#![no_main]

use kiln_fuzz::Harness;
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        let harness = Harness::get();
        if let Ok(dir) = std::env::var("KILN_FUZZ_WRITE_SEEDS") {
            std::fs::create_dir_all(&dir).expect("seed dir");
            for (i, tx) in harness.seed_txs().iter().enumerate() {
                assert_eq!(harness.run(tx), 0, "seed {i} must be a valid tx");
                std::fs::write(format!("{dir}/valid-{i}.tx"), tx).expect("write seed");
            }
        }
    },
    |data: &[u8]| {
        Harness::get().run(data);
    }
);
