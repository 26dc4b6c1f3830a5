//! Host registry messages (`/kiln.host.v1.MsgRegisterHost`, `/MsgUpdateHost`)
//! and their inputs: the ed25519 consensus key pair (CometBFT's
//! `priv_validator_key.json`, which proves possession of the key, see
//! [`kiln_hosts::pop`]), model lists and worker URLs.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use cosmos_sdk_proto::Any;
use kiln_hosts::msgs::{MsgRegisterHost, MsgUpdateHost, MAX_MODELS, MAX_TEXT_LEN, MAX_URL_LEN};
use prost::{Message, Name};
use serde_json::Value;

/// Length of an ed25519 public key.
pub const ED25519_PUBKEY_LEN: usize = 32;

pub fn msg_register_host_url() -> String {
    MsgRegisterHost::type_url()
}

pub fn msg_update_host_url() -> String {
    MsgUpdateHost::type_url()
}

/// Parses a consensus public key given as 64 hex characters or as base64
/// (the form of `pub_key.value` in `priv_validator_key.json`).
pub fn parse_consensus_pubkey(text: &str) -> Result<Vec<u8>> {
    let t = text.trim();
    if t.is_empty() {
        bail!("the consensus public key is empty");
    }
    let hex_candidate = t.strip_prefix("0x").unwrap_or(t);
    let bytes = if hex_candidate.len() == 2 * ED25519_PUBKEY_LEN
        && hex_candidate.chars().all(|c| c.is_ascii_hexdigit())
    {
        hex::decode(hex_candidate).map_err(|e| anyhow!("invalid hex consensus key: {e}"))?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(t)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(t))
            .map_err(|e| {
                anyhow!("consensus public key '{t}' is neither base64 nor 64 hex characters ({e})")
            })?
    };
    check_len(&bytes)?;
    Ok(bytes)
}

fn check_len(bytes: &[u8]) -> Result<()> {
    if bytes.len() != ED25519_PUBKEY_LEN {
        bail!(
            "a consensus public key is a {ED25519_PUBKEY_LEN}-byte ed25519 key, got {} bytes",
            bytes.len()
        );
    }
    Ok(())
}

/// Reads the public key from a CometBFT `priv_validator_key.json`
/// (`{"pub_key": {"type": "tendermint/PubKeyEd25519", "value": "<base64>"}}`).
pub fn read_consensus_key_file(path: &Path) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read consensus key file {}", path.display()))?;
    consensus_pubkey_from_key_json(&text).with_context(|| format!("in {}", path.display()))
}

pub fn consensus_pubkey_from_key_json(text: &str) -> Result<Vec<u8>> {
    let v: Value = serde_json::from_str(text).context("not valid JSON")?;
    let pk = v
        .get("pub_key")
        .ok_or_else(|| anyhow!("no \"pub_key\" (expected a CometBFT priv_validator_key.json)"))?;
    if let Some(ty) = pk.get("type").and_then(|t| t.as_str()) {
        if ty != "tendermint/PubKeyEd25519" {
            bail!(
                "pub_key.type is '{ty}'; Kiln hosts need an ed25519 key (tendermint/PubKeyEd25519)"
            );
        }
    }
    let value = pk
        .get("value")
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("no string \"pub_key.value\""))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| anyhow!("pub_key.value is not base64: {e}"))?;
    check_len(&bytes)?;
    Ok(bytes)
}

/// An ed25519 consensus key pair, to prove possession of the key when
/// registering a host or rotating its key.
pub struct ConsensusKeyPair {
    signing: ed25519_dalek::SigningKey,
}

impl ConsensusKeyPair {
    /// The key pair of a 32-byte ed25519 seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        ConsensusKeyPair {
            signing: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// Reads a CometBFT `priv_validator_key.json`
    /// (`priv_key.value` = base64 of seed ‖ public key). The public key is
    /// derived from the private key and must equal `pub_key.value`, so the
    /// key registered is always the one that signs.
    pub fn from_key_json(text: &str) -> Result<Self> {
        let declared = consensus_pubkey_from_key_json(text)?;
        let v: Value = serde_json::from_str(text).context("not valid JSON")?;
        let sk = v.get("priv_key").ok_or_else(|| {
            anyhow!("no \"priv_key\" (expected a CometBFT priv_validator_key.json)")
        })?;
        if let Some(ty) = sk.get("type").and_then(|t| t.as_str()) {
            if ty != "tendermint/PrivKeyEd25519" {
                bail!("priv_key.type is '{ty}'; Kiln hosts need an ed25519 key (tendermint/PrivKeyEd25519)");
            }
        }
        let value = sk
            .get("value")
            .and_then(|v| v.as_str())
            .ok_or_else(|| anyhow!("no string \"priv_key.value\""))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|e| anyhow!("priv_key.value is not base64: {e}"))?;
        let seed: [u8; 32] = match bytes.len() {
            32 | 64 => bytes[..32]
                .try_into()
                .map_err(|_| anyhow!("priv_key.value"))?,
            n => bail!("priv_key.value is {n} bytes, expected 64 (seed and public key)"),
        };
        let pair = Self::from_seed(seed);
        if pair.public().as_slice() != declared.as_slice() {
            bail!("pub_key.value does not match the public key of priv_key.value");
        }
        if bytes.len() == 64 && bytes[32..] != declared[..] {
            bail!("priv_key.value ends with a public key that is not pub_key.value");
        }
        Ok(pair)
    }

    /// [`Self::from_key_json`] of a file.
    pub fn read_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read consensus key file {}", path.display()))?;
        Self::from_key_json(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The 32-byte ed25519 public key.
    pub fn public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The proof of possession for `owner` (bech32) on `chain_id`: the
    /// key's signature over [`kiln_hosts::pop::message`].
    pub fn prove_possession(&self, chain_id: &str, owner: &str) -> Result<Vec<u8>> {
        use ed25519_dalek::Signer as _;
        let owner: kiln_framework::Address = owner
            .parse()
            .map_err(|e| anyhow!("owner {owner} is not a kiln address: {e:?}"))?;
        Ok(self
            .signing
            .sign(&kiln_hosts::pop::message(chain_id, &owner))
            .to_bytes()
            .to_vec())
    }
}

/// `--models m1,m2` → `["m1", "m2"]` (blank entries dropped; "" = none).
pub fn parse_models(text: &str) -> Result<Vec<String>> {
    let models: Vec<String> = text
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    if models.len() > MAX_MODELS {
        bail!("at most {MAX_MODELS} models, got {}", models.len());
    }
    if let Some(m) = models.iter().find(|m| m.len() > MAX_TEXT_LEN) {
        bail!("model id '{m}' is longer than {MAX_TEXT_LEN} bytes");
    }
    Ok(models)
}

fn check_proof_len(proof: &[u8]) -> Result<()> {
    if proof.len() != kiln_hosts::pop::PROOF_LEN {
        bail!("the consensus key needs a proof of possession (a 64-byte signature by the key; read the key with --consensus-key-file)");
    }
    Ok(())
}

/// The chain's checks on a worker URL and hardware summary, done before signing.
pub fn check_worker_url(url: &str) -> Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--worker-url must start with http:// or https://, got '{url}'");
    }
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or("");
    if rest.is_empty() || url.len() > MAX_URL_LEN {
        bail!("--worker-url must be an http(s) URL with a host, of at most {MAX_URL_LEN} bytes");
    }
    Ok(())
}

pub fn check_hardware(hw: &str) -> Result<()> {
    if hw.len() > MAX_TEXT_LEN {
        bail!("--hardware is longer than {MAX_TEXT_LEN} bytes");
    }
    Ok(())
}

/// The fields of a register/update message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFields {
    pub worker_url: String,
    /// Empty = unchanged (update only).
    pub consensus_pubkey: Vec<u8>,
    /// Proof of possession of `consensus_pubkey` ([`ConsensusKeyPair::prove_possession`]).
    pub consensus_key_proof: Vec<u8>,
    pub models: Vec<String>,
    pub hardware: String,
}

pub fn msg_register_host(owner: &str, f: &HostFields) -> Result<Any> {
    check_worker_url(&f.worker_url)?;
    check_len(&f.consensus_pubkey)?;
    check_proof_len(&f.consensus_key_proof)?;
    check_hardware(&f.hardware)?;
    let m = MsgRegisterHost {
        owner: owner.into(),
        worker_url: f.worker_url.clone(),
        consensus_pubkey: f.consensus_pubkey.clone(),
        models: f.models.clone(),
        hardware: f.hardware.clone(),
        consensus_key_proof: f.consensus_key_proof.clone(),
    };
    Ok(Any {
        type_url: MsgRegisterHost::type_url(),
        value: m.encode_to_vec(),
    })
}

pub fn msg_update_host(owner: &str, f: &HostFields) -> Result<Any> {
    check_worker_url(&f.worker_url)?;
    if !f.consensus_pubkey.is_empty() {
        check_len(&f.consensus_pubkey)?;
        check_proof_len(&f.consensus_key_proof)?;
    }
    check_hardware(&f.hardware)?;
    let m = MsgUpdateHost {
        owner: owner.into(),
        worker_url: f.worker_url.clone(),
        consensus_pubkey: f.consensus_pubkey.clone(),
        models: f.models.clone(),
        hardware: f.hardware.clone(),
        consensus_key_proof: f.consensus_key_proof.clone(),
    };
    Ok(Any {
        type_url: MsgUpdateHost::type_url(),
        value: m.encode_to_vec(),
    })
}

/// `kiln tx host mlnode add`: declares an ML node (its key's ML-ops grant
/// goes in the same transaction, built by the caller).
pub fn msg_add_ml_node(
    owner: &str,
    id: &str,
    worker_url: &str,
    models: Vec<String>,
    hardware: &str,
    ml_key: &str,
) -> Any {
    use kiln_hosts::mlnodes::MsgAddMlNode;
    Any {
        type_url: MsgAddMlNode::type_url(),
        value: MsgAddMlNode {
            owner: owner.into(),
            id: id.into(),
            worker_url: worker_url.into(),
            models,
            hardware: hardware.into(),
            ml_key: ml_key.into(),
        }
        .encode_to_vec(),
    }
}

pub fn msg_update_ml_node(
    owner: &str,
    id: &str,
    worker_url: &str,
    models: Vec<String>,
    hardware: &str,
) -> Any {
    use kiln_hosts::mlnodes::MsgUpdateMlNode;
    Any {
        type_url: MsgUpdateMlNode::type_url(),
        value: MsgUpdateMlNode {
            owner: owner.into(),
            id: id.into(),
            worker_url: worker_url.into(),
            models,
            hardware: hardware.into(),
        }
        .encode_to_vec(),
    }
}

pub fn msg_set_ml_node_enabled(owner: &str, id: &str, enabled: bool) -> Any {
    use kiln_hosts::mlnodes::MsgSetMlNodeEnabled;
    Any {
        type_url: MsgSetMlNodeEnabled::type_url(),
        value: MsgSetMlNodeEnabled {
            owner: owner.into(),
            id: id.into(),
            enabled,
        }
        .encode_to_vec(),
    }
}

pub fn msg_remove_ml_node(owner: &str, id: &str) -> Any {
    use kiln_hosts::mlnodes::MsgRemoveMlNode;
    Any {
        type_url: MsgRemoveMlNode::type_url(),
        value: MsgRemoveMlNode {
            owner: owner.into(),
            id: id.into(),
        }
        .encode_to_vec(),
    }
}

/// ML node `id` of `host` as the host query shows it.
pub fn ml_node(rpc: &crate::rpc::RpcClient, host: &str, id: &str) -> Result<Value> {
    let h = crate::query::host(rpc, host, 0)?
        .ok_or_else(|| anyhow!("{host} is not a registered host"))?;
    h["ml_nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == id).cloned())
        .ok_or_else(|| anyhow!("host {host} has no ML node {id:?} (kiln query host {host})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consensus_keys() {
        let key = [7u8; 32];
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        assert_eq!(parse_consensus_pubkey(&b64).unwrap(), key);
        assert_eq!(parse_consensus_pubkey(&hex::encode(key)).unwrap(), key);
        assert_eq!(
            parse_consensus_pubkey(&hex::encode_upper(key)).unwrap(),
            key
        );
        let e = parse_consensus_pubkey("not base64!")
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither base64 nor 64 hex"), "{e}");
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 31]);
        let e = parse_consensus_pubkey(&short).unwrap_err().to_string();
        assert!(e.contains("32-byte ed25519 key, got 31 bytes"), "{e}");

        let file = format!(
            r#"{{"address":"AB","pub_key":{{"type":"tendermint/PubKeyEd25519","value":"{b64}"}},"priv_key":{{"type":"tendermint/PrivKeyEd25519","value":"x"}}}}"#
        );
        assert_eq!(consensus_pubkey_from_key_json(&file).unwrap(), key);
        let secp = r#"{"pub_key":{"type":"tendermint/PubKeySecp256k1","value":"AA=="}}"#;
        assert!(consensus_pubkey_from_key_json(secp)
            .unwrap_err()
            .to_string()
            .contains("ed25519"));
        assert!(consensus_pubkey_from_key_json("{}").is_err());
    }

    #[test]
    fn a_priv_validator_key_json_gives_a_proof_the_chain_accepts() {
        let pair = ConsensusKeyPair::from_seed([5; 32]);
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut sk = [5u8; 32].to_vec();
        sk.extend_from_slice(&pair.public());
        let file = serde_json::json!({
            "address": "00",
            "pub_key": {"type": "tendermint/PubKeyEd25519", "value": b64.encode(pair.public())},
            "priv_key": {"type": "tendermint/PrivKeyEd25519", "value": b64.encode(&sk)},
        })
        .to_string();
        let read = ConsensusKeyPair::from_key_json(&file).unwrap();
        assert_eq!(read.public(), pair.public());
        let owner = kiln_framework::Address([9; 20]);
        let proof = read.prove_possession("kiln-x", &owner.to_string()).unwrap();
        kiln_hosts::pop::verify(&read.public(), &proof, "kiln-x", &owner).unwrap();
        // A file whose pub_key is not the private key's is refused.
        let wrong = serde_json::json!({
            "pub_key": {"type": "tendermint/PubKeyEd25519", "value": b64.encode([7u8; 32])},
            "priv_key": {"type": "tendermint/PrivKeyEd25519", "value": b64.encode(&sk)},
        })
        .to_string();
        let e = ConsensusKeyPair::from_key_json(&wrong)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("does not match"), "{e}");
    }

    #[test]
    fn models_and_messages() {
        assert_eq!(parse_models("a, b,,c").unwrap(), ["a", "b", "c"]);
        assert!(parse_models("").unwrap().is_empty());
        let f = HostFields {
            worker_url: "http://w:8080".into(),
            consensus_pubkey: vec![1; 32],
            consensus_key_proof: vec![2; 64],
            models: vec!["m".into()],
            hardware: "1x GPU".into(),
        };
        let any = msg_register_host("kiln1x", &f).unwrap();
        assert_eq!(any.type_url, "/kiln.host.v1.MsgRegisterHost");
        let m = MsgRegisterHost::decode(any.value.as_slice()).unwrap();
        assert_eq!(m.owner, "kiln1x");
        assert_eq!(m.consensus_pubkey, vec![1; 32]);
        assert_eq!(
            kiln_messages::describe_any(&any)["consensus_pubkey"],
            hex::encode([1u8; 32])
        );
        let upd = msg_update_host(
            "kiln1x",
            &HostFields {
                consensus_pubkey: vec![],
                ..f.clone()
            },
        )
        .unwrap();
        assert_eq!(upd.type_url, "/kiln.host.v1.MsgUpdateHost");
        assert!(msg_register_host(
            "kiln1x",
            &HostFields {
                worker_url: "ftp://x".into(),
                ..f.clone()
            }
        )
        .is_err());
        assert!(msg_register_host(
            "kiln1x",
            &HostFields {
                consensus_pubkey: vec![],
                ..f
            }
        )
        .is_err());
    }
}
