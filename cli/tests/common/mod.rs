//! Shared by the CLI integration tests: the `kiln` command builder, output
//! checks, the mnemonics of public cosmjs test vectors, and a tiny CometBFT
//! JSON-RPC mock server (HTTP POST and URI GET) driven by a per-test handler.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

pub const COSMJS_24: &str = "economy stock theory fatal elder harbor betray wasp final emotion task crumble siren bottom lizard educate guess current outdoor pair theory focus wife stone";
pub const COSMJS_12: &str =
    "special sign fit simple patrol salute grocery chicken wheat radar tonight ceiling";

/// The `kiln` binary with a clean environment and `home` as KILN_HOME.
pub fn kiln(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.env("KILN_HOME", home)
        .env_remove("KILN_KEYRING_PASSPHRASE")
        .env_remove("KILN_NODE")
        .env_remove("KILN_KEYRING_BACKEND")
        .stdin(Stdio::null());
    c
}

/// Asserts success and parses stdout as JSON.
pub fn ok_json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "command failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

/// Answers one JSON-RPC method: `Ok(result)` or `Err((code, data))`.
pub type Handler<S> = fn(&Mutex<S>, &str, &Value) -> Result<Value, (i64, String)>;

pub fn serve_one<S>(state: &Mutex<S>, handle: Handler<S>, stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body).unwrap();
    let target = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    let (method, params) = if request_line.starts_with("GET") {
        // URI form: /method?k=v&k2=v2
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let mut params = serde_json::Map::new();
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            params.insert(k.into(), Value::String(v.trim_matches('"').into()));
        }
        (
            path.trim_start_matches('/').to_string(),
            Value::Object(params),
        )
    } else {
        let req: Value = serde_json::from_slice(&body).unwrap();
        (
            req["method"].as_str().unwrap().to_string(),
            req["params"].clone(),
        )
    };
    let resp = match handle(state, &method, &params) {
        Ok(result) => json!({"jsonrpc": "2.0", "id": 1, "result": result}),
        Err((code, data)) => {
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": "Internal error", "data": data}})
        }
    };
    let status = if resp.get("error").is_some() {
        "500 Internal Server Error"
    } else {
        "200 OK"
    };
    let body = resp.to_string();
    let mut s = stream;
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Starts the mock node on an ephemeral port; returns its URL.
pub fn mock_node<S: Send + 'static>(state: Arc<Mutex<S>>, handle: Handler<S>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            serve_one(&state, handle, stream);
        }
    });
    format!("http://{addr}")
}
