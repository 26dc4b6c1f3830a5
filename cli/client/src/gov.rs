//! Governance for the CLI: the Cosmos SDK proposal file (`kiln tx gov
//! draft` writes one, `kiln tx gov submit-proposal` reads one), the deposit
//! and vote messages, and the governance queries (`kiln query gov …`,
//! `kiln query params MODULE`).
//!
//! A proposal file is the Cosmos SDK's:
//!
//! ```json
//! {"messages": [{"@type": "/kiln.staking.v1.MsgUpdateParams", "authority": "kiln1…", "params": {…}}],
//!  "metadata": "", "deposit": "10000000ukiln", "title": "…", "summary": "…"}
//! ```
//!
//! Each message is written in its JSON form (fields by their proto names);
//! [`parse_proposal`] turns it into the protobuf `Any` and then runs the
//! chain's own check of a proposal's messages
//! ([`kiln_messages::check_proposal_messages`]), so a proposal that could
//! never execute is refused before anything is signed.

use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};
use cosmos_sdk_proto::cosmos::distribution::v1beta1::MsgCommunityPoolSpend;
use cosmos_sdk_proto::cosmos::gov::v1::{
    MsgDeposit, MsgSubmitProposal, MsgVote, MsgVoteWeighted, WeightedVoteOption,
};
use cosmos_sdk_proto::cosmos::upgrade::v1beta1::{MsgCancelUpgrade, MsgSoftwareUpgrade, Plan};
use cosmos_sdk_proto::Any;
use kiln_framework::params::{gov_authority, MsgUpdateParams};
use kiln_framework::MsgKind;
use kiln_gov::option;
use kiln_inference::registry::{MsgRegisterModel, MsgRetireModel, RegisterModel, RetireModel};
use serde_json::{json, Map, Value};

use crate::amount::{parse_coins, Coin, BASE_DENOM};
use crate::msgs::any_of;
use crate::rpc::{json_str, json_u64, RpcClient};
use crate::sign::proto_coins;

/// Vote weights: 18-decimal atomics, `WEIGHT_ONE` a whole vote.
pub use kiln_gov::{format_weight, WEIGHT_ONE};
pub use kiln_gov::{
    PARAMS_PATH, PROPOSALS_PATH, PROPOSAL_PATH, TALLY_PATH, UPGRADE_PATH, VOTES_PATH,
};

pub const MSG_SUBMIT_PROPOSAL_URL: &str = kiln_gov::msgs::SubmitProposal::TYPE_URL;
pub const MSG_DEPOSIT_URL: &str = kiln_gov::msgs::Deposit::TYPE_URL;
pub const MSG_VOTE_URL: &str = kiln_gov::msgs::Vote::TYPE_URL;
pub const MSG_VOTE_WEIGHTED_URL: &str = kiln_gov::msgs::VoteWeighted::TYPE_URL;
pub const MSG_SOFTWARE_UPGRADE_URL: &str = kiln_gov::upgrade::SoftwareUpgrade::TYPE_URL;
pub const MSG_CANCEL_UPGRADE_URL: &str = kiln_gov::upgrade::CancelUpgrade::TYPE_URL;
pub const MSG_REGISTER_MODEL_URL: &str = RegisterModel::TYPE_URL;
pub const MSG_RETIRE_MODEL_URL: &str = RetireModel::TYPE_URL;
pub const MSG_COMMUNITY_POOL_SPEND_URL: &str =
    kiln_rewards::pool_spend::CommunityPoolSpend::TYPE_URL;

/// Path of the app's module params query (`kiln_app::query::MODULE_PARAMS_PATH`;
/// the client does not link the app).
pub const MODULE_PARAMS_PATH: &str = "/kiln.app.v1.Query/Params";

/// The governance authority (`kiln1…`): the signer of every message a
/// proposal carries.
pub fn authority() -> String {
    gov_authority().to_bech32()
}

/// The modules whose params governance changes, as in genesis.json.
pub fn param_modules() -> Vec<&'static str> {
    kiln_messages::UPDATE_PARAMS
        .iter()
        .map(|(m, _)| *m)
        .collect()
}

/// The `MsgUpdateParams` type URL of `module`.
pub fn update_params_url(module: &str) -> Result<&'static str> {
    kiln_messages::UPDATE_PARAMS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, url)| *url)
        .ok_or_else(|| {
            anyhow!(
                "unknown module {module:?}; one of: {}",
                param_modules().join(", ")
            )
        })
}

/// A parsed proposal file.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalFile {
    pub messages: Vec<Any>,
    pub metadata: String,
    pub deposit: Vec<Coin>,
    pub title: String,
    pub summary: String,
}

/// Fields a proposal file may have (`expedited` only as `false`).
const FILE_FIELDS: &[&str] = &[
    "messages",
    "metadata",
    "deposit",
    "title",
    "summary",
    "expedited",
];

fn unknown_fields(obj: &Map<String, Value>, at: &str, allowed: &[&str]) -> Result<()> {
    for k in obj.keys() {
        if k != "@type" && !allowed.contains(&k.as_str()) {
            bail!(
                "{at}unknown field {k:?} (expected {})",
                allowed
                    .iter()
                    .map(|f| format!("\"{f}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}

/// A string field; `None` when absent or null.
fn opt_str(obj: &Map<String, Value>, at: &str, key: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => bail!("{at}field \"{key}\" must be a string, got {other}"),
    }
}

fn req_str(obj: &Map<String, Value>, at: &str, key: &str) -> Result<String> {
    opt_str(obj, at, key)?.ok_or_else(|| anyhow!("{at}missing field \"{key}\""))
}

/// A field holding JSON that the message carries as a string (`params`,
/// `model`): an object (serialized) or a string (as is).
fn json_text(obj: &Map<String, Value>, at: &str, key: &str) -> Result<String> {
    match obj.get(key) {
        None | Some(Value::Null) => bail!("{at}missing field \"{key}\""),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v @ Value::Object(_)) => Ok(v.to_string()),
        Some(other) => {
            bail!("{at}field \"{key}\" must be a JSON object (or its text), got {other}")
        }
    }
}

/// Coins as `[{"denom", "amount"}]` or as text (`10kiln`, `1000ukiln,5uatom`).
fn coins_value(v: &Value, at: &str, key: &str) -> Result<Vec<Coin>> {
    match v {
        Value::Null => Ok(vec![]),
        Value::String(s) if s.trim().is_empty() => Ok(vec![]),
        Value::String(s) => parse_coins(s).map_err(|e| anyhow!("{at}field \"{key}\": {e}")),
        Value::Array(list) => {
            let mut coins: Vec<Coin> = Vec::with_capacity(list.len());
            for (i, c) in list.iter().enumerate() {
                let here = format!("{at}field \"{key}\"[{i}]: ");
                let o = c
                    .as_object()
                    .ok_or_else(|| anyhow!("{here}a coin is {{\"denom\": …, \"amount\": …}}"))?;
                unknown_fields(o, &here, &["denom", "amount"])?;
                let denom = req_str(o, &here, "denom")?;
                if !crate::amount::validate_denom(&denom) {
                    bail!("{here}invalid denom {denom:?}");
                }
                let amount = match o.get("amount") {
                    Some(Value::String(s)) => s.trim().parse::<u128>().ok(),
                    Some(Value::Number(n)) => n.as_u64().map(u128::from),
                    _ => None,
                }
                .filter(|a| *a > 0)
                .ok_or_else(|| {
                    anyhow!("{here}\"amount\" must be a positive integer (in {denom}), e.g. \"1000000\"")
                })?;
                if coins.iter().any(|c| c.denom == denom) {
                    bail!("{here}denom {denom:?} appears twice");
                }
                coins.push(Coin { denom, amount });
            }
            coins.sort_by(|a, b| a.denom.cmp(&b.denom));
            Ok(coins)
        }
        other => bail!(
            "{at}field \"{key}\" must be a list of coins or a text like \"10kiln\", got {other}"
        ),
    }
}

fn req_coins(obj: &Map<String, Value>, at: &str, key: &str) -> Result<Vec<Coin>> {
    let v = obj
        .get(key)
        .ok_or_else(|| anyhow!("{at}missing field \"{key}\""))?;
    let coins = coins_value(v, at, key)?;
    if coins.is_empty() {
        bail!("{at}field \"{key}\" is empty");
    }
    Ok(coins)
}

fn height_field(obj: &Map<String, Value>, at: &str, key: &str) -> Result<i64> {
    let h = match obj.get(key) {
        None | Some(Value::Null) => bail!("{at}missing field \"{key}\""),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        Some(_) => None,
    };
    h.filter(|h| *h > 0).ok_or_else(|| {
        anyhow!("{at}field \"{key}\" must be a positive block height, e.g. \"1200\"")
    })
}

/// What a proposal may carry (`kiln_messages::is_proposable`).
const PROPOSABLE: &str = "a proposal carries only governance messages: each module's MsgUpdateParams (/kiln.<module>.v1.MsgUpdateParams), /cosmos.upgrade.v1beta1.MsgSoftwareUpgrade, /cosmos.upgrade.v1beta1.MsgCancelUpgrade, /cosmos.distribution.v1beta1.MsgCommunityPoolSpend, /kiln.inference.v1.MsgRegisterModel, /kiln.inference.v1.MsgRetireModel";

/// One proposal message from its JSON form.
fn message_of(v: &Value, i: usize) -> Result<Any> {
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow!("messages[{i}]: a message is a JSON object with an \"@type\""))?;
    let type_url = obj
        .get("@type")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("messages[{i}]: missing field \"@type\""))?;
    let at = format!("messages[{i}] ({type_url}): ");
    let at = at.as_str();
    if let Some((_, url)) = kiln_messages::UPDATE_PARAMS
        .iter()
        .find(|(_, url)| *url == type_url)
    {
        unknown_fields(obj, at, &["authority", "params"])?;
        return Ok(any_of(
            url,
            &MsgUpdateParams {
                authority: req_str(obj, at, "authority")?,
                params: json_text(obj, at, "params")?,
            },
        ));
    }
    match type_url {
        MSG_SOFTWARE_UPGRADE_URL => {
            unknown_fields(obj, at, &["authority", "plan"])?;
            let authority = req_str(obj, at, "authority")?;
            let plan = obj.get("plan").and_then(Value::as_object).ok_or_else(|| {
                anyhow!("{at}missing field \"plan\" ({{\"name\", \"height\", \"info\"}})")
            })?;
            let pat = format!("{at}plan: ");
            unknown_fields(plan, &pat, &["name", "height", "info"])?;
            #[allow(deprecated)] // `time` and `upgraded_client_state` stay unset
            let plan = Plan {
                name: req_str(plan, &pat, "name")?,
                height: height_field(plan, &pat, "height")?,
                info: opt_str(plan, &pat, "info")?.unwrap_or_default(),
                ..Default::default()
            };
            Ok(any_of(
                type_url,
                &MsgSoftwareUpgrade {
                    authority,
                    plan: Some(plan),
                },
            ))
        }
        MSG_CANCEL_UPGRADE_URL => {
            unknown_fields(obj, at, &["authority"])?;
            Ok(any_of(
                type_url,
                &MsgCancelUpgrade {
                    authority: req_str(obj, at, "authority")?,
                },
            ))
        }
        MSG_REGISTER_MODEL_URL => {
            unknown_fields(obj, at, &["authority", "model"])?;
            Ok(any_of(
                type_url,
                &MsgRegisterModel {
                    authority: req_str(obj, at, "authority")?,
                    model: json_text(obj, at, "model")?,
                },
            ))
        }
        MSG_RETIRE_MODEL_URL => {
            unknown_fields(obj, at, &["authority", "model_id"])?;
            Ok(any_of(
                type_url,
                &MsgRetireModel {
                    authority: req_str(obj, at, "authority")?,
                    model_id: req_str(obj, at, "model_id")?,
                },
            ))
        }
        MSG_COMMUNITY_POOL_SPEND_URL => {
            unknown_fields(obj, at, &["authority", "recipient", "amount"])?;
            Ok(any_of(
                type_url,
                &MsgCommunityPoolSpend {
                    authority: req_str(obj, at, "authority")?,
                    recipient: req_str(obj, at, "recipient")?,
                    amount: proto_coins(&req_coins(obj, at, "amount")?),
                },
            ))
        }
        other if kiln_messages::TYPE_URLS.contains(&other) => {
            bail!("{at}this message cannot be proposed: {PROPOSABLE}")
        }
        _ => bail!("{at}unknown \"@type\"; {PROPOSABLE}"),
    }
}

/// Parses a proposal file, converts its messages and checks them as the
/// chain will (known, decodable, valid, signed by the governance authority).
/// Errors name the field (`messages[0] (…): missing field "authority"`).
pub fn parse_proposal(text: &str) -> Result<ProposalFile> {
    let v: Value = serde_json::from_str(text).context("not valid JSON")?;
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow!("a proposal file is a JSON object with \"messages\", \"title\", \"summary\", \"deposit\""))?;
    unknown_fields(obj, "", FILE_FIELDS)?;
    if obj.contains_key("@type") {
        bail!("unknown field \"@type\" at the top level: a proposal file lists its messages under \"messages\"");
    }
    match obj.get("expedited") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => bail!("field \"expedited\": Kiln has no expedited proposals"),
        Some(other) => bail!("field \"expedited\" must be false, got {other}"),
    }
    let title = opt_str(obj, "", "title")?.unwrap_or_default();
    if title.trim().is_empty() {
        bail!("missing field \"title\" (a proposal needs a title)");
    }
    let summary = opt_str(obj, "", "summary")?.unwrap_or_default();
    let metadata = opt_str(obj, "", "metadata")?.unwrap_or_default();
    let deposit = match obj.get("deposit") {
        None => vec![],
        Some(v) => coins_value(v, "", "deposit")?,
    };
    let messages = match obj.get("messages") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, m)| message_of(m, i))
            .collect::<Result<Vec<_>>>()?,
        Some(other) => bail!("field \"messages\" must be a list, got {other}"),
    };
    kiln_messages::check_proposal_messages(&messages).map_err(|e| anyhow!("{}", e.log))?;
    Ok(ProposalFile {
        messages,
        metadata,
        deposit,
        title,
        summary,
    })
}

/// `/cosmos.gov.v1.MsgSubmitProposal` of `p` by `proposer`.
pub fn msg_submit_proposal(p: &ProposalFile, proposer: &str) -> Any {
    any_of(
        MSG_SUBMIT_PROPOSAL_URL,
        &MsgSubmitProposal {
            messages: p.messages.clone(),
            initial_deposit: proto_coins(&p.deposit),
            proposer: proposer.to_string(),
            metadata: p.metadata.clone(),
            title: p.title.clone(),
            summary: p.summary.clone(),
            expedited: false,
        },
    )
}

pub fn msg_deposit(proposal_id: u64, depositor: &str, amount: &[Coin]) -> Any {
    any_of(
        MSG_DEPOSIT_URL,
        &MsgDeposit {
            proposal_id,
            depositor: depositor.to_string(),
            amount: proto_coins(amount),
        },
    )
}

/// A vote option: `yes`, `no`, `abstain`, `no_with_veto` (or `veto`).
pub fn parse_vote_option(text: &str) -> Result<i32> {
    option::parse(text)
        .ok_or_else(|| anyhow!("unknown vote option {text:?}: yes, no, abstain or no_with_veto"))
}

pub fn msg_vote(proposal_id: u64, voter: &str, vote_option: i32) -> Any {
    any_of(
        MSG_VOTE_URL,
        &MsgVote {
            proposal_id,
            voter: voter.to_string(),
            option: vote_option,
            metadata: String::new(),
        },
    )
}

/// A decimal weight in (0, 1] (`0.6`, `1`, `.25`) as 18-decimal atomics.
fn parse_decimal_weight(text: &str) -> Result<u128> {
    let t = text.trim();
    let dec = if t.contains('.') {
        t.to_string()
    } else {
        format!("{t}.0")
    };
    kiln_gov::parse_weight(&dec).map_err(|e| anyhow!("{e}"))
}

/// Parses `yes=0.6,no=0.4` into weighted options (weights as Cosmos `Dec`
/// atomics, 18 decimals, as the SDK encodes them). The options must be
/// distinct and their weights sum to exactly 1.
pub fn parse_weighted_options(text: &str) -> Result<Vec<WeightedVoteOption>> {
    let mut out: Vec<WeightedVoteOption> = vec![];
    let mut sum: u128 = 0;
    for part in text.split(',') {
        let part = part.trim();
        let (name, weight) = part.split_once('=').ok_or_else(|| {
            anyhow!("{part:?}: give OPTION=WEIGHT pairs, e.g. \"yes=0.6,no=0.4\"")
        })?;
        let opt = parse_vote_option(name)?;
        let w = parse_decimal_weight(weight).with_context(|| format!("option {}", name.trim()))?;
        if out.iter().any(|o| o.option == opt) {
            bail!("option {} appears twice", option::name(opt));
        }
        sum = sum.saturating_add(w);
        out.push(WeightedVoteOption {
            option: opt,
            weight: w.to_string(),
        });
    }
    if sum != WEIGHT_ONE {
        bail!(
            "the weights of {text:?} sum to {}; they must sum to exactly 1",
            kiln_gov::format_weight(sum)
        );
    }
    Ok(out)
}

pub fn msg_vote_weighted(proposal_id: u64, voter: &str, options: Vec<WeightedVoteOption>) -> Any {
    any_of(
        MSG_VOTE_WEIGHTED_URL,
        &MsgVoteWeighted {
            proposal_id,
            voter: voter.to_string(),
            options,
            metadata: String::new(),
        },
    )
}

/// The new proposal's id in a `tx` RPC result: the `submit_proposal`
/// event's `proposal_id`, else `kiln.gov.v1.EventProposalSubmitted`'s.
pub fn proposal_id_of(result: &Value) -> Option<u64> {
    let events = result["tx_result"]["events"].as_array()?;
    for ty in ["submit_proposal", "kiln.gov.v1.EventProposalSubmitted"] {
        for e in events.iter().filter(|e| json_str(&e["type"]) == ty) {
            for a in e["attributes"].as_array().into_iter().flatten() {
                if json_str(&a["key"]) == "proposal_id" {
                    if let Ok(id) = json_str(&a["value"]).trim_matches('"').parse() {
                        return Some(id);
                    }
                }
            }
        }
    }
    None
}

// ---- drafts ----

/// What `kiln tx gov draft --kind` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftKind {
    Text,
    Params,
    Upgrade,
    CancelUpgrade,
    RegisterModel,
    RetireModel,
    CommunityPoolSpend,
}

impl DraftKind {
    pub const ALL: [DraftKind; 7] = [
        DraftKind::Text,
        DraftKind::Params,
        DraftKind::Upgrade,
        DraftKind::CancelUpgrade,
        DraftKind::RegisterModel,
        DraftKind::RetireModel,
        DraftKind::CommunityPoolSpend,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DraftKind::Text => "text",
            DraftKind::Params => "params",
            DraftKind::Upgrade => "upgrade",
            DraftKind::CancelUpgrade => "cancel-upgrade",
            DraftKind::RegisterModel => "register-model",
            DraftKind::RetireModel => "retire-model",
            DraftKind::CommunityPoolSpend => "community-pool-spend",
        }
    }
}

impl std::fmt::Display for DraftKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DraftKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        DraftKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown proposal kind {s:?}; one of: {}",
                    DraftKind::ALL.map(DraftKind::as_str).join(", ")
                )
            })
    }
}

/// What a draft is filled with from the chain.
#[derive(Debug, Clone, Default)]
pub struct DraftInputs {
    /// ukiln of the initial deposit (the chain's `min_deposit`).
    pub min_deposit: u128,
    /// `params`: the module and its params in force.
    pub module: Option<String>,
    pub params: Option<Value>,
    /// `params`: the module's params already scheduled by a passed proposal.
    pub pending: Option<Value>,
    /// `upgrade`: the latest block height.
    pub height: Option<u64>,
}

/// Blocks after the current height the drafted upgrade is planned at.
pub const UPGRADE_HEIGHT_OFFSET: u64 = 100;

/// The proposal file of `kind` (see [`DraftInputs`]).
pub fn draft_proposal(kind: DraftKind, inputs: &DraftInputs) -> Result<Value> {
    let authority = authority();
    let (messages, title, summary) = match kind {
        DraftKind::Text => (
            json!([]),
            "Title of the proposal".to_string(),
            "What this proposal asks the network to agree on, and why.".to_string(),
        ),
        DraftKind::Params => {
            let module = inputs
                .module
                .as_deref()
                .ok_or_else(|| anyhow!("--kind params needs --module ({})", param_modules().join(", ")))?;
            let params = inputs
                .params
                .clone()
                .ok_or_else(|| anyhow!("the {module} params in force are needed"))?;
            (
                json!([{"@type": update_params_url(module)?, "authority": authority, "params": params}]),
                format!("Update the {module} params"),
                format!("Changes the {module} params: edit messages[0].params (the complete object; fields left as they are keep their values). They take effect at the first block of the epoch after the proposal passes."),
            )
        }
        DraftKind::Upgrade => {
            let height = inputs
                .height
                .ok_or_else(|| anyhow!("the current height is needed"))?;
            (
                json!([{"@type": MSG_SOFTWARE_UPGRADE_URL, "authority": authority,
                        "plan": {"name": "v2", "height": (height + UPGRADE_HEIGHT_OFFSET).to_string(), "info": ""}}]),
                "Software upgrade v2".to_string(),
                "Upgrades kilnd to v2 at the height in messages[0].plan; nodes without a binary that knows the upgrade stop there.".to_string(),
            )
        }
        DraftKind::CancelUpgrade => (
            json!([{"@type": MSG_CANCEL_UPGRADE_URL, "authority": authority}]),
            "Cancel the planned software upgrade".to_string(),
            "Cancels the software upgrade that is planned (kiln query gov upgrade).".to_string(),
        ),
        DraftKind::RegisterModel => (
            json!([{"@type": MSG_REGISTER_MODEL_URL, "authority": authority, "model": {
                "id": "new-model-id",
                "gguf_sha256": "SHA-256 OF THE GGUF FILE (64 lowercase hex digits)",
                "tokenizer_sha256": "SHA-256 OF THE TOKENIZER (64 lowercase hex digits)",
                "validation_threshold_micro": 980000,
                "price_floor_pkiln": 100000,
                "initial_price_pkiln": null,
            }}]),
            "Register model new-model-id".to_string(),
            "Registers a model hosts may serve: its id, the hashes of its weights and tokenizer, the validation threshold and the price floor.".to_string(),
        ),
        DraftKind::RetireModel => (
            json!([{"@type": MSG_RETIRE_MODEL_URL, "authority": authority, "model_id": "MODEL_ID"}]),
            "Retire model MODEL_ID".to_string(),
            "Stops new requests for the model; requests already started settle as before.".to_string(),
        ),
        DraftKind::CommunityPoolSpend => (
            json!([{"@type": MSG_COMMUNITY_POOL_SPEND_URL, "authority": authority,
                    "recipient": "RECIPIENT (a kiln1… address)",
                    "amount": [{"denom": BASE_DENOM, "amount": "1000000"}]}]),
            "Community pool spend".to_string(),
            "Pays the recipient from the community pool, for …".to_string(),
        ),
    };
    Ok(json!({
        "messages": messages,
        "metadata": "",
        "deposit": format!("{}{BASE_DENOM}", inputs.min_deposit),
        "title": title,
        "summary": summary,
    }))
}

/// A proposal file's text: the fields in the Cosmos SDK's order
/// (`messages`, `metadata`, `deposit`, `title`, `summary`), pretty-printed.
pub fn proposal_file_text(v: &Value) -> String {
    let Some(obj) = v.as_object() else {
        return format!("{v}\n");
    };
    let order = ["messages", "metadata", "deposit", "title", "summary"];
    let rest = obj.keys().filter(|k| !order.contains(&k.as_str()));
    let fields: Vec<String> = order
        .iter()
        .map(|k| k.to_string())
        .chain(rest.cloned())
        .filter_map(|k| {
            let val = obj.get(&k)?;
            // JSON text holds no raw newlines inside strings: indenting
            // every line is safe.
            let pretty = serde_json::to_string_pretty(val)
                .ok()?
                .replace('\n', "\n  ");
            Some(format!("  {}: {pretty}", Value::String(k)))
        })
        .collect();
    format!("{{\n{}\n}}\n", fields.join(",\n"))
}

/// What to edit in a draft of `kind`, one line each.
pub fn draft_hints(kind: DraftKind) -> Vec<String> {
    let mut h = vec![];
    match kind {
        DraftKind::Text => {
            h.push("a text proposal carries no messages: it asks only for a vote".into())
        }
        DraftKind::Params => h.push(
            "edit messages[0].params: it holds the params in force; change only the fields you mean to".into(),
        ),
        DraftKind::Upgrade => h.push(format!(
            "set messages[0].plan.name (the upgrade handler's name), .height (drafted at the current height + {UPGRADE_HEIGHT_OFFSET}; it must come after the voting period ends) and .info (e.g. binary URLs)"
        )),
        DraftKind::CancelUpgrade => h.push("nothing to edit but the title and summary".into()),
        DraftKind::RegisterModel => h.push(
            "fill messages[0].model: id, gguf_sha256, tokenizer_sha256, validation_threshold_micro, price_floor_pkiln".into(),
        ),
        DraftKind::RetireModel => {
            h.push("set messages[0].model_id (kiln query models lists them)".into())
        }
        DraftKind::CommunityPoolSpend => h.push(
            "set messages[0].recipient and .amount (kiln query supply shows the community pool)".into(),
        ),
    }
    h.push("set \"title\" and \"summary\"; \"deposit\" is the chain's min_deposit, so voting starts at once".into());
    h
}

/// Asks the chain for what a draft of `kind` needs.
pub fn draft_inputs(rpc: &RpcClient, kind: DraftKind, module: Option<&str>) -> Result<DraftInputs> {
    if module.is_some() && kind != DraftKind::Params {
        bail!("--module goes with --kind params");
    }
    let gp = params(rpc, 0).context("cannot read the gov params (min_deposit) from the node")?;
    let min_deposit = gp["params"]["min_deposit"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| gp["params"]["min_deposit"].as_u64().map(u128::from))
        .ok_or_else(|| anyhow!("the gov params have no min_deposit: {gp}"))?;
    let mut inputs = DraftInputs {
        min_deposit,
        ..Default::default()
    };
    match kind {
        DraftKind::Params => {
            let module = module.ok_or_else(|| {
                anyhow!(
                    "--kind params needs --module ({})",
                    param_modules().join(", ")
                )
            })?;
            update_params_url(module)?;
            let v = module_params(rpc, module, 0)?;
            inputs.params = Some(v["params"].clone());
            inputs.pending = Some(v["pending"].clone()).filter(|p| !p.is_null());
            inputs.module = Some(module.to_string());
        }
        DraftKind::Upgrade => {
            let st = rpc.status()?;
            inputs.height = Some(
                json_u64(&st["sync_info"]["latest_block_height"])
                    .ok_or_else(|| anyhow!("the node's status has no latest_block_height"))?,
            );
        }
        _ => {}
    }
    Ok(inputs)
}

// ---- queries ----

/// Proposals, newest first (at most 100), optionally of one status
/// (`deposit_period`, `voting_period`, `passed`, `rejected`, `failed`).
pub fn proposals(rpc: &RpcClient, status: Option<&str>, height: u64) -> Result<Value> {
    if let Some(s) = status {
        if kiln_gov::ProposalStatus::parse(s).is_none() {
            bail!(
                "unknown status {s:?}: deposit_period, voting_period, passed, rejected or failed"
            );
        }
    }
    crate::query::json_query(
        rpc,
        PROPOSALS_PATH,
        status.unwrap_or("").trim().as_bytes(),
        height,
    )
}

pub fn proposal(rpc: &RpcClient, id: u64, height: u64) -> Result<Value> {
    crate::query::json_query(rpc, PROPOSAL_PATH, id.to_string().as_bytes(), height)
}

pub fn votes(rpc: &RpcClient, id: u64, height: u64) -> Result<Value> {
    crate::query::json_query(rpc, VOTES_PATH, id.to_string().as_bytes(), height)
}

pub fn tally(rpc: &RpcClient, id: u64, height: u64) -> Result<Value> {
    crate::query::json_query(rpc, TALLY_PATH, id.to_string().as_bytes(), height)
}

/// The gov params, the params scheduled and the authority.
pub fn params(rpc: &RpcClient, height: u64) -> Result<Value> {
    crate::query::json_query(rpc, PARAMS_PATH, b"", height)
}

/// The planned upgrade and the applied ones.
pub fn upgrade(rpc: &RpcClient, height: u64) -> Result<Value> {
    crate::query::json_query(rpc, UPGRADE_PATH, b"", height)
}

/// A module's params in force and scheduled:
/// `{"module", "msg_type_url", "params", "pending"}`.
pub fn module_params(rpc: &RpcClient, module: &str, height: u64) -> Result<Value> {
    update_params_url(module)?;
    crate::query::json_query(rpc, MODULE_PARAMS_PATH, module.as_bytes(), height)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn file(messages: &str) -> String {
        format!(
            r#"{{"messages": {messages}, "metadata": "", "deposit": "10000000ukiln", "title": "T", "summary": "S"}}"#
        )
    }

    fn err_of(text: &str) -> String {
        format!("{:#}", parse_proposal(text).unwrap_err())
    }

    #[test]
    fn a_good_file_gives_the_messages() {
        let gov = authority();
        let recipient = crate::keyring::bech32_encode("kiln", &[7u8; 20]);
        let text = file(&format!(
            r#"[{{"@type": "/kiln.gov.v1.MsgUpdateParams", "authority": "{gov}", "params": {}}},
                {{"@type": "/kiln.staking.v1.MsgUpdateParams", "authority": "{gov}", "params": {:?}}},
                {{"@type": "/cosmos.upgrade.v1beta1.MsgSoftwareUpgrade", "authority": "{gov}", "plan": {{"name": "v2", "height": "1200", "info": ""}}}},
                {{"@type": "/cosmos.upgrade.v1beta1.MsgCancelUpgrade", "authority": "{gov}"}},
                {{"@type": "/kiln.inference.v1.MsgRetireModel", "authority": "{gov}", "model_id": "smollm2-135m"}},
                {{"@type": "/cosmos.distribution.v1beta1.MsgCommunityPoolSpend", "authority": "{gov}", "recipient": "{recipient}", "amount": "1kiln"}},
                {{"@type": "/kiln.inference.v1.MsgRegisterModel", "authority": "{gov}", "model": {{"id": "m2", "gguf_sha256": "{h}", "tokenizer_sha256": "{h}", "price_floor_pkiln": 100000}}}}]"#,
            serde_json::to_string(&kiln_gov::GovParams::devnet()).unwrap(),
            serde_json::to_string(&kiln_staking::params::StakingParams::default()).unwrap(),
            h = "ab".repeat(32),
        ));
        let p = parse_proposal(&text).unwrap();
        let urls: Vec<&str> = p.messages.iter().map(|m| m.type_url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "/kiln.gov.v1.MsgUpdateParams",
                "/kiln.staking.v1.MsgUpdateParams",
                MSG_SOFTWARE_UPGRADE_URL,
                MSG_CANCEL_UPGRADE_URL,
                MSG_RETIRE_MODEL_URL,
                MSG_COMMUNITY_POOL_SPEND_URL,
                MSG_REGISTER_MODEL_URL,
            ]
        );
        assert_eq!(
            p.deposit,
            vec![Coin {
                denom: "ukiln".into(),
                amount: 10_000_000
            }]
        );
        assert_eq!((p.title.as_str(), p.summary.as_str()), ("T", "S"));
        // params given as an object travel as its JSON text
        let m = MsgUpdateParams::decode(p.messages[0].value.as_slice()).unwrap();
        let back: kiln_gov::GovParams = serde_json::from_str(&m.params).unwrap();
        assert_eq!(back, kiln_gov::GovParams::devnet());
        let up = MsgSoftwareUpgrade::decode(p.messages[2].value.as_slice()).unwrap();
        assert_eq!(up.plan.unwrap().height, 1200);
        let spend = MsgCommunityPoolSpend::decode(p.messages[5].value.as_slice()).unwrap();
        assert_eq!(spend.amount[0].amount, "1000000");
        let model = MsgRegisterModel::decode(p.messages[6].value.as_slice()).unwrap();
        assert!(model.model.contains("\"id\":\"m2\""), "{}", model.model);

        let submit = msg_submit_proposal(&p, &recipient);
        assert_eq!(submit.type_url, MSG_SUBMIT_PROPOSAL_URL);
        let decoded = kiln_messages::Msg::from_any(&submit, 0).unwrap();
        assert_eq!(decoded.type_url(), MSG_SUBMIT_PROPOSAL_URL);

        // A text proposal: no messages; "10kiln" is 10 000 000 ukiln.
        let text = r#"{"messages": [], "deposit": "10kiln", "title": "Hello", "summary": "x", "expedited": false}"#;
        let p = parse_proposal(text).unwrap();
        assert!(p.messages.is_empty());
        assert_eq!(p.deposit[0].amount, 10_000_000);
    }

    #[test]
    fn bad_files_name_the_field() {
        let gov = authority();
        let e = err_of(&file(r#"[{"@type": "/kiln.nope.v1.MsgNope"}]"#));
        assert!(
            e.contains("messages[0]") && e.contains("unknown \"@type\""),
            "{e}"
        );
        let e = err_of(r#"{"messages": [], "deposit": "10kiln", "summary": "x"}"#);
        assert!(e.contains("\"title\""), "{e}");
        let e = err_of(r#"{"messages": [], "deposit": "10kiln", "title": "  "}"#);
        assert!(e.contains("\"title\""), "{e}");
        for bad in ["ten kiln", "10", "0ukiln", "1.5ukiln"] {
            let e = err_of(&format!(
                r#"{{"messages": [], "deposit": "{bad}", "title": "t"}}"#
            ));
            assert!(e.contains("\"deposit\""), "{bad}: {e}");
        }
        let e = err_of(r#"{"messages": [], "deposit": "10kiln", "title": "t", "titel": "x"}"#);
        assert!(e.contains("unknown field \"titel\""), "{e}");
        let e = err_of(&file(&format!(
            r#"[{{"@type": "/cosmos.upgrade.v1beta1.MsgCancelUpgrade", "authority": "{gov}", "extra": 1}}]"#
        )));
        assert!(
            e.contains("messages[0]") && e.contains("unknown field \"extra\""),
            "{e}"
        );
        let e = err_of(&file(
            r#"[{"@type": "/kiln.gov.v1.MsgUpdateParams", "params": {}}]"#,
        ));
        assert!(e.contains("missing field \"authority\""), "{e}");
        // Signed by someone other than the governance authority: the chain's check.
        let other = crate::keyring::bech32_encode("kiln", &[1u8; 20]);
        let e = err_of(&file(&format!(
            r#"[{{"@type": "/cosmos.upgrade.v1beta1.MsgCancelUpgrade", "authority": "{other}"}}]"#
        )));
        assert!(e.contains("authority"), "{e}");
        // Params that the module refuses.
        let e = err_of(&file(&format!(
            r#"[{{"@type": "/kiln.gov.v1.MsgUpdateParams", "authority": "{gov}", "params": {{"min_deposit": "0"}}}}]"#
        )));
        assert!(e.contains("gov params"), "{e}");
        // Votes and sends are not proposed.
        let e = err_of(&file(
            r#"[{"@type": "/cosmos.gov.v1.MsgVote", "proposal_id": "1"}]"#,
        ));
        assert!(
            e.contains("messages[0]") && e.contains("cannot be proposed"),
            "{e}"
        );
        let e = err_of(&file(&format!(
            r#"[{{"@type": "/cosmos.bank.v1beta1.MsgSend", "from_address": "{gov}", "to_address": "{gov}", "amount": "1kiln"}}]"#
        )));
        assert!(e.contains("cannot be proposed"), "{e}");
        assert!(parse_proposal("not json").is_err());
        assert!(parse_proposal("[]").is_err());
        let e = err_of(r#"{"messages": [], "title": "t", "expedited": true}"#);
        assert!(e.contains("expedited"), "{e}");
        let e = err_of(&file(&format!(
            r#"[{{"@type": "/cosmos.upgrade.v1beta1.MsgSoftwareUpgrade", "authority": "{gov}", "plan": {{"name": "v2", "height": "-3"}}}}]"#
        )));
        assert!(e.contains("plan") && e.contains("\"height\""), "{e}");
    }

    #[test]
    fn weighted_votes() {
        let o = parse_weighted_options("yes=0.6,no=0.4").unwrap();
        assert_eq!(
            o,
            vec![
                WeightedVoteOption {
                    option: option::YES,
                    weight: "600000000000000000".into()
                },
                WeightedVoteOption {
                    option: option::NO,
                    weight: "400000000000000000".into()
                },
            ]
        );
        let o = parse_weighted_options(" abstain = 1 ").unwrap();
        assert_eq!(o[0].option, option::ABSTAIN);
        assert_eq!(o[0].weight, WEIGHT_ONE.to_string());
        let o = parse_weighted_options("yes=0.25,no=0.25,abstain=0.25,no_with_veto=.25").unwrap();
        assert_eq!(o.len(), 4);
        for bad in [
            "",
            "yes",
            "yes=0.6",
            "yes=0.6,no=0.5",
            "yes=0.5,yes=0.5",
            "maybe=1",
            "yes=x",
            "yes=0,no=1",
            "yes=1.5,no=-0.5",
        ] {
            assert!(parse_weighted_options(bad).is_err(), "{bad}");
        }
        // The message passes the chain's own checks.
        let voter = crate::keyring::bech32_encode("kiln", &[3u8; 20]);
        let m = msg_vote_weighted(4, &voter, parse_weighted_options("yes=0.6,no=0.4").unwrap());
        kiln_messages::Msg::from_any(&m, 0).unwrap();
        assert_eq!(parse_vote_option("veto").unwrap(), option::NO_WITH_VETO);
        assert!(parse_vote_option("maybe").is_err());
    }

    #[test]
    fn drafts_parse_once_filled() {
        let inputs = DraftInputs {
            min_deposit: 10_000_000,
            module: Some("gov".into()),
            params: Some(serde_json::to_value(kiln_gov::GovParams::devnet()).unwrap()),
            pending: None,
            height: Some(50),
        };
        for kind in [
            DraftKind::Text,
            DraftKind::Params,
            DraftKind::Upgrade,
            DraftKind::CancelUpgrade,
        ] {
            let v = draft_proposal(kind, &inputs).unwrap();
            let p = parse_proposal(&v.to_string()).unwrap_or_else(|e| panic!("{kind}: {e:#}"));
            assert_eq!(p.deposit[0].amount, 10_000_000, "{kind}");
        }
        let v = draft_proposal(DraftKind::Upgrade, &inputs).unwrap();
        assert_eq!(v["messages"][0]["plan"]["height"], "150");
        // Written in the Cosmos SDK's field order, and reads back the same.
        let text = proposal_file_text(&v);
        let at = |k: &str| text.find(&format!("\n  \"{k}\": ")).unwrap();
        assert!(at("messages") < at("metadata") && at("metadata") < at("deposit"));
        assert!(
            at("deposit") < at("title") && at("title") < at("summary"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
        // Placeholders must be edited before the file is accepted.
        for kind in [DraftKind::RegisterModel, DraftKind::CommunityPoolSpend] {
            let v = draft_proposal(kind, &inputs).unwrap();
            assert!(parse_proposal(&v.to_string()).is_err(), "{kind}");
        }
        assert_eq!(
            "community_pool_spend".parse::<DraftKind>().unwrap(),
            DraftKind::CommunityPoolSpend
        );
        assert!("nope".parse::<DraftKind>().is_err());
    }

    #[test]
    fn proposal_id_from_events() {
        let r = json!({"tx_result": {"events": [
            {"type": "message", "attributes": [{"key": "action", "value": "x"}]},
            {"type": "kiln.gov.v1.EventProposalSubmitted", "attributes": [{"key": "proposal_id", "value": "7"}]},
        ]}});
        assert_eq!(proposal_id_of(&r), Some(7));
        let r = json!({"tx_result": {"events": [{"type": "submit_proposal", "attributes": [{"key": "proposal_id", "value": "8"}]}]}});
        assert_eq!(proposal_id_of(&r), Some(8));
        assert_eq!(proposal_id_of(&json!({})), None);
    }
}
