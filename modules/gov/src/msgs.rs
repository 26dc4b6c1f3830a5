//! Governance messages under the Cosmos gov v1 type URLs, so cosmjs and
//! wallets submit, deposit and vote unchanged. None is an ML-ops message.
//!
//! A proposal's messages are checked where every message is decoded
//! (`kiln-messages`: each must be a known message signed by the governance
//! authority, and none a proposal itself) before [`SubmitProposal::handle`]
//! stores them.

use cosmos_sdk_proto::cosmos::gov::v1::{MsgDeposit, MsgSubmitProposal, MsgVote, MsgVoteWeighted};
use kiln_framework::msg::address_field;
use kiln_framework::{Address, ExecCtx, MsgKind, TxResult};
use kiln_state::StateWrite;
use serde_json::json;

use crate::{codes, err, option, parse_weight, StoredAny, Submission, VotePart, WEIGHT_ONE};

fn coins_json(coins: &[cosmos_sdk_proto::cosmos::base::v1beta1::Coin]) -> serde_json::Value {
    coins
        .iter()
        .map(|c| json!({"denom": c.denom, "amount": c.amount}))
        .collect()
}

/// Declaration of `MsgSubmitProposal`.
pub struct SubmitProposal;

impl MsgKind for SubmitProposal {
    type Proto = MsgSubmitProposal;
    const TYPE_URL: &'static str = "/cosmos.gov.v1.MsgSubmitProposal";

    fn signer(msg: &MsgSubmitProposal) -> TxResult<Address> {
        address_field(&msg.proposer, "proposer")
    }

    fn validate_basic(msg: &MsgSubmitProposal) -> TxResult<()> {
        if msg.title.trim().is_empty() {
            return Err(err(codes::BAD_FIELD, "a proposal needs a title"));
        }
        if msg.expedited {
            return Err(err(
                codes::BAD_FIELD,
                "expedited proposals are not supported: every proposal has the same voting period",
            ));
        }
        crate::deposit_amount(&msg.initial_deposit).map(|_| ())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgSubmitProposal,
    ) -> TxResult<()> {
        let id = crate::submit(
            state,
            ctx,
            Submission {
                proposer: address_field(&msg.proposer, "proposer")?,
                title: msg.title.clone(),
                summary: msg.summary.clone(),
                metadata: msg.metadata.clone(),
                messages: msg
                    .messages
                    .iter()
                    .map(|m| StoredAny {
                        type_url: m.type_url.clone(),
                        value: m.value.clone(),
                    })
                    .collect(),
                initial_deposit: crate::deposit_amount(&msg.initial_deposit)?,
            },
        )?;
        // Cosmos' event for the new id (clients read `proposal_id` from it).
        ctx.emit(kiln_framework::Event::new("submit_proposal").attr("proposal_id", id));
        Ok(())
    }

    fn describe(msg: &MsgSubmitProposal) -> serde_json::Value {
        json!({
            "@type": Self::TYPE_URL,
            "messages": msg.messages.iter().map(|m| json!({"@type": m.type_url})).collect::<Vec<_>>(),
            "initial_deposit": coins_json(&msg.initial_deposit),
            "proposer": msg.proposer,
            "metadata": msg.metadata,
            "title": msg.title,
            "summary": msg.summary,
        })
    }
}

/// Declaration of `MsgDeposit`.
pub struct Deposit;

impl MsgKind for Deposit {
    type Proto = MsgDeposit;
    const TYPE_URL: &'static str = "/cosmos.gov.v1.MsgDeposit";

    fn signer(msg: &MsgDeposit) -> TxResult<Address> {
        address_field(&msg.depositor, "depositor")
    }

    fn validate_basic(msg: &MsgDeposit) -> TxResult<()> {
        if crate::deposit_amount(&msg.amount)? == 0 {
            return Err(err(codes::BAD_FIELD, "the deposit must be positive"));
        }
        Ok(())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgDeposit,
    ) -> TxResult<()> {
        let depositor = address_field(&msg.depositor, "depositor")?;
        crate::deposit(
            state,
            ctx,
            msg.proposal_id,
            &depositor,
            crate::deposit_amount(&msg.amount)?,
        )
    }

    fn describe(msg: &MsgDeposit) -> serde_json::Value {
        json!({
            "@type": Self::TYPE_URL,
            "proposal_id": msg.proposal_id.to_string(),
            "depositor": msg.depositor,
            "amount": coins_json(&msg.amount),
        })
    }
}

/// Declaration of `MsgVote`.
pub struct Vote;

impl MsgKind for Vote {
    type Proto = MsgVote;
    const TYPE_URL: &'static str = "/cosmos.gov.v1.MsgVote";

    fn signer(msg: &MsgVote) -> TxResult<Address> {
        address_field(&msg.voter, "voter")
    }

    fn validate_basic(msg: &MsgVote) -> TxResult<()> {
        crate::check_vote_parts(&[VotePart {
            option: msg.option,
            weight: WEIGHT_ONE,
        }])
    }

    fn handle<S: StateWrite>(state: &mut S, ctx: &mut ExecCtx<'_>, msg: &MsgVote) -> TxResult<()> {
        let voter = address_field(&msg.voter, "voter")?;
        crate::vote(
            state,
            ctx,
            msg.proposal_id,
            &voter,
            vec![VotePart {
                option: msg.option,
                weight: WEIGHT_ONE,
            }],
            msg.metadata.clone(),
        )
    }

    fn describe(msg: &MsgVote) -> serde_json::Value {
        json!({
            "@type": Self::TYPE_URL,
            "proposal_id": msg.proposal_id.to_string(),
            "voter": msg.voter,
            "option": option::name(msg.option),
            "metadata": msg.metadata,
        })
    }
}

fn weighted_parts(msg: &MsgVoteWeighted) -> TxResult<Vec<VotePart>> {
    let parts = msg
        .options
        .iter()
        .map(|o| {
            Ok(VotePart {
                option: o.option,
                weight: parse_weight(&o.weight).map_err(|e| err(codes::BAD_FIELD, e))?,
            })
        })
        .collect::<TxResult<Vec<_>>>()?;
    crate::check_vote_parts(&parts)?;
    Ok(parts)
}

/// Declaration of `MsgVoteWeighted`.
pub struct VoteWeighted;

impl MsgKind for VoteWeighted {
    type Proto = MsgVoteWeighted;
    const TYPE_URL: &'static str = "/cosmos.gov.v1.MsgVoteWeighted";

    fn signer(msg: &MsgVoteWeighted) -> TxResult<Address> {
        address_field(&msg.voter, "voter")
    }

    fn validate_basic(msg: &MsgVoteWeighted) -> TxResult<()> {
        weighted_parts(msg).map(|_| ())
    }

    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &MsgVoteWeighted,
    ) -> TxResult<()> {
        let voter = address_field(&msg.voter, "voter")?;
        let parts = weighted_parts(msg)?;
        crate::vote(
            state,
            ctx,
            msg.proposal_id,
            &voter,
            parts,
            msg.metadata.clone(),
        )
    }

    fn describe(msg: &MsgVoteWeighted) -> serde_json::Value {
        json!({
            "@type": Self::TYPE_URL,
            "proposal_id": msg.proposal_id.to_string(),
            "voter": msg.voter,
            "options": msg.options.iter().map(|o| json!({"option": option::name(o.option), "weight": o.weight})).collect::<Vec<_>>(),
            "metadata": msg.metadata,
        })
    }
}
