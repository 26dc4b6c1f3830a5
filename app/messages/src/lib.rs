//! kiln-messages: the one list of every message the chain executes.
//!
//! Each message type is declared once, in its module's `msgs.rs`, as a
//! [`MsgKind`] (type URL, signer, ML-ops or not, stateless check, handler,
//! description). [`messages!`] below names each declaration on one line and
//! derives from that list:
//!
//! - [`Msg`], the decoded message, and [`Msg::from_any`], the strict decoder
//!   (canonical protobuf, stateless checks, one level of `MsgExec`);
//! - [`Msg::signer`], [`Msg::validate_basic`], [`Msg::type_url`];
//! - [`dispatch`], the router (and `MsgExec`'s authorization);
//! - [`ml_ops_type_urls`], the set `grant-ml-ops` grants, the fee allowance
//!   accepts and the worker checks;
//! - [`describe_any`], the JSON wallets show.
//!
//! Adding a message = its declaration in its module plus one line here.
//! The crate depends on module crates only (no storage engine), so the CLI and
//! the worker use the same list as the chain.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::sync::LazyLock;

use cosmos_sdk_proto::cosmos::authz::v1beta1::MsgExec;
use cosmos_sdk_proto::Any;
use kiln_authz::handler::{signer_of_exec, MSG_EXEC_TYPE_URL};
use kiln_framework::params::{GovernedParams, UpdateParams};
use kiln_framework::{Address, Event, ExecCtx, MsgKind, TxError, TxResult};
use kiln_state::StateWrite;
use prost::Message;

/// Declares the message list. Each line: `Variant => path::to::Declaration,`.
macro_rules! messages {
    ($($variant:ident => $kind:ty,)*) => {
        /// A decoded message the chain knows how to execute.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Msg {
            $($variant(<$kind as MsgKind>::Proto),)*
            /// `MsgExec` with its inner messages decoded (one level; nesting is refused).
            Exec { exec: MsgExec, inner: Vec<Msg> },
        }

        /// Type URLs of every listed message except `MsgExec`, in list order.
        pub const TYPE_URLS: &[&str] = &[$(<$kind as MsgKind>::TYPE_URL,)*];

        /// `(type URL, is ML-ops)` of every listed message except `MsgExec`.
        const ML_OPS_FLAGS: &[(&str, bool)] = &[$((<$kind as MsgKind>::TYPE_URL, <$kind as MsgKind>::ML_OPS),)*];

        impl Msg {
            pub fn type_url(&self) -> &'static str {
                match self {
                    $(Msg::$variant(_) => <$kind as MsgKind>::TYPE_URL,)*
                    Msg::Exec { .. } => MSG_EXEC_TYPE_URL,
                }
            }

            /// The account that must sign this message.
            pub fn signer(&self) -> TxResult<Address> {
                match self {
                    $(Msg::$variant(m) => <$kind as MsgKind>::signer(m),)*
                    Msg::Exec { exec, .. } => signer_of_exec(exec),
                }
            }

            /// Stateless checks (inner messages of `MsgExec` included).
            pub fn validate_basic(&self) -> TxResult<()> {
                match self {
                    $(Msg::$variant(m) => <$kind as MsgKind>::validate_basic(m),)*
                    Msg::Exec { inner, .. } => inner.iter().try_for_each(Msg::validate_basic),
                }
            }

            /// Whether a host's ML operational key may send it through `MsgExec`.
            pub fn is_ml_ops(&self) -> bool {
                match self {
                    $(Msg::$variant(_) => <$kind as MsgKind>::ML_OPS,)*
                    Msg::Exec { .. } => false,
                }
            }

            /// Decodes an `Any` into a listed message, canonically, and runs
            /// its stateless checks. `depth` > 0 inside `MsgExec`.
            pub fn from_any(any: &Any, depth: u32) -> TxResult<Msg> {
                let msg = match any.type_url.as_str() {
                    $(<$kind as MsgKind>::TYPE_URL => Msg::$variant(strict(any)?),)*
                    MSG_EXEC_TYPE_URL => {
                        if depth > 0 {
                            return Err(TxError::invalid_request("nested MsgExec is not allowed"));
                        }
                        let exec: MsgExec = strict(any)?;
                        if exec.msgs.is_empty() {
                            return Err(TxError::invalid_request("MsgExec carries no messages"));
                        }
                        let inner = exec
                            .msgs
                            .iter()
                            .map(|m| Msg::from_any(m, depth + 1))
                            .collect::<TxResult<Vec<_>>>()?;
                        Msg::Exec { exec, inner }
                    }
                    other => {
                        return Err(TxError::unknown_request(format!(
                            "unrecognized message type {other:?}"
                        )))
                    }
                };
                if !matches!(msg, Msg::Exec { .. }) {
                    msg.validate_basic()?;
                }
                // A proposal's messages are checked when it is submitted,
                // so a proposal that could never execute is refused in CheckTx.
                if let Msg::SubmitProposal(p) = &msg {
                    check_proposal_messages(&p.messages)?;
                }
                Ok(msg)
            }
        }

        fn handle_listed<S: StateWrite>(state: &mut S, ctx: &mut ExecCtx<'_>, msg: &Msg) -> TxResult<()> {
            match msg {
                $(Msg::$variant(m) => <$kind as MsgKind>::handle(state, ctx, m),)*
                Msg::Exec { .. } => Err(TxError::invalid_request("nested MsgExec is not allowed")),
            }
        }

        fn describe_listed(any: &Any) -> Option<serde_json::Value> {
            match any.type_url.as_str() {
                $(<$kind as MsgKind>::TYPE_URL => {
                    <<$kind as MsgKind>::Proto>::decode(any.value.as_slice())
                        .ok()
                        .map(|m| <$kind as MsgKind>::describe(&m))
                })*
                _ => None,
            }
        }
    };
}

messages! {
    Send => kiln_bank::msgs::Send,
    Grant => kiln_authz::msgs::Grant,
    Revoke => kiln_authz::msgs::Revoke,
    RegisterHost => kiln_hosts::msgs::RegisterHost,
    UpdateHost => kiln_hosts::msgs::UpdateHost,
    AddMlNode => kiln_hosts::mlnodes::AddMlNode,
    UpdateMlNode => kiln_hosts::mlnodes::UpdateMlNode,
    SetMlNodeEnabled => kiln_hosts::mlnodes::SetMlNodeEnabled,
    RemoveMlNode => kiln_hosts::mlnodes::RemoveMlNode,
    SprintCommit => kiln_sprint::msgs::SprintCommit,
    SprintRevealSecret => kiln_sprint::msgs::SprintRevealSecret,
    SprintOpen => kiln_sprint::msgs::SprintOpen,
    SprintVoteCommit => kiln_sprint::msgs::SprintVoteCommit,
    SprintVoteReveal => kiln_sprint::msgs::SprintVoteReveal,
    StartInference => kiln_inference::msgs::StartInference,
    FinishInference => kiln_inference::msgs::FinishInference,
    Validation => kiln_inference::msgs::Validation,
    DisputeVote => kiln_inference::msgs::DisputeVote,
    CommitValidationSeed => kiln_inference::msgs::CommitValidationSeed,
    RevealValidationSeed => kiln_inference::msgs::RevealValidationSeed,
    Bond => kiln_staking::msgs::Bond,
    Unbond => kiln_staking::msgs::Unbond,
    SetCommission => kiln_staking::msgs::SetCommission,
    Unjail => kiln_staking::msgs::Unjail,
    Delegate => kiln_staking::msgs::Delegate,
    Undelegate => kiln_staking::msgs::Undelegate,
    BeginRedelegate => kiln_staking::msgs::BeginRedelegate,
    WithdrawDelegatorReward => kiln_staking::msgs::WithdrawDelegatorReward,
    SubmitProposal => kiln_gov::msgs::SubmitProposal,
    Deposit => kiln_gov::msgs::Deposit,
    Vote => kiln_gov::msgs::Vote,
    VoteWeighted => kiln_gov::msgs::VoteWeighted,
    SoftwareUpgrade => kiln_gov::upgrade::SoftwareUpgrade,
    CancelUpgrade => kiln_gov::upgrade::CancelUpgrade,
    CommunityPoolSpend => kiln_rewards::pool_spend::CommunityPoolSpend,
    RegisterModel => kiln_inference::registry::RegisterModel,
    RetireModel => kiln_inference::registry::RetireModel,
    UpdateAuthParams => UpdateParams<kiln_bank::params::AuthParams>,
    UpdateAuthzParams => UpdateParams<kiln_authz::params::AuthzParams>,
    UpdateEpochParams => UpdateParams<kiln_epochs::EpochParams>,
    UpdateStakingParams => UpdateParams<kiln_staking::params::StakingParams>,
    UpdateSprintParams => UpdateParams<kiln_sprint::params::SprintParams>,
    UpdateReputationParams => UpdateParams<kiln_reputation::ReputationParams>,
    UpdateInferenceParams => UpdateParams<kiln_inference::params::InferenceParams>,
    UpdateRewardsParams => UpdateParams<kiln_rewards::RewardsParams>,
    UpdateSlashingParams => UpdateParams<kiln_slashing::SlashingParams>,
    UpdateGovParams => UpdateParams<kiln_gov::GovParams>,
}

/// The type URLs of every module's `MsgUpdateParams`, with the module's
/// name (as in genesis.json), in list order.
pub const UPDATE_PARAMS: &[(&str, &str)] = &[
    (
        "auth",
        <kiln_bank::params::AuthParams as GovernedParams>::TYPE_URL,
    ),
    (
        "authz",
        <kiln_authz::params::AuthzParams as GovernedParams>::TYPE_URL,
    ),
    (
        "epochs",
        <kiln_epochs::EpochParams as GovernedParams>::TYPE_URL,
    ),
    (
        "staking",
        <kiln_staking::params::StakingParams as GovernedParams>::TYPE_URL,
    ),
    (
        "sprint",
        <kiln_sprint::params::SprintParams as GovernedParams>::TYPE_URL,
    ),
    (
        "reputation",
        <kiln_reputation::ReputationParams as GovernedParams>::TYPE_URL,
    ),
    (
        "inference",
        <kiln_inference::params::InferenceParams as GovernedParams>::TYPE_URL,
    ),
    (
        "rewards",
        <kiln_rewards::RewardsParams as GovernedParams>::TYPE_URL,
    ),
    (
        "slashing",
        <kiln_slashing::SlashingParams as GovernedParams>::TYPE_URL,
    ),
    ("gov", <kiln_gov::GovParams as GovernedParams>::TYPE_URL),
];

/// The messages a proposal may carry: those only the governance authority
/// signs. Anything else acting as the governance account (a `MsgSend`, a
/// delegation) would spend the deposits it holds for open proposals.
pub fn is_proposable(type_url: &str) -> bool {
    UPDATE_PARAMS.iter().any(|(_, url)| *url == type_url)
        || [
            <kiln_gov::upgrade::SoftwareUpgrade as MsgKind>::TYPE_URL,
            <kiln_gov::upgrade::CancelUpgrade as MsgKind>::TYPE_URL,
            <kiln_rewards::pool_spend::CommunityPoolSpend as MsgKind>::TYPE_URL,
            <kiln_inference::registry::RegisterModel as MsgKind>::TYPE_URL,
            <kiln_inference::registry::RetireModel as MsgKind>::TYPE_URL,
        ]
        .contains(&type_url)
}

/// Checks the messages a proposal carries: each decodes strictly as a
/// listed message, is one a proposal may carry ([`is_proposable`]),
/// passes its stateless checks and is signed by the governance authority.
pub fn check_proposal_messages(messages: &[Any]) -> TxResult<Vec<Msg>> {
    let authority = kiln_framework::params::gov_authority();
    let mut out = Vec::with_capacity(messages.len());
    for (i, any) in messages.iter().enumerate() {
        let at = |e: TxError| {
            TxError::module(
                "gov",
                kiln_gov::codes::BAD_MESSAGE,
                format!("proposal message {i} ({}): {}", any.type_url, e.log),
            )
        };
        if !is_proposable(&any.type_url) {
            return Err(at(TxError::invalid_request(
                "this message cannot be proposed: a proposal carries only the governance messages (each module's MsgUpdateParams, MsgSoftwareUpgrade, MsgCancelUpgrade, MsgCommunityPoolSpend, MsgRegisterModel, MsgRetireModel)",
            )));
        }
        let msg = Msg::from_any(any, 1).map_err(at)?;
        let signer = msg.signer().map_err(at)?;
        if signer != authority {
            return Err(at(TxError::unauthorized(format!(
                "a proposal's messages act as the governance authority {authority}; this one is signed by {signer}"
            ))));
        }
        out.push(msg);
    }
    Ok(out)
}

/// Executes a passed proposal's messages against `state` in order, as
/// the governance authority; the first failure stops and is returned as
/// text (the caller discards the state it ran in).
pub fn execute_proposal_messages<S: StateWrite>(
    state: &mut S,
    ctx: &mut ExecCtx<'_>,
    messages: &[Any],
) -> Result<(), String> {
    let decoded = check_proposal_messages(messages).map_err(|e| e.log)?;
    for (i, msg) in decoded.iter().enumerate() {
        handle_listed(state, ctx, msg)
            .map_err(|e| format!("message {i} ({}) failed: {}", msg.type_url(), e.log))?;
    }
    Ok(())
}

/// Decodes `M` from `any.value` and requires the bytes to be its canonical
/// encoding (which refuses unknown, reordered or duplicated fields).
fn strict<M: Message + Default>(any: &Any) -> TxResult<M> {
    let msg = M::decode(any.value.as_slice())
        .map_err(|e| TxError::tx_decode(format!("{}: {e}", any.type_url)))?;
    if msg.encode_to_vec() != any.value {
        return Err(TxError::tx_decode(format!(
            "{}: non-canonical encoding or unknown fields",
            any.type_url
        )));
    }
    Ok(msg)
}

/// Type URLs of the ML-ops messages (SPEC §1), in list order: what
/// `grant-ml-ops` grants, what the fee allowance accepts inside `MsgExec`,
/// what the worker checks it was granted.
pub fn ml_ops_type_urls() -> &'static [&'static str] {
    static URLS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
        ML_OPS_FLAGS
            .iter()
            .filter(|(_, ml_ops)| *ml_ops)
            .map(|(url, _)| *url)
            .collect()
    });
    URLS.as_slice()
}

/// Whether `type_url` is an ML-ops message.
pub fn is_ml_ops_type_url(type_url: &str) -> bool {
    ml_ops_type_urls().contains(&type_url)
}

/// Executes one message: listed messages go to their module's handler;
/// `MsgExec` checks the grantee's grant for each inner message (unless it
/// signs for itself) and runs it as if the granter had sent it, so an ML key
/// can do exactly what was granted — and, when the key is one of the host's
/// declared ML nodes, only while that node is enabled in force.
pub fn dispatch<S: StateWrite>(state: &mut S, ctx: &mut ExecCtx<'_>, msg: &Msg) -> TxResult<()> {
    let Msg::Exec { exec, inner } = msg else {
        return handle_listed(state, ctx, msg);
    };
    let grantee = signer_of_exec(exec)?;
    for msg in inner {
        let granter = msg.signer()?;
        if granter != grantee {
            kiln_authz::state::authorize(state, ctx.block, &granter, &grantee, msg.type_url())?;
            if msg.is_ml_ops() {
                kiln_hosts::mlnodes::require_enabled_key(state, &granter, &grantee)?;
            }
            ctx.acting_key = Some(grantee);
        }
        let handled = handle_listed(state, ctx, msg);
        ctx.acting_key = None;
        handled?;
    }
    ctx.emit(
        Event::new("message")
            .attr("action", MSG_EXEC_TYPE_URL)
            .attr("sender", grantee)
            .attr("module", "authz"),
    );
    Ok(())
}

/// Cosmos-style JSON of a message for wallets: listed messages through their
/// declaration, `MsgExec` with its inner messages, anything else (or
/// anything that does not decode) as type URL and base64.
pub fn describe_any(any: &Any) -> serde_json::Value {
    if any.type_url == MSG_EXEC_TYPE_URL {
        if let Ok(exec) = MsgExec::decode(any.value.as_slice()) {
            return serde_json::json!({"@type": any.type_url, "grantee": exec.grantee,
                "msgs": exec.msgs.iter().map(describe_any).collect::<Vec<_>>()});
        }
    }
    if any.type_url == kiln_authz::msgs::GENERIC_AUTHORIZATION_TYPE_URL {
        return kiln_authz::msgs::describe_authorization(any);
    }
    describe_listed(any).unwrap_or_else(|| kiln_framework::msg::opaque_any_json(any))
}
