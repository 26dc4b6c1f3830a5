//! Messages: builders for the bank and authz messages the clients send
//! (`MsgSend`, the ML-ops `MsgGrant`/`MsgRevoke` set, `MsgExec`), the JSON
//! message list of `kiln tx authz exec`, expirations, and a Cosmos-style JSON
//! description of any known message. Host registry messages are in
//! [`crate::host`].

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use cosmos_sdk_proto::cosmos::authz::v1beta1::{
    GenericAuthorization, Grant, MsgExec, MsgGrant, MsgRevoke,
};
use cosmos_sdk_proto::cosmos::bank::v1beta1::MsgSend;
use cosmos_sdk_proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmos_sdk_proto::{Any, Timestamp};
use prost::Message;
use serde_json::{json, Value};

use crate::amount::Coin;
use crate::keyring;
use crate::sign::proto_coins;

pub const MSG_SEND_URL: &str = "/cosmos.bank.v1beta1.MsgSend";
pub const MSG_GRANT_URL: &str = "/cosmos.authz.v1beta1.MsgGrant";
pub const MSG_REVOKE_URL: &str = "/cosmos.authz.v1beta1.MsgRevoke";
pub const MSG_EXEC_URL: &str = "/cosmos.authz.v1beta1.MsgExec";
pub const GENERIC_AUTHORIZATION_URL: &str = "/cosmos.authz.v1beta1.GenericAuthorization";

pub fn any_of<M: Message>(type_url: &str, m: &M) -> Any {
    Any {
        type_url: type_url.to_string(),
        value: m.encode_to_vec(),
    }
}

/// Checks a `kiln1…` address, with a message naming the argument.
pub fn check_address(what: &str, addr: &str) -> Result<()> {
    keyring::parse_address(addr).map_err(|e| anyhow!("{what}: {e}"))?;
    Ok(())
}

/// `/cosmos.bank.v1beta1.MsgSend`.
pub fn msg_send(from: &str, to: &str, amount: &[Coin]) -> Any {
    any_of(
        MSG_SEND_URL,
        &MsgSend {
            from_address: from.into(),
            to_address: to.into(),
            amount: proto_coins(amount),
        },
    )
}

/// `/cosmos.authz.v1beta1.MsgGrant` of a `GenericAuthorization` for `msg_type_url`.
pub fn msg_grant(
    granter: &str,
    grantee: &str,
    msg_type_url: &str,
    expiration: Option<Timestamp>,
) -> Any {
    let auth = any_of(
        GENERIC_AUTHORIZATION_URL,
        &GenericAuthorization {
            msg: msg_type_url.to_string(),
        },
    );
    any_of(
        MSG_GRANT_URL,
        &MsgGrant {
            granter: granter.into(),
            grantee: grantee.into(),
            grant: Some(Grant {
                authorization: Some(auth),
                expiration,
            }),
        },
    )
}

/// `/cosmos.authz.v1beta1.MsgRevoke` of the grant for `msg_type_url`.
pub fn msg_revoke(granter: &str, grantee: &str, msg_type_url: &str) -> Any {
    any_of(
        MSG_REVOKE_URL,
        &MsgRevoke {
            granter: granter.into(),
            grantee: grantee.into(),
            msg_type_url: msg_type_url.to_string(),
        },
    )
}

/// One `MsgGrant` with a `GenericAuthorization` per ML-ops type URL.
pub fn msgs_grant_ml_ops(granter: &str, grantee: &str, expiration: Option<Timestamp>) -> Vec<Any> {
    kiln_messages::ml_ops_type_urls()
        .iter()
        .map(|url| msg_grant(granter, grantee, url, expiration))
        .collect()
}

/// One `MsgRevoke` per ML-ops type URL.
pub fn msgs_revoke_ml_ops(granter: &str, grantee: &str) -> Vec<Any> {
    kiln_messages::ml_ops_type_urls()
        .iter()
        .map(|url| msg_revoke(granter, grantee, url))
        .collect()
}

/// `/cosmos.authz.v1beta1.MsgExec` wrapping `msgs`.
pub fn msg_exec(grantee: &str, msgs: Vec<Any>) -> Any {
    any_of(
        MSG_EXEC_URL,
        &MsgExec {
            grantee: grantee.into(),
            msgs,
        },
    )
}

/// Parses the messages of `kiln tx authz exec MSGS.json`: a JSON list (or an
/// object with a `messages` list, or a single message object) of
/// `{"@type":"/cosmos.bank.v1beta1.MsgSend","from_address":…,"to_address":…,"amount":[{"denom":…,"amount":…}]}`
/// or `{"@type": URL, "value_base64": "<protobuf bytes>"}`.
pub fn parse_exec_messages(json_text: &str) -> Result<Vec<Any>> {
    let v: Value = serde_json::from_str(json_text).context("messages file is not valid JSON")?;
    let list = match &v {
        Value::Array(a) => a.clone(),
        Value::Object(o) if o.contains_key("messages") => o["messages"]
            .as_array()
            .cloned()
            .ok_or_else(|| anyhow!("`messages` must be a list"))?,
        Value::Object(_) => vec![v.clone()],
        _ => bail!("expected a JSON list of messages"),
    };
    if list.is_empty() {
        bail!("the messages list is empty");
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| parse_json_message(m).with_context(|| format!("message #{}", i + 1)))
        .collect()
}

fn parse_json_message(m: &Value) -> Result<Any> {
    let obj = m
        .as_object()
        .ok_or_else(|| anyhow!("a message must be a JSON object"))?;
    let type_url = obj
        .get("@type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| anyhow!("missing \"@type\" (e.g. \"{MSG_SEND_URL}\")"))?;
    if !type_url.starts_with('/') {
        bail!("\"@type\" must start with '/', got '{type_url}'");
    }
    if let Some(b64) = obj.get("value_base64") {
        let b64 = b64
            .as_str()
            .ok_or_else(|| anyhow!("\"value_base64\" must be a string"))?;
        let value = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .context("\"value_base64\" is not valid base64")?;
        return Ok(Any {
            type_url: type_url.into(),
            value,
        });
    }
    match type_url {
        MSG_SEND_URL => {
            let s = |k: &str| -> Result<String> {
                obj.get(k).and_then(|v| v.as_str()).map(String::from).ok_or_else(|| anyhow!("missing \"{k}\""))
            };
            let from = s("from_address")?;
            let to = s("to_address")?;
            check_address("from_address", &from)?;
            check_address("to_address", &to)?;
            let amount = obj
                .get("amount")
                .and_then(|a| a.as_array())
                .ok_or_else(|| anyhow!("missing \"amount\" list"))?;
            let mut coins = vec![];
            for c in amount {
                let denom = c["denom"].as_str().ok_or_else(|| anyhow!("coin without \"denom\""))?;
                let amt = match &c["amount"] {
                    Value::String(s) => s.parse::<u128>().ok(),
                    Value::Number(n) => n.as_u64().map(u128::from),
                    _ => None,
                }
                .ok_or_else(|| anyhow!("coin amount must be a non-negative integer"))?;
                if !crate::amount::validate_denom(denom) {
                    bail!("invalid denom '{denom}'");
                }
                coins.push(Coin { denom: denom.into(), amount: amt });
            }
            Ok(msg_send(&from, &to, &coins))
        }
        other => bail!(
            "no JSON form known for '{other}': give its protobuf encoding as {{\"@type\": \"{other}\", \"value_base64\": \"…\"}}"
        ),
    }
}

pub fn coins_json(coins: &[ProtoCoin]) -> Value {
    Value::Array(
        coins
            .iter()
            .map(|c| json!({"denom": c.denom, "amount": c.amount}))
            .collect(),
    )
}

pub fn timestamp_rfc3339(ts: &Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts.seconds)
        .ok()
        .and_then(|t| t.replace_nanosecond(ts.nanos.max(0) as u32).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{}s", ts.seconds))
}

/// Cosmos-style JSON of a message for wallets, derived from the chain's
/// message list (each message's own declaration; `MsgExec` with its inner
/// messages; anything unknown as type URL and base64).
pub use kiln_messages::describe_any;

/// Parses `--expiration`: RFC 3339 (`2026-01-31T00:00:00Z`), relative
/// (`+30d`, `+12h`, `+90m`, `+3600s`, `+2w`) or `never`.
pub fn parse_expiration(s: &str, now_unix: i64) -> Result<Option<Timestamp>> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("never") || s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let ts = if let Some(rel) = s.strip_prefix('+') {
        let (num, unit) =
            rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let n: i64 = num
            .parse()
            .map_err(|_| anyhow!("invalid relative expiration '{s}' (e.g. +30d)"))?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" | "" => 86_400,
            "w" => 7 * 86_400,
            _ => bail!("invalid unit in expiration '{s}': use s, m, h, d or w"),
        };
        let secs = n
            .checked_mul(mult)
            .and_then(|d| d.checked_add(now_unix))
            .ok_or_else(|| anyhow!("expiration '{s}' is too far away"))?;
        Timestamp {
            seconds: secs,
            nanos: 0,
        }
    } else {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| anyhow!("invalid expiration '{s}': {e} (use RFC 3339 like 2026-12-31T00:00:00Z, or +30d)"))?;
        Timestamp {
            seconds: t.unix_timestamp(),
            nanos: t.nanosecond() as i32,
        }
    };
    if ts.seconds <= now_unix {
        bail!("expiration '{s}' is in the past");
    }
    Ok(Some(ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_and_revoke_cover_exactly_the_ml_ops_urls() {
        let g = keyring::bech32_encode("kiln", &[1u8; 20]);
        let h = keyring::bech32_encode("kiln", &[2u8; 20]);
        let exp = Timestamp {
            seconds: 2_000_000_000,
            nanos: 0,
        };
        let grants = msgs_grant_ml_ops(&g, &h, Some(exp));
        assert_eq!(grants.len(), kiln_messages::ml_ops_type_urls().len());
        for (any, url) in grants.iter().zip(kiln_messages::ml_ops_type_urls()) {
            assert_eq!(any.type_url, MSG_GRANT_URL);
            let m = MsgGrant::decode(any.value.as_slice()).unwrap();
            assert_eq!(
                (m.granter.as_str(), m.grantee.as_str()),
                (g.as_str(), h.as_str())
            );
            let grant = m.grant.unwrap();
            assert_eq!(grant.expiration, Some(exp));
            let a = grant.authorization.unwrap();
            assert_eq!(a.type_url, GENERIC_AUTHORIZATION_URL);
            assert_eq!(
                GenericAuthorization::decode(a.value.as_slice())
                    .unwrap()
                    .msg,
                *url
            );
        }
        let revokes = msgs_revoke_ml_ops(&g, &h);
        let urls: Vec<String> = revokes
            .iter()
            .map(|a| MsgRevoke::decode(a.value.as_slice()).unwrap().msg_type_url)
            .collect();
        assert_eq!(urls, kiln_messages::ml_ops_type_urls());
        assert!(!urls.iter().any(|u| u.contains("bank")));
    }

    #[test]
    fn exec_messages_json() {
        let a = keyring::bech32_encode("kiln", &[1u8; 20]);
        let b = keyring::bech32_encode("kiln", &[2u8; 20]);
        let text = format!(
            r#"[{{"@type":"/cosmos.bank.v1beta1.MsgSend","from_address":"{a}","to_address":"{b}","amount":[{{"denom":"ukiln","amount":"5"}}]}},
               {{"@type":"/kiln.sprint.v1.MsgSprintCommit","value_base64":"CgE="}}]"#
        );
        let msgs = parse_exec_messages(&text).unwrap();
        assert_eq!(msgs.len(), 2);
        let send = MsgSend::decode(msgs[0].value.as_slice()).unwrap();
        assert_eq!(send.to_address, b);
        assert_eq!(msgs[1].type_url, "/kiln.sprint.v1.MsgSprintCommit");
        assert_eq!(msgs[1].value, vec![0x0a, 0x01]);
        let exec = msg_exec(&b, msgs);
        let d = describe_any(&exec);
        assert_eq!(d["msgs"][0]["amount"][0]["amount"], "5");
        assert_eq!(d["msgs"][1]["value_base64"], "CgE=");

        assert!(parse_exec_messages("[]").is_err());
        assert!(parse_exec_messages("nope").is_err());
        assert!(parse_exec_messages(r#"[{"@type":"/x.Y"}]"#)
            .unwrap_err()
            .to_string()
            .contains("message #1"));
        let bad_addr = format!(
            r#"[{{"@type":"/cosmos.bank.v1beta1.MsgSend","from_address":"cosmos1xyz","to_address":"{b}","amount":[]}}]"#
        );
        assert!(parse_exec_messages(&bad_addr).is_err());
    }

    #[test]
    fn expirations() {
        let now = 1_700_000_000;
        assert_eq!(
            parse_expiration("+30d", now).unwrap().unwrap().seconds,
            now + 30 * 86_400
        );
        assert_eq!(
            parse_expiration("+2h", now).unwrap().unwrap().seconds,
            now + 7200
        );
        assert_eq!(parse_expiration("never", now).unwrap(), None);
        let t = parse_expiration("2030-01-01T00:00:00Z", now)
            .unwrap()
            .unwrap();
        assert_eq!(t.seconds, 1_893_456_000);
        assert_eq!(timestamp_rfc3339(&t), "2030-01-01T00:00:00Z");
        assert!(parse_expiration("2020-01-01T00:00:00Z", now).is_err());
        assert!(parse_expiration("+3x", now).is_err());
        assert!(parse_expiration("tomorrow", now).is_err());
    }
}
