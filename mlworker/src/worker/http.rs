//! The worker's HTTP port: `/health` (200 while the chain answered within
//! [`HEALTHY_WITHIN_SECS`], else 503), `/metrics` (Prometheus text format)
//! and `/status` (JSON, read by `kiln-mlworker status`). A tiny HTTP/1.1
//! server on std sockets: requests are a few bytes and rare, so one thread
//! answering them in turn is enough and keeps libtorch's process free of an
//! async runtime.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::{unix_now, SharedStatus, WorkerStatus};

/// The worker is healthy while its last successful chain read is this recent.
pub const HEALTHY_WITHIN_SECS: u64 = 30;

/// Binds `addr` and serves in a background thread; returns the bound address.
pub fn serve(addr: &str, status: SharedStatus) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).with_context(|| {
        format!(
            "cannot listen on {addr} (is another worker using this port? choose one with --http)"
        )
    })?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = handle(stream, &status);
            }
        })?;
    Ok(local)
}

fn handle(mut stream: TcpStream, status: &SharedStatus) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers; requests carry no body we need.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let snapshot = status.lock().map(|s| s.clone()).unwrap_or_default();
    let (code, content_type, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/health") => {
            let age = unix_now().saturating_sub(snapshot.last_chain_contact_unix);
            if snapshot.last_chain_contact_unix > 0 && age <= HEALTHY_WITHIN_SECS {
                (
                    200,
                    "application/json",
                    format!(
                        "{{\"status\":\"ok\",\"height\":{},\"last_chain_contact_secs\":{age}}}\n",
                        snapshot.height
                    ),
                )
            } else {
                let why = snapshot
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no answer from the node yet".into());
                (
                    503,
                    "application/json",
                    format!(
                        "{}\n",
                        serde_json::json!({"status": "unhealthy", "reason": why, "last_chain_contact_secs": age})
                    ),
                )
            }
        }
        ("GET", "/metrics") => (200, "text/plain; version=0.0.4", metrics(&snapshot)),
        ("GET", "/status") => (
            200,
            "application/json",
            format!("{}\n", serde_json::to_string(&snapshot)?),
        ),
        ("GET", _) => (
            404,
            "text/plain",
            "not found: try /health, /metrics or /status\n".into(),
        ),
        _ => (405, "text/plain", "only GET is served\n".into()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    write!(stream, "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    stream.flush()?;
    Ok(())
}

/// Prometheus text exposition of the status.
pub fn metrics(s: &WorkerStatus) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    gauge(
        "kiln_worker_height",
        "Latest chain height the worker has seen.",
        "gauge",
        s.height.to_string(),
    );
    gauge(
        "kiln_worker_epoch",
        "Epoch of the next block.",
        "gauge",
        s.epoch.to_string(),
    );
    gauge(
        "kiln_worker_epoch_nonces",
        "Nonces computed in the current epoch's sprint.",
        "gauge",
        s.nonces_done.to_string(),
    );
    gauge(
        "kiln_worker_epoch_shares",
        "Shares found in the current epoch's sprint.",
        "gauge",
        s.shares.to_string(),
    );
    gauge(
        "kiln_worker_epoch_committed_shares",
        "Shares in the commitment on chain.",
        "gauge",
        s.committed_shares.to_string(),
    );
    gauge(
        "kiln_worker_epoch_opened",
        "1 once the commitment is opened on chain.",
        "gauge",
        u8::from(s.opened).to_string(),
    );
    gauge(
        "kiln_worker_epoch_duties",
        "Openings this host must validate this epoch.",
        "gauge",
        s.duties.to_string(),
    );
    gauge(
        "kiln_worker_epoch_votes_committed",
        "Vote commitments on chain this epoch.",
        "gauge",
        s.votes_committed.to_string(),
    );
    gauge(
        "kiln_worker_epoch_votes_revealed",
        "Vote reveals on chain this epoch.",
        "gauge",
        s.votes_revealed.to_string(),
    );
    gauge(
        "kiln_worker_nonces_total",
        "Nonces computed since start.",
        "counter",
        s.nonces_total.to_string(),
    );
    gauge(
        "kiln_worker_nonces_per_second",
        "Recent sprint throughput.",
        "gauge",
        format!("{:.3}", s.nonces_per_second),
    );
    gauge(
        "kiln_worker_txs_accepted_total",
        "Transactions accepted by CheckTx.",
        "counter",
        s.txs_accepted.to_string(),
    );
    gauge(
        "kiln_worker_txs_refused_total",
        "Transactions refused by CheckTx.",
        "counter",
        s.txs_refused.to_string(),
    );
    gauge(
        "kiln_worker_txs_failed_in_block_total",
        "Transactions accepted by CheckTx that failed in their block.",
        "counter",
        s.txs_failed_in_block.to_string(),
    );
    gauge(
        "kiln_worker_last_chain_contact_seconds",
        "Unix time of the last successful chain read.",
        "gauge",
        s.last_chain_contact_unix.to_string(),
    );
    out.push_str(&format!("# HELP kiln_worker_stage Stage of the next block.\n# TYPE kiln_worker_stage gauge\nkiln_worker_stage{{stage=\"{}\"}} 1\n", s.stage));
    out
}

/// `GET http://addr/path` with std sockets; returns (status code, body).
pub fn get(addr: &str, path: &str) -> Result<(u16, String)> {
    let addr = addr.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(addr).with_context(|| {
        format!(
            "cannot reach the worker at {addr}: is `kiln-mlworker run` running with --http {addr}?"
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP answer from {addr}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) => Ok((c, body.to_string())),
        None => bail!("malformed HTTP status line from {addr}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn serves_health_metrics_and_status() {
        let status: SharedStatus = Arc::new(Mutex::new(WorkerStatus {
            height: 7,
            stage: "open".into(),
            ..Default::default()
        }));
        let addr = serve("127.0.0.1:0", status.clone()).unwrap().to_string();
        let (code, body) = get(&addr, "/health").unwrap();
        assert_eq!(code, 503, "no chain contact yet: {body}");
        status.lock().unwrap().last_chain_contact_unix = unix_now();
        let (code, body) = get(&addr, "/health").unwrap();
        assert_eq!(code, 200, "{body}");
        let (code, body) = get(&addr, "/metrics").unwrap();
        assert_eq!(code, 200);
        assert!(body.contains("kiln_worker_height 7"), "{body}");
        assert!(
            body.contains("kiln_worker_stage{stage=\"open\"} 1"),
            "{body}"
        );
        let (code, body) = get(&addr, "/status").unwrap();
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["height"], 7);
        assert_eq!(get(&addr, "/nope").unwrap().0, 404);
    }
}
