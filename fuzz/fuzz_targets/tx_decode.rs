//! Arbitrary bytes → `decode_tx` never panics; whatever decodes is canonical:
//! re-encoding the TxRaw (and its body and auth info) gives the same bytes.
#![no_main]

use kiln_app::tx::{decode_tx, tx_hash};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(tx) = decode_tx(data) else { return };
    assert_eq!(tx.raw.encode_to_vec(), data, "decoded TxRaw does not re-encode to the input");
    assert_eq!(tx.body.encode_to_vec(), tx.raw.body_bytes);
    assert_eq!(tx.auth_info.encode_to_vec(), tx.raw.auth_info_bytes);
    assert_eq!(tx.size, data.len());
    assert_eq!(tx.hash, tx_hash(data));
    assert!(!tx.msgs.is_empty());
    // Everything the ante derives from a decoded tx is total.
    let _ = tx.signers();
    let _ = tx.gas_limit();
    for msg in &tx.msgs {
        let _ = msg.signer();
        let _ = msg.type_url();
    }
});
