//! `kilnd devnet --dashboard …` (the real binary): a value that is not
//! `ip:port` or `off`, or an explicit address already in use, stops the
//! node with an error naming it — before the home is written or the store
//! opened, so a typo costs nothing.

use std::path::Path;
use std::process::Command;

fn kilnd_devnet(home: &Path, dashboard: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kilnd"))
        .arg("--home")
        .arg(home)
        .args(["devnet", "--rpc", "127.0.0.1:0", "--dashboard", dashboard])
        .output()
        .unwrap()
}

/// Everything under `dir`, as relative paths.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            out.push(e.path().display().to_string());
            if e.path().is_dir() {
                out.extend(files_under(&e.path()));
            }
        }
    }
    out
}

#[test]
fn a_malformed_or_busy_dashboard_address_is_refused_before_the_home_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    for bad in ["nonsense", "127.0.0.1", "localhost:99999", ""] {
        let o = kilnd_devnet(&home, bad);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "--dashboard {bad:?} was accepted");
        assert!(
            err.contains(&format!("--dashboard {bad:?} is not ip:port (or off)")),
            "--dashboard {bad:?}: {err}"
        );
        assert!(files_under(&home).is_empty(), "{:?}", files_under(&home));
    }
    // An explicit address that is taken: refused, naming it (the default
    // address only warns, so a second node on one machine still starts).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = kilnd_devnet(&home, &addr);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "a busy --dashboard {addr} was accepted"
    );
    assert!(err.contains(&format!("--dashboard {addr}")), "{err}");
    assert!(files_under(&home).is_empty(), "{:?}", files_under(&home));
}
