//! `scripts/systemd/*.service` are what an operator installs: each must be a
//! unit `systemd-analyze verify` accepts (when the machine has systemd), and
//! each `ExecStart` must be a command line the built binary accepts — a
//! renamed flag would otherwise surface only on a validator's first boot.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The unit's ExecStart with its `\` continuations joined, split into words.
fn exec_start(unit: &str) -> Vec<String> {
    let joined = unit.replace("\\\n", " ");
    let line = joined
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart");
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_systemd_units_are_valid_and_their_commands_parse() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_kilnd")).parent().unwrap();
    let units = root().join("scripts/systemd");
    let scratch = tempfile::tempdir().unwrap();
    for name in ["kilnd.service", "cometbft.service", "kiln-mlworker.service"] {
        let text = std::fs::read_to_string(units.join(name)).unwrap();
        let words = exec_start(&text);
        let program = Path::new(&words[0]).file_name().unwrap().to_str().unwrap();
        let binary = match program {
            "cometbft" => root().join(".bin/cometbft"),
            other => bin_dir.join(other),
        };
        // Environment references stand for values the env file supplies.
        let args: Vec<String> = words[1..]
            .iter()
            .map(|w| {
                if w.starts_with("${") {
                    "kiln1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5lzv7xu".to_string()
                } else {
                    w.clone()
                }
            })
            .collect();
        if binary.exists() {
            let out = Command::new(&binary)
                .args(&args)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: `{program} {}` is refused: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            eprintln!(
                "{name}: {} not built, its command line is not checked",
                binary.display()
            );
        }
        // systemd-analyze checks the unit itself (binaries pointed at the
        // built ones, since /usr/local/bin has none here).
        let local = text.replace(&words[0], binary.to_str().unwrap());
        std::fs::write(scratch.path().join(name), local).unwrap();
    }
    let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(
            ["kilnd.service", "cometbft.service", "kiln-mlworker.service"]
                .map(|n| scratch.path().join(n)),
        )
        .output()
    else {
        eprintln!("systemd-analyze is not installed: unit syntax not checked");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Only complaints about the binaries' location are acceptable (the
    // mlworker's env file does not exist here either).
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("is not executable") && !l.trim().is_empty())
        .collect();
    assert!(problems.is_empty(), "systemd-analyze verify: {stderr}");
}
