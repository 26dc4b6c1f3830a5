//! The requester's signature over an inference request (SPEC §5 "Request
//! path"), shared by the requester's proxy (`kiln api-proxy`, `kiln infer`),
//! the transfer agent that checks it, and the chain that checks it again in
//! `MsgStartInference`.
//!
//! The signed bytes ([`RequestHeader::sign_bytes`]) bind the chain, the
//! transfer agent the request was sent to, the time it was signed, the
//! SHA-256 of the exact HTTP body, and — so that the chain itself can check
//! what it escrows for — the model and `max_tokens` the body names. The
//! signature is secp256k1 ECDSA over SHA-256 of those bytes (the same key
//! and scheme as the account's transactions), 64 bytes `r‖s`, low-S only.
//!
//! A request's id is `SHA256(signature)`: one signature, one inference, so a
//! reused signature is a reused id and is refused.

use k256::ecdsa::signature::{Signer, Verifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use kiln_framework::Address;
use sha2::{Digest, Sha256};

/// Domain separation: these bytes can never be a transaction's sign doc.
pub const DOMAIN: &[u8] = b"kiln/inference-request/v1";

/// How old (or how far in the future) a request's timestamp may be, in
/// seconds, against the block time (chain) or the clock (transfer agent).
pub const MAX_REQUEST_AGE_SECONDS: i64 = 60;

/// HTTP headers a signed request carries.
pub const HEADER_PUBKEY: &str = "x-kiln-requester-pubkey";
pub const HEADER_TIMESTAMP: &str = "x-kiln-timestamp";
pub const HEADER_SIGNATURE: &str = "x-kiln-signature";
/// Headers on every paid answer: the inference id and who executed it.
pub const HEADER_INFERENCE_ID: &str = "x-kiln-inference-id";
pub const HEADER_EXECUTOR: &str = "x-kiln-executor";

/// What a requester signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub chain_id: String,
    /// The host whose worker received the request.
    pub transfer_agent: Address,
    /// Unix seconds when the requester signed.
    pub timestamp: i64,
    /// SHA-256 of the HTTP body exactly as sent.
    pub body_sha256: [u8; 32],
    pub model: String,
    pub max_tokens: u64,
}

impl RequestHeader {
    /// `DOMAIN ‖ len‖chain_id ‖ transfer agent (20) ‖ timestamp (i64 BE) ‖
    /// body hash (32) ‖ len‖model ‖ max_tokens (u64 BE)`, lengths as u32 BE.
    pub fn sign_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DOMAIN.len() + 100 + self.chain_id.len());
        out.extend_from_slice(DOMAIN);
        push_str(&mut out, &self.chain_id);
        out.extend_from_slice(self.transfer_agent.as_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.body_sha256);
        push_str(&mut out, &self.model);
        out.extend_from_slice(&self.max_tokens.to_be_bytes());
        out
    }

    /// Signs with the requester's account key: 64 bytes, low-S.
    pub fn sign(&self, key: &SigningKey) -> [u8; 64] {
        let signature: Signature = key.sign(&self.sign_bytes());
        let signature = signature.normalize_s().unwrap_or(signature);
        let mut out = [0u8; 64];
        out.copy_from_slice(&signature.to_bytes());
        out
    }

    /// Checks `signature` by the key `pubkey` (compressed SEC1, 33 bytes),
    /// and that the key is `requester`'s. Errors say which part failed.
    pub fn verify(
        &self,
        requester: &Address,
        pubkey: &[u8],
        signature: &[u8],
    ) -> Result<(), String> {
        if pubkey.len() != 33 {
            return Err(format!(
                "the requester's public key must be 33 bytes (compressed secp256k1), got {}",
                pubkey.len()
            ));
        }
        let key = VerifyingKey::from_sec1_bytes(pubkey)
            .map_err(|_| "the requester's public key is not a secp256k1 point".to_string())?;
        if Address::from_pubkey(pubkey) != *requester {
            return Err(format!(
                "the public key is not the key of requester {requester}"
            ));
        }
        if signature.len() != 64 {
            return Err(format!(
                "the request signature must be 64 bytes (r||s), got {}",
                signature.len()
            ));
        }
        let sig = Signature::from_slice(signature)
            .map_err(|_| "the request signature is malformed".to_string())?;
        if sig.normalize_s().is_some() {
            return Err("high-S request signature; only low-S signatures are accepted".into());
        }
        key.verify(&self.sign_bytes(), &sig).map_err(|_| {
            "the request signature does not match (chain id, transfer agent, timestamp, body, model and max_tokens are signed)".to_string()
        })
    }
}

/// Requester signatures this process has verified (a bounded FIFO of
/// `SHA256(pubkey ‖ sign bytes ‖ signature)`). Verification is a pure
/// function of those inputs, so a hit is exactly as good as a re-check: the
/// app verifies a block's starts in parallel before executing it
/// ([`RequestHeader::verify_cached`] from its pre-verification pass), and
/// the handler, running serially, then finds them here. No hash maps.
struct VerifiedRequests {
    seen: std::collections::BTreeSet<[u8; 32]>,
    order: std::collections::VecDeque<[u8; 32]>,
}

const VERIFIED_CAPACITY: usize = 200_000;

static VERIFIED: std::sync::LazyLock<std::sync::Mutex<VerifiedRequests>> =
    std::sync::LazyLock::new(|| {
        std::sync::Mutex::new(VerifiedRequests {
            seen: std::collections::BTreeSet::new(),
            order: std::collections::VecDeque::new(),
        })
    });

impl RequestHeader {
    /// [`RequestHeader::verify`] through the process's cache of verified
    /// requests (only successes are cached).
    pub fn verify_cached(
        &self,
        requester: &Address,
        pubkey: &[u8],
        signature: &[u8],
    ) -> Result<(), String> {
        let mut h = Sha256::new();
        h.update((pubkey.len() as u64).to_le_bytes());
        h.update(pubkey);
        let bytes = self.sign_bytes();
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
        h.update(signature);
        h.update(requester.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        if VERIFIED.lock().is_ok_and(|v| v.seen.contains(&key)) {
            return Ok(());
        }
        self.verify(requester, pubkey, signature)?;
        if let Ok(mut v) = VERIFIED.lock() {
            if v.seen.insert(key) {
                v.order.push_back(key);
                while v.order.len() > VERIFIED_CAPACITY {
                    if let Some(old) = v.order.pop_front() {
                        v.seen.remove(&old);
                    }
                }
            }
        }
        Ok(())
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The inference id of a request: `SHA256(signature)`.
pub fn request_id(signature: &[u8]) -> [u8; 32] {
    Sha256::digest(signature).into()
}

/// Whether `timestamp` is within [`MAX_REQUEST_AGE_SECONDS`] of `now`
/// (either side: a clock a little ahead is tolerated, a replay later is not).
pub fn timestamp_is_fresh(timestamp: i64, now: i64) -> bool {
    now.checked_sub(timestamp)
        .is_some_and(|age| age.abs() <= MAX_REQUEST_AGE_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(label: &str) -> SigningKey {
        SigningKey::from_bytes(&Sha256::digest(label.as_bytes())).unwrap()
    }

    fn header() -> RequestHeader {
        RequestHeader {
            chain_id: "kiln-test".into(),
            transfer_agent: Address([7; 20]),
            timestamp: 1_800_000_000,
            body_sha256: [1; 32],
            model: "smollm2-135m".into(),
            max_tokens: 64,
        }
    }

    #[test]
    fn a_signature_verifies_only_for_its_key_and_its_header() {
        let k = key("requester");
        let pubkey = k.verifying_key().to_encoded_point(true).as_bytes().to_vec();
        let requester = Address::from_pubkey(&pubkey);
        let h = header();
        let sig = h.sign(&k);
        h.verify(&requester, &pubkey, &sig).unwrap();

        let mut changed = h.clone();
        changed.max_tokens = 65;
        assert!(changed.verify(&requester, &pubkey, &sig).is_err());
        let mut changed = h.clone();
        changed.transfer_agent = Address([8; 20]);
        assert!(changed.verify(&requester, &pubkey, &sig).is_err());
        let mut changed = h.clone();
        changed.chain_id = "other".into();
        assert!(changed.verify(&requester, &pubkey, &sig).is_err());

        let other = key("other");
        let other_pub = other
            .verifying_key()
            .to_encoded_point(true)
            .as_bytes()
            .to_vec();
        let e = h.verify(&requester, &other_pub, &sig).unwrap_err();
        assert!(e.contains("not the key of requester"), "{e}");
        assert!(h.verify(&requester, &pubkey, &sig[..63]).is_err());
    }

    #[test]
    fn freshness_is_sixty_seconds_either_side() {
        assert!(timestamp_is_fresh(100, 160));
        assert!(!timestamp_is_fresh(100, 161));
        assert!(timestamp_is_fresh(160, 100));
        assert!(!timestamp_is_fresh(161, 100));
        assert!(!timestamp_is_fresh(i64::MIN, i64::MAX));
    }
}
