//! `kiln-mlworker serve` as a user runs it: the real SmolLM2 GGUF behind the
//! OpenAI-compatible API, driven by the official `openai` Python client
//! (unchanged), by concurrent clients, and by bad inputs.

// A test, not consensus code: it waits on the wall clock for the server.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kiln-mlworker"))
            .args([
                "serve",
                "--model",
                "smollm2-135m",
                "--http",
                &addr.to_string(),
                "--threads",
                "1",
            ])
            .args(extra)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            addr,
            log,
            _dir: dir,
        };
        let start = Instant::now();
        while request(addr, "GET", "/health", b"").map(|r| r.0) != Some(200) {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "the server did not come up: {}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, _, text) = request(self.addr, "POST", path, body.to_string().as_bytes())
            .expect("the server answers");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// A plain HTTP/1.1 exchange: (status, headers, body).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(300))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .ok()?;
    // A server may answer (413) before reading a huge body: ignore write errors.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head.to_string(), body.to_string()))
}

fn chat(prompt: &str, max_tokens: u32) -> Value {
    json!({
        "model": "smollm2-135m",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

#[test]
fn the_official_openai_client_works_unchanged() {
    let server = Server::start(&[]);
    let python = root().join(".venv/bin/python");
    let out = Command::new(&python)
        .arg(root().join("tests/openai/check_serve.py"))
        .arg(format!("http://{}/v1", server.addr))
        .arg("smollm2-135m")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (run scripts/setup.sh): {e}",
                python.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "openai client checks failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );
}

/// vLLM's `min_tokens` and `ignore_eos`, which benchmark tools send to get
/// answers of a fixed length: a greedy answer that ends early (EOS) runs to
/// `max_tokens` with either, and keeps its start.
#[test]
fn min_tokens_and_ignore_eos_keep_generating_past_the_end_of_sequence() {
    let server = Server::start(&[]);
    let with = |extra: Value| {
        let mut body = chat("What is the capital of France?", 40);
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = server.post("/v1/chat/completions", &body);
        assert_eq!(status, 200, "{answer}");
        (
            answer["usage"]["completion_tokens"].as_u64().unwrap(),
            answer["choices"][0]["finish_reason"]
                .as_str()
                .unwrap()
                .to_string(),
            answer["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    let (short, finish, text) = with(json!({}));
    assert_eq!(
        finish, "stop",
        "the prompt must end early for this test: {text:?}"
    );
    assert!(short < 40, "{short} tokens: {text:?}");
    for extra in [json!({"min_tokens": 40}), json!({"ignore_eos": true})] {
        let (n, finish, longer) = with(extra.clone());
        assert_eq!((n, finish.as_str()), (40, "length"), "{extra}: {longer:?}");
        assert!(
            longer.starts_with(text.trim_end()),
            "{extra}: {longer:?} does not start with {text:?}"
        );
    }
    // A minimum below the natural length changes nothing.
    assert_eq!(with(json!({"min_tokens": 1})), (short, finish, text));
}

#[test]
fn eight_concurrent_greedy_requests_equal_one_at_a_time() {
    let server = Server::start(&[]);
    let prompts: Vec<String> = [
        "What is 2 + 2?",
        "Write a haiku about rain.",
        "Translate 'good morning' to French.",
        "List three fruits.",
        "What is the capital of Japan?",
        "Explain gravity in one sentence.",
        "Say hello in Spanish.",
        "Name a famous scientist.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| {
            let (status, body) = server.post("/v1/chat/completions", &chat(p, 24));
            assert_eq!(status, 200, "{body}");
            body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let addr = server.addr;
    let together: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| {
                scope.spawn(move || {
                    let (status, _, text) = request(
                        addr,
                        "POST",
                        "/v1/chat/completions",
                        chat(p, 24).to_string().as_bytes(),
                    )
                    .unwrap();
                    assert_eq!(status, 200, "{text}");
                    let body: Value = serde_json::from_str(&text).unwrap();
                    body["choices"][0]["message"]["content"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert!(!a.is_empty(), "prompt {i} produced nothing");
        assert_eq!(a, t, "prompt {i}: batched output differs from alone");
    }
    // The metrics saw a batch of more than one.
    let (_, _, metrics) = request(addr, "GET", "/metrics", b"").unwrap();
    assert!(
        metrics.contains("kiln_inference_requests_total 16"),
        "{metrics}"
    );
}

#[test]
fn bad_inputs_get_openai_errors_and_the_server_keeps_serving() {
    let server = Server::start(&["--max-tokens", "512"]);
    const CHAT: &str = "/v1/chat/completions";
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("malformed JSON", CHAT, b"{\"model\": ".to_vec(), 400),
        ("unknown model", CHAT, chat("hi", 4).to_string().replace("smollm2-135m", "gpt-9").into_bytes(), 404),
        ("wrong type", CHAT, json!({"model": "smollm2-135m", "messages": "hi"}).to_string().into_bytes(), 400),
        ("empty messages", CHAT, json!({"model": "smollm2-135m", "messages": []}).to_string().into_bytes(), 400),
        ("too many tokens", CHAT, chat("hi", 100_000).to_string().into_bytes(), 400),
        ("a huge body", CHAT, vec![b'x'; 3 << 20], 413),
        ("an unknown parameter", CHAT, json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": "x"}], "frequency_penality": 1}).to_string().into_bytes(), 400),
        ("a token id outside the vocabulary", "/v1/completions", json!({"model": "smollm2-135m", "prompt": [1, 999999]}).to_string().into_bytes(), 400),
        ("an unknown route", "/v1/embeddings", b"{}".to_vec(), 404),
    ];
    for (what, path, body, want) in cases {
        let (status, _, text) = request(server.addr, "POST", path, &body)
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(status, want, "{what}: {text}");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{what}: the error is not JSON: {text}"));
        assert!(
            v["error"]["message"].is_string(),
            "{what}: not OpenAI's error shape: {text}"
        );
        assert!(v["error"]["type"].is_string(), "{what}: {text}");
    }
    let (status, body) = server.post("/v1/chat/completions", &chat("Say yes.", 4));
    assert_eq!(
        status, 200,
        "the server stopped serving after bad inputs: {body}"
    );
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let server = Server::start(&["--max-batch", "1", "--max-queue", "1"]);
    let addr = server.addr;
    let statuses: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                scope.spawn(move || {
                    std::thread::sleep(Duration::from_millis(50 * i));
                    let (status, head, _) = request(
                        addr,
                        "POST",
                        "/v1/chat/completions",
                        chat("Tell me a long story.", 48).to_string().as_bytes(),
                    )
                    .unwrap();
                    (status, head)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let refused: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!refused.is_empty(), "no request was refused: {statuses:?}");
    assert!(
        refused
            .iter()
            .all(|(_, head)| head.to_ascii_lowercase().contains("retry-after:")),
        "{refused:?}"
    );
    assert!(statuses.iter().any(|(s, _)| *s == 200), "{statuses:?}");
}

/// `serve --precision` chooses the served model's dtype (it was ignored on
/// the CPU, which always served f32): the default is f32 on the CPU, `bf16`
/// loads the model in bf16 and still answers.
#[test]
fn the_precision_flag_chooses_the_served_models_dtype() {
    let cpu_default: &[&str] = &["--device", "cpu"];
    let cpu_bf16: &[&str] = &["--device", "cpu", "--precision", "bf16"];
    for (flags, dtype) in [(cpu_default, "f32"), (cpu_bf16, "bf16")] {
        let server = Server::start(flags);
        let (status, body) = server.post("/v1/chat/completions", &chat("Say yes.", 4));
        assert_eq!(status, 200, "{flags:?}: {body}");
        assert!(
            body["choices"][0]["message"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty()),
            "{flags:?}: {body}"
        );
        let log = std::fs::read_to_string(&server.log).unwrap_or_default();
        assert!(
            log.contains(&format!("on cpu in {dtype}")),
            "{flags:?}: {log}"
        );
    }
}
