//! A loopback network of `kilnd` + the real CometBFT, built and driven by
//! `scripts/testnet.sh` exactly as an operator runs it (the tests exercise
//! the script too), with JSON-RPC helpers to watch it.

// A test harness, not consensus code: it waits on the wall clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods, dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("app/ is inside the workspace")
        .to_path_buf()
}

/// The CometBFT binary `scripts/setup.sh` installs, when present.
pub fn cometbft() -> Option<PathBuf> {
    let p = std::env::var_os("KILN_COMETBFT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".bin/cometbft"));
    p.exists().then_some(p)
}

/// A port base with `nodes * 10` free ports above it (each node uses
/// base+10*i … base+10*i+3).
fn free_port_base(nodes: u16) -> u16 {
    let seed = std::process::id() as u16;
    for attempt in 0..200u16 {
        // Below Linux's ephemeral range (32768 and up): a port picked there
        // can be taken meanwhile by an outgoing connection (e.g. CometBFT's
        // to its own kilnd).
        let base = 20_000 + (seed.wrapping_mul(37).wrapping_add(attempt * 97) % 1200) * 10;
        let all_free = (0..nodes * 10).all(|o| TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no free range of ports for the testnet");
}

pub struct Testnet {
    pub dir: tempfile::TempDir,
    pub port_base: u16,
    workers: bool,
    block_time: &'static str,
    /// More `scripts/testnet.sh` environment (set after, so overriding, the
    /// defaults above).
    env: Vec<(String, String)>,
}

impl Testnet {
    /// `scripts/testnet.sh up <validators>`; room is reserved for `extra`
    /// nodes joining later.
    pub fn up(validators: u16, extra: u16, workers: bool, block_time: &'static str) -> Testnet {
        Testnet::up_with_env(validators, extra, workers, block_time, Vec::new())
    }

    /// [`Testnet::up`] with more script environment, e.g.
    /// `KILN_TESTNET_GENESIS_ACCOUNTS`.
    pub fn up_with_env(
        validators: u16,
        extra: u16,
        workers: bool,
        block_time: &'static str,
        env: Vec<(String, String)>,
    ) -> Testnet {
        let net = Testnet {
            dir: tempfile::tempdir().unwrap(),
            port_base: free_port_base(validators + extra),
            workers,
            block_time,
            env,
        };
        let out = net.script(&["up", &validators.to_string()]);
        assert!(
            out.status.success(),
            "testnet.sh up failed:\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            net.logs()
        );
        net
    }

    /// Runs `scripts/testnet.sh ARGS` against this network.
    pub fn script(&self, args: &[&str]) -> Output {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_kilnd")).parent().unwrap();
        for b in ["kiln", "kiln-mlworker"] {
            assert!(
                bin_dir.join(b).exists(),
                "{} is missing: build the workspace's binaries first (make test does)",
                bin_dir.join(b).display()
            );
        }
        Command::new(workspace_root().join("scripts/testnet.sh"))
            .args(args)
            .env("KILN_BIN_DIR", bin_dir)
            .env("KILN_TESTNET_DIR", self.dir.path())
            .env("KILN_TESTNET_PORT_BASE", self.port_base.to_string())
            .env("KILN_TESTNET_BLOCK_TIME", self.block_time)
            .env("KILN_TESTNET_WORKERS", if self.workers { "1" } else { "0" })
            .env("KILN_TESTNET_SNAPSHOT_INTERVAL", "10")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    pub fn run(&self, args: &[&str]) {
        let out = self.script(args);
        assert!(
            out.status.success(),
            "testnet.sh {args:?} failed:\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
    }

    pub fn home(&self, node: u16) -> PathBuf {
        self.dir.path().join(format!("node{node}"))
    }

    pub fn rpc(&self, node: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port_base + 10 * node + 1))
    }

    pub fn rpc_url(&self, node: u16) -> String {
        format!("http://{}", self.rpc(node))
    }

    /// The tail of every node's logs, for a failure message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for node in 0..10 {
            let home = self.home(node);
            if !home.exists() {
                break;
            }
            for what in ["kilnd", "cometbft", "worker"] {
                let log =
                    std::fs::read_to_string(home.join(format!("{what}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                text.push_str(&format!("--- node{node} {what}.log (tail) ---\n"));
                for line in tail.iter().rev() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        text
    }

    pub fn get(&self, node: u16, path: &str) -> Option<Value> {
        http_get(self.rpc(node), path)
    }

    pub fn height(&self, node: u16) -> Option<u64> {
        self.get(node, "/status")?["result"]["sync_info"]["latest_block_height"]
            .as_str()?
            .parse()
            .ok()
    }

    /// The app hash in block `height`'s header (the state after `height - 1`).
    pub fn app_hash_in_block(&self, node: u16, height: u64) -> Option<String> {
        Some(
            self.get(node, &format!("/block?height={height}"))?["result"]["block"]["header"]
                ["app_hash"]
                .as_str()?
                .to_string(),
        )
    }

    /// The heights in `from..=to` whose `/block_results` `node` does not
    /// serve, with CometBFT's error. CometBFT stores a block (and `/status`
    /// reports its height) before it executes it and saves the results, so
    /// the tip's results can be briefly missing: ask only for heights below
    /// the node's tip.
    pub fn missing_block_results(&self, node: u16, from: u64, to: u64) -> Vec<(u64, String)> {
        (from..=to)
            .filter_map(|h| {
                let answer = self.get(node, &format!("/block_results?height={h}"));
                match answer {
                    Some(v) if v["result"]["height"].as_str() == Some(&h.to_string()) => None,
                    Some(v) => Some((h, v["error"]["data"].to_string())),
                    None => Some((h, "no answer".into())),
                }
            })
            .collect()
    }

    /// Waits until `node` is at `height` or above; returns its height.
    pub fn wait_height(&self, node: u16, height: u64, within: Duration) -> u64 {
        let start = Instant::now();
        loop {
            if let Some(h) = self.height(node) {
                if h >= height {
                    return h;
                }
            }
            assert!(
                start.elapsed() < within,
                "node{node} did not reach height {height} within {within:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `kiln ARGS --node <node's RPC> --home <node's home>`, JSON output.
    pub fn kiln(&self, node: u16, args: &[&str]) -> Value {
        let bin = Path::new(env!("CARGO_BIN_EXE_kilnd"))
            .parent()
            .unwrap()
            .join("kiln");
        let out = Command::new(bin)
            .args(args)
            .args(["--node", &self.rpc_url(node), "--output", "json"])
            .arg("--home")
            .arg(self.home(node))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kiln {args:?} on node{node}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "kiln {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    pub fn operator_address(&self, node: u16) -> String {
        self.kiln(
            node,
            &["keys", "show", "operator", "--keyring-backend", "test"],
        )["address"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let _ = self.script(&["down"]);
    }
}

/// Makes the node at `home` a genesis host through the ceremony's own
/// commands: a test-keyring account `operator` signs a gentx with the
/// node's consensus key, and `collect-gentxs` writes it into genesis (a
/// genesis without a weighted host is refused: the chain would have no
/// validator it tracks).
pub fn add_genesis_host(home: &Path) {
    let mnemonic = kiln_client::keyring::generate_mnemonic();
    kiln_client::keyring::write_test_key(home, "operator", &mnemonic).unwrap();
    for args in [
        &[
            "genesis",
            "gentx",
            "--from",
            "operator",
            "--weight",
            "10",
            "--worker-url",
            "http://127.0.0.1:8090",
            "--keyring-backend",
            "test",
        ][..],
        &["genesis", "collect-gentxs"][..],
    ] {
        kilnd(args, home);
    }
}

/// Runs `kilnd ARGS --home HOME`, asserts it succeeded and returns its stdout.
pub fn kilnd(args: &[&str], home: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kilnd"))
        .args(args)
        .arg("--home")
        .arg(home)
        .output()
        .unwrap();
    assert!(out.status.success(), "kilnd {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

pub fn http_get(addr: SocketAddr, path: &str) -> Option<Value> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    // CometBFT answers with chunked encoding for large bodies; every test
    // query here is small, but strip a chunk header if one is there.
    let body = body.trim();
    serde_json::from_str(body).ok().or_else(|| {
        let (_, rest) = body.split_once("\r\n")?;
        serde_json::from_str(rest.rsplit_once("\r\n0")?.0.trim()).ok()
    })
}
