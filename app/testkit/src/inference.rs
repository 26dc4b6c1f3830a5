//! Inference settlement helpers for scenario tests and the settlement
//! benchmark: a requester's signed request, the transfer agent's draw (as a
//! worker makes it: the serving set and block hash of the seed height), and
//! the start and finish messages.

use kiln_framework::Address;
use kiln_inference::msgs::{MsgFinishInference, MsgStartInference};
use kiln_inference::request::{request_id, RequestHeader};
use kiln_inference::state::SettlementExt;
use kiln_state::StateRead;
use sha2::{Digest, Sha256};

use crate::TestKey;

/// A request as a requester's proxy signs it.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub header: RequestHeader,
    pub requester: Address,
    pub pubkey: Vec<u8>,
    pub signature: [u8; 64],
}

impl SignedRequest {
    pub fn new(
        requester: &TestKey,
        chain_id: &str,
        transfer_agent: Address,
        model: &str,
        body: &[u8],
        max_tokens: u64,
        timestamp: i64,
    ) -> Self {
        let header = RequestHeader {
            chain_id: chain_id.to_string(),
            transfer_agent,
            timestamp,
            body_sha256: Sha256::digest(body).into(),
            model: model.to_string(),
            max_tokens,
        };
        let signature = header.sign(&requester.signing);
        SignedRequest {
            header,
            requester: requester.address,
            pubkey: requester.pubkey_bytes(),
            signature,
        }
    }

    pub fn id(&self) -> [u8; 32] {
        request_id(&self.signature)
    }

    /// The executor the draw seeded at `seed_height` picks, computed from
    /// `state` (the committed state at or after `seed_height`, before the
    /// next settle) as a transfer agent does.
    pub fn draw<S: StateRead + ?Sized>(&self, state: &S, seed_height: u64) -> Option<Address> {
        let hash = state
            .get_raw(&kiln_inference::keys::block_hash(seed_height))
            .ok()
            .flatten()?;
        let serving = state.serving_set(&self.header.model).ok()?;
        let seed = kiln_inference::draw::draw_seed(&hash, &self.signature);
        kiln_inference::draw::draw_executor(&serving.candidates_at(seed_height), &seed)
    }

    pub fn start_msg(
        &self,
        prompt_tokens: u64,
        executor: Address,
        seed_height: u64,
    ) -> MsgStartInference {
        MsgStartInference {
            transfer_agent: self.header.transfer_agent.to_bech32(),
            id: self.id().to_vec(),
            requester: self.requester.to_bech32(),
            requester_pubkey: self.pubkey.clone(),
            model: self.header.model.clone(),
            prompt_hash: self.header.body_sha256.to_vec(),
            prompt_tokens,
            max_tokens: self.header.max_tokens,
            executor: executor.to_bech32(),
            seed_height,
            request_timestamp: self.header.timestamp,
            request_signature: self.signature.to_vec(),
        }
    }
}

/// The executor's finish for `id` with `completion_tokens` and hashes of `response`.
pub fn finish_msg(
    executor: Address,
    id: [u8; 32],
    completion_tokens: u64,
    response: &[u8],
) -> MsgFinishInference {
    MsgFinishInference {
        executor: executor.to_bech32(),
        id: id.to_vec(),
        response_hash: Sha256::digest(response).to_vec(),
        completion_tokens,
        top_logprobs_hash: Sha256::digest([response, b"/logprobs"].concat()).to_vec(),
    }
}
