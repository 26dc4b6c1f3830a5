//! `kilnd init` writes a home that the real CometBFT v0.38.25 (installed
//! into `.bin/` by `scripts/setup.sh`) starts from as it is; `kilnd start`
//! serves it over the ABCI socket; and a crash of the app (`kill -9` at an
//! arbitrary point) is recovered by the handshake replay when both restart:
//! the chain goes on from where it was, with no app-hash mismatch.

// A test, not consensus code: it waits on the wall clock for background work.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/testnet.rs"]
mod testnet;

use testnet::{add_genesis_host, cometbft, http_get, kilnd};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped, with its output in a log file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn height(rpc: SocketAddr) -> Option<u64> {
    http_get(rpc, "/status")?["result"]["sync_info"]["latest_block_height"]
        .as_str()?
        .parse()
        .ok()
}

fn wait_for_height(rpc: SocketAddr, at_least: u64, comet: &Proc, app: &Proc) -> u64 {
    let start = Instant::now();
    loop {
        if let Some(h) = height(rpc) {
            if h >= at_least {
                return h;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "CometBFT did not reach height {at_least}; its log:\n{}\nkilnd's log:\n{}",
            comet.log(),
            app.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Node {
    home: PathBuf,
    abci: SocketAddr,
    rpc: SocketAddr,
    p2p: SocketAddr,
}

impl Node {
    fn kilnd(&self, run: u32) -> Proc {
        Proc::spawn(
            Command::new(env!("CARGO_BIN_EXE_kilnd"))
                .arg("start")
                .arg("--home")
                .arg(&self.home)
                .arg("--abci")
                .arg(self.abci.to_string()),
            self.home.join(format!("kilnd-{run}.log")),
        )
    }

    fn cometbft(&self, bin: &Path, run: u32) -> Proc {
        Proc::spawn(
            Command::new(bin)
                .arg("start")
                .arg("--home")
                .arg(&self.home)
                .arg("--proxy_app")
                .arg(format!("tcp://{}", self.abci))
                .arg("--rpc.laddr")
                .arg(format!("tcp://{}", self.rpc))
                .arg("--p2p.laddr")
                .arg(format!("tcp://{}", self.p2p)),
            self.home.join(format!("cometbft-{run}.log")),
        )
    }
}

#[test]
fn a_kilnd_home_runs_under_the_real_cometbft_and_recovers_from_a_killed_app() {
    let Some(bin) = cometbft() else {
        eprintln!(
            "SKIPPED: no CometBFT at .bin/cometbft (run scripts/setup.sh, or set KILN_COMETBFT)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("node");
    let init = Command::new(env!("CARGO_BIN_EXE_kilnd"))
        .args(["init", "--chain-id", "kiln-cometbft-test", "--moniker", "t"])
        .arg("--home")
        .arg(&home)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    add_genesis_host(&home);
    // The written config.toml is what CometBFT reads; shorten the block time.
    let config = home.join("config/config.toml");
    let toml = std::fs::read_to_string(&config).unwrap();
    assert!(toml.contains("proxy_app"));
    std::fs::write(
        &config,
        toml.replace("timeout_commit = \"1s\"", "timeout_commit = \"200ms\""),
    )
    .unwrap();
    let node = Node {
        home: home.clone(),
        abci: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        rpc: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        p2p: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    };

    let mut app = node.kilnd(1);
    std::thread::sleep(Duration::from_millis(500));
    let mut comet = node.cometbft(&bin, 1);
    let reached = wait_for_height(node.rpc, 5, &comet, &app);

    // The app's Info agrees with the chain CometBFT stored. CometBFT's
    // `/status` counts a block once its store has it, just before the app
    // commits it, so the app may trail by one for a moment.
    let mut info = serde_json::Value::Null;
    let mut app_height = 0u64;
    for _ in 0..50 {
        info = http_get(node.rpc, "/abci_info").unwrap();
        app_height = info["result"]["response"]["last_block_height"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .unwrap_or(0);
        if app_height >= reached {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(app_height >= reached, "{info}");

    // kill -9 the app mid-chain; CometBFT loses its ABCI connections.
    app.kill();
    comet.kill();
    let before = http_get(node.rpc, "/status");
    assert!(before.is_none(), "CometBFT still answering after kill");

    // Both come back: the handshake replays what the app lost, and the
    // chain continues past the old height.
    let _app = node.kilnd(2);
    std::thread::sleep(Duration::from_millis(500));
    let comet2 = node.cometbft(&bin, 2);
    let after = wait_for_height(node.rpc, app_height + 5, &comet2, &_app);
    assert!(after >= app_height + 5);
    let log = comet2.log();
    assert!(
        !log.contains("app hash mismatch") && !log.contains("CONSENSUS FAILURE"),
        "{log}"
    );
    assert!(
        log.contains("ABCI Handshake App Info"),
        "no handshake in the log:\n{log}"
    );
    drop(comet2);
    drop(_app);

    // Offline bootstrap: export a snapshot of this home, restore it into a
    // fresh home with the same genesis, and both list the same app hash.
    let exported = kilnd(&["snapshots", "export"], &home);
    let height = exported.split_whitespace().nth(3).unwrap().to_string();
    let app_hash = exported
        .rsplit("app hash ")
        .next()
        .unwrap()
        .trim_end_matches(|c: char| !c.is_ascii_hexdigit())
        .to_string();
    let listed = kilnd(&["snapshots", "list"], &home);
    assert!(listed.contains(&format!("height {height} ")), "{listed}");
    assert!(listed.contains(&app_hash), "{listed}");
    let fresh = dir.path().join("fresh");
    kilnd(&["init", "--chain-id", "kiln-cometbft-test"], &fresh);
    std::fs::copy(
        home.join("config/genesis.json"),
        fresh.join("config/genesis.json"),
    )
    .unwrap();
    let from = home.join("data/snapshots");
    let from = from.to_str().unwrap();
    // A wrong trusted app hash restores nothing.
    let bad = Command::new(env!("CARGO_BIN_EXE_kilnd"))
        .args([
            "snapshots",
            "restore",
            &height,
            "--app-hash",
            &"AB".repeat(32),
            "--from",
            from,
        ])
        .arg("--home")
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("trusted app hash"),
        "{bad:?}"
    );
    let restored = kilnd(
        &[
            "snapshots",
            "restore",
            &height,
            "--app-hash",
            &app_hash,
            "--from",
            from,
        ],
        &fresh,
    );
    assert!(restored.contains(&app_hash), "{restored}");
    kilnd(&["snapshots", "export"], &fresh);
    let listed_fresh = kilnd(&["snapshots", "list"], &fresh);
    assert_eq!(
        listed_fresh, listed,
        "the restored state exports the same snapshot"
    );
}
