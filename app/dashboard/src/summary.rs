//! One summary of the chain for the dashboard page, read over the node's
//! RPC with the same queries as `kiln query` (so the page and the CLI can
//! never disagree), plus the history the plots need: per settled epoch the
//! hosts' effective weights and inferences served (settled epochs never
//! change, so each is read once), and each model's price per block seen.

use std::collections::{BTreeMap, VecDeque};

use anyhow::Result;
use kiln_client::rpc::{json_str, json_u64, RpcClient};
use serde_json::{json, Value};

/// Settled epochs the weight plot shows.
const EPOCHS_PLOTTED: u64 = 20;
/// Price samples kept (one per block seen, per model).
const PRICE_SAMPLES: usize = 600;
/// Blocks over which the block time is averaged.
const BLOCK_TIMES: usize = 20;

/// What the page learned from earlier summaries.
#[derive(Default)]
pub struct History {
    /// Settled epoch -> its leaderboard rows.
    boards: BTreeMap<u64, Value>,
    /// (height, model, price in pkiln per token).
    prices: VecDeque<(u64, String, u64)>,
    /// (height, block time as RFC 3339) of the blocks seen, newest last.
    blocks: VecDeque<(u64, String)>,
}

/// Reads summaries of one node.
pub struct SummaryBuilder {
    node_url: String,
    rpc: RpcClient,
    history: History,
    /// The last full summary (what [`SummaryBuilder::head`] moves on).
    last: Option<Value>,
}

/// The summary shown while the node cannot be read.
pub fn waiting(node_url: &str, why: &str) -> Value {
    json!({"node": node_url, "ok": false, "error": why})
}

impl SummaryBuilder {
    pub fn new(node_url: &str) -> Self {
        SummaryBuilder {
            node_url: node_url.to_string(),
            rpc: RpcClient::new(node_url),
            history: History::default(),
            last: None,
        }
    }

    /// The node's `status` (a cheap poll; [`SummaryBuilder::build`] and
    /// [`SummaryBuilder::head`] start from it, so one poll reads it once).
    pub fn status(&self) -> Result<Value> {
        self.rpc.status()
    }

    /// The latest height in a `status` answer.
    pub fn height_of(status: &Value) -> Option<u64> {
        json_u64(&status["sync_info"]["latest_block_height"])
    }

    /// The whole summary at the height of `status`; a failed read becomes
    /// `{"ok": false, "error"}`.
    pub fn build(&mut self, status: Result<Value>) -> Value {
        match status.and_then(|status| self.read(status)) {
            Ok(v) => {
                self.last = Some(v.clone());
                v
            }
            Err(e) => {
                self.last = None;
                waiting(&self.node_url, &format!("{e:#}"))
            }
        }
    }

    /// The last full summary moved on to the node's newest block (height,
    /// time, block times) without re-reading the state: one status call per
    /// block, so the page follows a fast chain without loading it. The
    /// state fields stay those of `state_height`. `None` before a full
    /// summary, or when the node does not answer.
    pub fn head(&mut self, status: &Value) -> Option<Value> {
        let sync = &status["sync_info"];
        let height = json_u64(&sync["latest_block_height"])?;
        let time = json_str(&sync["latest_block_time"]);
        self.record_block(height, &time);
        let mut v = self.last.clone()?;
        v["height"] = json!(height);
        v["time"] = json!(time);
        v["catching_up"] = sync["catching_up"].clone();
        v["block_times"] = self.block_times();
        Some(v)
    }

    fn record_block(&mut self, height: u64, time: &str) {
        if self.history.blocks.back().map(|(h, _)| *h) != Some(height) {
            self.history.blocks.push_back((height, time.to_string()));
            while self.history.blocks.len() > BLOCK_TIMES {
                self.history.blocks.pop_front();
            }
        }
    }

    fn block_times(&self) -> Value {
        json!(self
            .history
            .blocks
            .iter()
            .map(|(h, t)| json!([h, t]))
            .collect::<Vec<_>>())
    }

    fn read(&mut self, status: Value) -> Result<Value> {
        let rpc = &self.rpc;
        let sync = &status["sync_info"];
        let status_height = json_u64(&sync["latest_block_height"]).unwrap_or(0);
        // CometBFT stores a block before the app has committed it, so for a
        // moment its status names a height the app cannot answer queries at
        // ("height is in the future"): read at the app's own last committed
        // height (abci_info), never above the status's.
        let app_height = rpc
            .call("abci_info", json!({}))
            .ok()
            .and_then(|v| json_u64(&v["response"]["last_block_height"]))
            .filter(|h| *h > 0);
        let height = app_height.map_or(status_height, |h| h.min(status_height));
        // Every query reads the same height, so the page is one consistent view.
        let epoch = kiln_client::query::epoch(rpc, height)?;
        let weights = kiln_client::query::weights(rpc, height)?;
        let board = kiln_client::staking::leaderboard(rpc, None, height).ok();
        // Epoch 0 is "nothing settled yet": no board to show or plot.
        let settled = board
            .as_ref()
            .and_then(|b| json_u64(&b["epoch"]))
            .filter(|e| *e > 0);
        if let (Some(e), Some(b)) = (settled, &board) {
            self.history.boards.entry(e).or_insert_with(|| b.clone());
        }
        if let Some(last) = settled {
            for e in last.saturating_sub(EPOCHS_PLOTTED - 1).max(1)..=last {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    self.history.boards.entry(e)
                {
                    if let Ok(b) = kiln_client::staking::leaderboard(rpc, Some(e), height) {
                        slot.insert(b);
                    }
                }
            }
            while self.history.boards.len() as u64 > EPOCHS_PLOTTED {
                self.history.boards.pop_first();
            }
        }
        let prices = kiln_client::query::prices(rpc, height)?;
        for p in &prices {
            let model = json_str(&p["model"]);
            let price = json_u64(&p["price_pkiln"]).unwrap_or(0);
            let seen = self
                .history
                .prices
                .iter()
                .any(|(h, m, _)| *h == height && *m == model);
            if !seen {
                self.history.prices.push_back((height, model, price));
            }
        }
        while self.history.prices.len() > PRICE_SAMPLES {
            self.history.prices.pop_front();
        }
        let time = json_str(&sync["latest_block_time"]);
        let proposals = kiln_client::gov::proposals(rpc, None, height)?;
        self.record_block(height, &time);
        let open: Vec<Value> = proposals
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| {
                        matches!(
                            p["status"].as_str(),
                            Some("deposit_period" | "voting_period")
                        )
                    })
                    .map(|p| {
                        json!({
                            "id": p["id"], "title": p["title"], "status": p["status"],
                            "voting_end_height": p["voting_end_height"],
                            "deposit_end_height": p["deposit_end_height"],
                            "total_deposit": p["total_deposit"],
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(json!({
            "ok": true,
            "node": self.node_url,
            "chain_id": status["node_info"]["network"],
            "moniker": status["node_info"]["moniker"],
            "height": height,
            // The height every state field below was read at.
            "state_height": height,
            "time": time,
            "catching_up": sync["catching_up"],
            "block_times": self.block_times(),
            "epoch": epoch,
            "hosts": hosts(&weights, board.as_ref()),
            "settled_epoch": settled,
            "weight_history": self.weight_history(),
            "prices": prices,
            "price_history": self.history.prices.iter()
                .map(|(h, m, p)| json!({"height": h, "model": m, "price_pkiln": p}))
                .collect::<Vec<_>>(),
            "proposals": open,
        }))
    }

    /// Per settled epoch: each host's effective weight and the inferences
    /// the network served.
    fn weight_history(&self) -> Value {
        let epochs: Vec<u64> = self.history.boards.keys().copied().collect();
        let mut per_host: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut served = Vec::new();
        for (i, board) in self.history.boards.values().enumerate() {
            let rows = board["hosts"].as_array().cloned().unwrap_or_default();
            let mut total = 0u64;
            for r in &rows {
                let host = json_str(&r["host"]);
                let w = json_u64(&r["effective_weight"]).unwrap_or(0);
                total = total.saturating_add(json_u64(&r["inferences_served"]).unwrap_or(0));
                per_host
                    .entry(host)
                    .or_insert_with(|| vec![0; epochs.len()])[i] = w;
            }
            served.push(total);
        }
        json!({"epochs": epochs, "hosts": per_host, "inferences_served": served})
    }
}

/// The host table: weights in force (as `kiln query weights`), joined with
/// the last settled epoch's board (verdict, reward, inferences, reputation).
fn hosts(weights: &[Value], board: Option<&Value>) -> Vec<Value> {
    // Epoch 0 is "nothing settled yet": no verdicts to join.
    let board = board.filter(|b| json_u64(&b["epoch"]).is_some_and(|e| e > 0));
    let rows: BTreeMap<String, &Value> = board
        .and_then(|b| b["hosts"].as_array())
        .map(|rs| rs.iter().map(|r| (json_str(&r["host"]), r)).collect())
        .unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    let mut listed = std::collections::BTreeSet::new();
    for w in weights {
        let host = json_str(&w["host"]);
        listed.insert(host.clone());
        out.push(host_row(&host, Some(w), rows.get(&host).copied()));
    }
    // Hosts registered but without weight in force still appear (weight 0).
    for (host, r) in &rows {
        if !listed.contains(host) {
            out.push(host_row(host, None, Some(r)));
        }
    }
    out
}

fn host_row(host: &str, weight: Option<&Value>, board: Option<&Value>) -> Value {
    let w = |k: &str| weight.and_then(|w| json_u64(&w[k])).unwrap_or(0);
    let b = |k: &str| board.map(|b| b[k].clone()).unwrap_or(Value::Null);
    json!({
        "host": host,
        "weight": w("weight"),
        "share_bps": w("share_bps"),
        "consensus_power": w("consensus_power"),
        "reputation": b("reputation"),
        "reward": b("reward"),
        "lifetime_rewards": b("lifetime_rewards"),
        "inferences_served": b("inferences_served"),
        "lifetime_inferences": b("lifetime_inferences"),
        "accepted": b("accepted"),
        "raw_weight": b("raw_weight"),
        "effective_weight": b("effective_weight"),
        "jailed": b("jailed"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_table_joins_weights_in_force_with_the_last_board() {
        let weights = vec![
            json!({"host": "kiln1a", "weight": 30, "share_bps": 7500, "consensus_power": 30}),
            json!({"host": "kiln1b", "weight": 10, "share_bps": 2500, "consensus_power": 10}),
        ];
        let board = json!({"epoch": 4, "hosts": [
            {"host": "kiln1a", "accepted": true, "raw_weight": 31, "effective_weight": 30, "reward": "900", "lifetime_rewards": "2000", "inferences_served": 3, "lifetime_inferences": 9, "reputation": 100, "jailed": false},
            {"host": "kiln1c", "accepted": false, "raw_weight": 0, "effective_weight": 0, "reward": "0", "lifetime_rewards": "0", "inferences_served": 0, "lifetime_inferences": 0, "reputation": 0, "jailed": false},
        ]});
        let rows = hosts(&weights, Some(&board));
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0]["weight"], 30);
        assert_eq!(rows[0]["reward"], "900");
        assert_eq!(rows[0]["accepted"], true);
        assert_eq!(rows[1]["host"], "kiln1b");
        assert_eq!(
            rows[1]["reward"],
            Value::Null,
            "no board row: unknown, not zero"
        );
        assert_eq!(rows[2]["host"], "kiln1c");
        assert_eq!(rows[2]["weight"], 0);
        assert_eq!(rows[2]["accepted"], false);
    }

    #[test]
    fn before_the_first_settle_no_verdict_is_shown() {
        let weights = vec![
            json!({"host": "kiln1a", "weight": 10, "share_bps": 10000, "consensus_power": 10}),
        ];
        let board =
            json!({"epoch": 0, "hosts": [{"host": "kiln1a", "accepted": false, "reputation": 0}]});
        let rows = hosts(&weights, Some(&board));
        assert_eq!(rows[0]["weight"], 10);
        assert_eq!(rows[0]["accepted"], Value::Null, "{rows:?}");
    }

    #[test]
    fn the_weight_plot_has_one_point_per_settled_epoch_per_host() {
        let mut b = SummaryBuilder::new("http://127.0.0.1:1");
        b.history.boards.insert(
            1,
            json!({"hosts": [{"host": "kiln1a", "effective_weight": 5, "inferences_served": 1}]}),
        );
        b.history.boards.insert(
            2,
            json!({"hosts": [
                {"host": "kiln1a", "effective_weight": 7, "inferences_served": 2},
                {"host": "kiln1b", "effective_weight": 3, "inferences_served": 4}]}),
        );
        let h = b.weight_history();
        assert_eq!(h["epochs"], json!([1, 2]));
        assert_eq!(h["hosts"]["kiln1a"], json!([5, 7]));
        assert_eq!(h["hosts"]["kiln1b"], json!([0, 3]), "absent in epoch 1: 0");
        assert_eq!(h["inferences_served"], json!([1, 6]));
    }

    #[test]
    fn an_unreachable_node_is_a_summary_with_its_error() {
        let mut b = SummaryBuilder::new("http://127.0.0.1:1");
        let status = b.status();
        let s = b.build(status);
        assert_eq!(s["ok"], false);
        assert!(!json_str(&s["error"]).is_empty(), "{s}");
    }
}
