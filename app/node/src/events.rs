//! Event bus (NewBlock / Tx) and CometBFT query matching.

use std::collections::BTreeMap;

use tendermint_proto::v0_38::abci::{Event, ExecTxResult};
use tendermint_rpc::query::{Operand, Operation, Query};

/// One published event, ready for websocket subscribers.
#[derive(Debug, Clone)]
pub struct BusEvent {
    /// `NewBlock` or `Tx`.
    pub kind: &'static str,
    /// `{"type":"tendermint/event/..","value":{..}}`
    pub data: serde_json::Value,
    /// Composite-key → values map (`tm.event`, `tx.hash`, `message.sender`, ...).
    pub events: BTreeMap<String, Vec<String>>,
    pub height: u64,
    /// Tx events only.
    pub tx_hash: Option<[u8; 32]>,
    pub tx_result: Option<ExecTxResult>,
}

/// Add `type.key` → value for each attribute of `evs`.
pub fn flatten_events(evs: &[Event], out: &mut BTreeMap<String, Vec<String>>) {
    for ev in evs {
        for a in &ev.attributes {
            out.entry(format!("{}.{}", ev.r#type, a.key))
                .or_default()
                .push(a.value.clone());
        }
    }
}

fn operand_str(o: &Operand) -> String {
    match o {
        Operand::String(s) => s.clone(),
        Operand::Signed(i) => i.to_string(),
        Operand::Unsigned(u) => u.to_string(),
        Operand::Float(f) => f.to_string(),
        other => other.to_string().trim_matches('\'').to_string(),
    }
}

fn operand_num(o: &Operand) -> Option<f64> {
    match o {
        Operand::Signed(i) => Some(*i as f64),
        Operand::Unsigned(u) => Some(*u as f64),
        Operand::Float(f) => Some(*f),
        Operand::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Does one value satisfy an operation?
pub fn value_matches(op: &Operation, value: &str) -> bool {
    let num =
        |o: &Operand, f: fn(f64, f64) -> bool| match (value.parse::<f64>().ok(), operand_num(o)) {
            (Some(v), Some(x)) => f(v, x),
            _ => false,
        };
    match op {
        Operation::Eq(o) => match o {
            Operand::String(s) => value == s,
            _ => num(o, |v, x| v == x) || value == operand_str(o),
        },
        Operation::Lt(o) => num(o, |v, x| v < x),
        Operation::Lte(o) => num(o, |v, x| v <= x),
        Operation::Gt(o) => num(o, |v, x| v > x),
        Operation::Gte(o) => num(o, |v, x| v >= x),
        Operation::Contains(s) => value.contains(s.as_str()),
        Operation::Exists => true,
    }
}

/// Does an event (its composite-key map, which includes `tm.event`) match the query?
pub fn query_matches(q: &Query, events: &BTreeMap<String, Vec<String>>) -> bool {
    if let Some(et) = &q.event_type {
        let want = et.to_string();
        if !events
            .get("tm.event")
            .map(|v| v.contains(&want))
            .unwrap_or(false)
        {
            return false;
        }
    }
    q.conditions.iter().all(|c| {
        events
            .get(&c.key)
            .map(|vals| vals.iter().any(|v| value_matches(&c.operation, v)))
            .unwrap_or(false)
    })
}

/// Parse a CometBFT query string.
pub fn parse_query(s: &str) -> Result<Query, String> {
    s.parse::<Query>()
        .map_err(|e| format!("failed to parse query: {e}"))
}
