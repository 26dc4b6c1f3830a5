//! Structured variant of `ante_pipeline`: the input describes a signed tx
//! field by field (`kiln_fuzz::TxSpec`: wrong sequence / account number /
//! chain id / key / sign mode, high-S or corrupted signatures, odd fees,
//! memos, timeouts, authz messages, bit flips of the final bytes), so the
//! fuzzer reaches deep into the ante and the handlers instead of stopping at
//! the decoder. Same properties as `ante_pipeline`, plus: a spec with every
//! knob neutral is a valid send and must succeed.
#![no_main]

use kiln_fuzz::{Harness, TxSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|spec: TxSpec| {
    let harness = Harness::get();
    let tx = harness.build(&spec);
    let code = harness.run(&tx);
    if harness.must_succeed(&spec) {
        assert_eq!(code, 0, "a valid send failed: {spec:?}");
    }
});
