//! CometBFT hashing and signing rules (headers, part sets, commits, results,
//! consensus params, validator sets).

use prost::Message;
use sha2::{Digest, Sha256};
use tendermint::crypto::default::Sha256 as TmSha256;
use tendermint::merkle::simple_hash_from_byte_vectors;
use tendermint::{block, consensus, validator, vote, Block, Hash, Time};
use tendermint_proto::v0_38::abci::ExecTxResult;
use tendermint_proto::v0_38::types::{Block as RawBlock, CommitSig as RawCommitSig, HashedParams};

use crate::home::PrivValidatorKey;

/// Block part size (CometBFT `BlockPartSizeBytes`).
pub const BLOCK_PART_SIZE: usize = 65536;

fn sha(h: [u8; 32]) -> Hash {
    Hash::Sha256(h)
}

/// Merkle root over byte slices (CometBFT `merkle.HashFromByteSlices`).
pub fn merkle(items: &[impl AsRef<[u8]>]) -> Hash {
    sha(simple_hash_from_byte_vectors::<TmSha256>(items))
}

/// `Data.Hash()`: merkle root of the txs' SHA-256 hashes.
pub fn txs_hash(txs: &[Vec<u8>]) -> Hash {
    let hashes: Vec<[u8; 32]> = txs.iter().map(|t| crate::tx_hash(t)).collect();
    merkle(&hashes)
}

/// Hash of an empty merkle tree (SHA-256 of nothing).
pub fn empty_hash() -> Hash {
    sha(Sha256::digest([]).into())
}

/// The empty LastCommit CometBFT puts in the initial block (height 0, no
/// signatures); it is part of the block's proto encoding, hence its part set.
pub fn empty_commit() -> block::Commit {
    block::Commit {
        height: block::Height::try_from(0u64).expect("height 0"),
        round: block::Round::default(),
        block_id: block::Id::default(),
        signatures: vec![],
    }
}

/// `Commit.Hash()`: merkle root of the proto-encoded CommitSigs.
pub fn commit_hash(commit: Option<&block::Commit>) -> Hash {
    let sigs: Vec<Vec<u8>> = match commit {
        Some(c) => c
            .signatures
            .iter()
            .map(|s| RawCommitSig::from(s.clone()).encode_to_vec())
            .collect(),
        None => vec![],
    };
    merkle(&sigs)
}

/// `ABCIResults.Hash()`: merkle root over the deterministic fields of each tx result.
pub fn results_hash(results: &[ExecTxResult]) -> Vec<u8> {
    let items: Vec<Vec<u8>> = results
        .iter()
        .map(|r| {
            ExecTxResult {
                code: r.code,
                data: r.data.clone(),
                gas_wanted: r.gas_wanted,
                gas_used: r.gas_used,
                ..Default::default()
            }
            .encode_to_vec()
        })
        .collect();
    merkle(&items).as_bytes().to_vec()
}

/// `ConsensusParams.Hash()`: SHA-256 of HashedParams{block max bytes, max gas}.
pub fn params_hash(p: &consensus::Params) -> Hash {
    let hp = HashedParams {
        block_max_bytes: p.block.max_bytes as i64,
        block_max_gas: p.block.max_gas,
    };
    sha(Sha256::digest(hp.encode_to_vec()).into())
}

/// Validator set hash (sorted as CometBFT sorts).
pub fn validators_hash(vals: &[validator::Info]) -> Hash {
    validator::Set::without_proposer(vals.to_vec()).hash()
}

/// Sort a validator list as CometBFT does (power desc, then address).
pub fn sorted(vals: &[validator::Info]) -> Vec<validator::Info> {
    validator::Set::without_proposer(vals.to_vec())
        .validators()
        .clone()
}

/// Block ID: header hash + part set header over the proto-encoded block.
/// Also returns the encoded size.
pub fn block_id(block: &Block) -> (block::Id, usize) {
    let bytes = encode_block(block);
    let chunks: Vec<&[u8]> = bytes.chunks(BLOCK_PART_SIZE).collect();
    let total = chunks.len().max(1) as u32;
    let part_hash = merkle(&chunks);
    let psh = block::parts::Header::new(total, part_hash).expect("valid part set header");
    (
        block::Id {
            hash: block.header.hash(),
            part_set_header: psh,
        },
        bytes.len(),
    )
}

/// Proto-encode a block exactly as CometBFT (gogoproto) does: the
/// non-nullable `header.last_block_id` and `last_commit` of the initial block
/// are encoded as empty messages rather than omitted.
pub fn encode_block(block: &Block) -> Vec<u8> {
    use tendermint_proto::v0_38::types::{
        BlockId as RawBlockId, Commit as RawCommit, PartSetHeader,
    };
    let empty_id = || RawBlockId {
        hash: Default::default(),
        part_set_header: Some(PartSetHeader::default()),
    };
    let mut raw = RawBlock::from(block.clone());
    if let Some(h) = raw.header.as_mut() {
        if h.last_block_id.is_none() {
            h.last_block_id = Some(empty_id());
        }
    }
    match raw.last_commit.as_mut() {
        None => {
            raw.last_commit = Some(RawCommit {
                block_id: Some(empty_id()),
                ..Default::default()
            })
        }
        Some(c) if c.block_id.is_none() => c.block_id = Some(empty_id()),
        _ => {}
    }
    raw.encode_to_vec()
}

/// Sign a precommit for `block_id` at `height` and return the commit
/// (signatures in `vals` order; validators other than `key` are absent).
pub fn sign_commit(
    key: &PrivValidatorKey,
    chain_id: &tendermint::chain::Id,
    height: block::Height,
    block_id: block::Id,
    timestamp: Time,
    vals: &[validator::Info],
) -> block::Commit {
    use ed25519_dalek::Signer;
    let addr = key.address();
    let vals = sorted(vals);
    let signatures = vals
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if v.address != addr {
                return block::CommitSig::BlockIdFlagAbsent;
            }
            let vote = vote::Vote {
                vote_type: vote::Type::Precommit,
                height,
                round: block::Round::default(),
                block_id: Some(block_id),
                timestamp: Some(timestamp),
                validator_address: addr,
                validator_index: vote::ValidatorIndex::try_from(i as u32).expect("index fits"),
                signature: None,
                extension: vec![],
                extension_signature: None,
            };
            let sign_bytes = vote.into_signable_vec(chain_id.clone());
            let sig = key.signing_key.sign(&sign_bytes);
            block::CommitSig::BlockIdFlagCommit {
                validator_address: addr,
                timestamp,
                signature: tendermint::Signature::new(sig.to_bytes()).expect("64-byte signature"),
            }
        })
        .collect();
    block::Commit {
        height,
        round: block::Round::default(),
        block_id,
        signatures,
    }
}

/// Canonical precommit sign bytes for a commit signature (for verification).
pub fn commit_sign_bytes(
    chain_id: &tendermint::chain::Id,
    commit: &block::Commit,
    index: usize,
) -> Option<Vec<u8>> {
    match commit.signatures.get(index)? {
        block::CommitSig::BlockIdFlagCommit {
            validator_address,
            timestamp,
            ..
        } => {
            let vote = vote::Vote {
                vote_type: vote::Type::Precommit,
                height: commit.height,
                round: commit.round,
                block_id: Some(commit.block_id),
                timestamp: Some(*timestamp),
                validator_address: *validator_address,
                validator_index: vote::ValidatorIndex::try_from(index as u32).ok()?,
                signature: None,
                extension: vec![],
                extension_signature: None,
            };
            Some(vote.into_signable_vec(chain_id.clone()))
        }
        _ => None,
    }
}
