//! Live progress of `kiln-mlworker run` on a terminal: one status line kept
//! at the bottom of stderr and redrawn a few times a second (model loading,
//! the epoch's stage, sprint nonces and shares, committee votes, the
//! inference queue, txs), with the log lines scrolling above it.
//!
//! Log output goes through [`StatusLineWriter`]: each log line first clears
//! the status line, then the status line is drawn again below it, so the two
//! never interleave. Off a terminal (a service, a pipe, `--log-json`) nothing
//! is drawn and the writer is plain stderr.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::worker::{SharedStatus, WorkerStatus};

/// The status line shared by the log writer and the redraw thread.
#[derive(Default)]
pub struct StatusLine {
    enabled: AtomicBool,
    /// What is drawn now (empty: nothing). The lock also orders writes to
    /// stderr between log lines and redraws.
    current: Mutex<String>,
}

/// Clears the terminal line the cursor is on.
const CLEAR_LINE: &str = "\r\x1b[2K";

impl StatusLine {
    /// The process's status line (one stderr, one line).
    pub fn global() -> &'static StatusLine {
        static LINE: OnceLock<StatusLine> = OnceLock::new();
        LINE.get_or_init(StatusLine::default)
    }

    pub fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Writes `log` (whole lines) to `out` above the status line.
    pub fn write_log(&self, out: &mut dyn Write, log: &[u8]) -> std::io::Result<()> {
        if !self.enabled() {
            return out.write_all(log);
        }
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = Vec::with_capacity(log.len() + current.len() + 8);
        buf.extend_from_slice(CLEAR_LINE.as_bytes());
        buf.extend_from_slice(log);
        if !log.ends_with(b"\n") {
            buf.push(b'\n');
        }
        buf.extend_from_slice(current.as_bytes());
        out.write_all(&buf)?;
        out.flush()
    }

    /// Replaces the status line with `line` on `out`.
    pub fn draw(&self, out: &mut dyn Write, line: &str) -> std::io::Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *current = line.to_string();
        out.write_all(format!("{CLEAR_LINE}{line}").as_bytes())?;
        out.flush()
    }

    /// Ends the status line (the process is about to print its last words).
    pub fn finish(&self, out: &mut dyn Write) {
        if !self.enabled() {
            return;
        }
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if !current.is_empty() {
            let _ = out.write_all(b"\n");
            let _ = out.flush();
            current.clear();
        }
    }
}

/// The tracing writer of `kiln-mlworker`: stderr, under the status line.
#[derive(Clone, Copy, Default)]
pub struct StatusLineWriter;

impl Write for StatusLineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        StatusLine::global().write_log(&mut std::io::stderr().lock(), buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StatusLineWriter {
    type Writer = StatusLineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Prints one line to stderr above the status line (`eprintln!` for code
/// that runs while the line is drawn).
pub fn eprint_line(text: &str) {
    let _ = StatusLine::global().write_log(
        &mut std::io::stderr().lock(),
        format!("{text}\n").as_bytes(),
    );
}

/// Where the served model is.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelPhase {
    /// Not serving inference (sprint only).
    None,
    Loading {
        seconds: u64,
    },
    Ready,
    Failed,
}

/// The inference engine's queue, as the line shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueView {
    pub queued: usize,
    pub in_batch: usize,
    pub requests: u64,
    pub tokens_per_second: f64,
}

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// The status line for one redraw: a pure function of what the worker
/// reports, cut to `width` columns.
pub fn render_line(
    frame: usize,
    s: &WorkerStatus,
    model: &ModelPhase,
    queue: Option<&QueueView>,
    width: usize,
) -> String {
    let mut parts: Vec<String> = Vec::new();
    if s.height == 0 {
        parts.push("waiting for the node".into());
    } else {
        parts.push(format!(
            "height {} · epoch {} {}",
            s.height, s.epoch, s.stage
        ));
        parts.push(format!(
            "sprint {} nonces ({:.1}/s) · {} shares, {} committed{}",
            s.nonces_done,
            s.nonces_per_second,
            s.shares,
            s.committed_shares,
            if s.opened { ", opened" } else { "" }
        ));
        if s.duties > 0 {
            parts.push(format!("votes {}/{}", s.votes_revealed, s.duties));
        }
    }
    match model {
        ModelPhase::None => {}
        ModelPhase::Loading { seconds } => parts.push(format!("model loading {seconds}s")),
        ModelPhase::Failed => parts.push("model failed (see the log)".into()),
        ModelPhase::Ready => {
            if let Some(q) = queue {
                parts.push(format!(
                    "queue {} · batch {} · {} requests · {:.1} tok/s",
                    q.queued, q.in_batch, q.requests, q.tokens_per_second
                ));
            } else {
                parts.push("model ready".into());
            }
        }
    }
    parts.push(format!(
        "txs {} ok{}",
        s.txs_accepted,
        match s.txs_refused + s.txs_failed_in_block {
            0 => String::new(),
            n => format!(", {n} refused/failed"),
        }
    ));
    if let Some(e) = &s.last_error {
        parts.push(format!("! {e}"));
    }
    let line = format!("{} {}", SPINNER[frame % SPINNER.len()], parts.join(" │ "));
    truncate_to_width(&line, width)
}

/// `line` cut to `width` characters (an ellipsis marks the cut).
fn truncate_to_width(line: &str, width: usize) -> String {
    let width = width.max(10);
    if line.chars().count() <= width {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

/// The terminal's width: `$COLUMNS` when set, else 120.
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c: &usize| c >= 20)
        .unwrap_or(120)
}

/// What the redraw thread reads.
pub struct Sources {
    pub status: SharedStatus,
    /// The served model: loaded (`Some`), still loading, or failed.
    pub model: Option<ModelSource>,
}

pub struct ModelSource {
    pub started: Instant,
    pub ready: Arc<dyn Fn() -> Option<QueueView> + Send + Sync>,
    pub failed: Arc<AtomicBool>,
}

/// Starts redrawing the status line every 250 ms (on a terminal only).
pub fn spawn(sources: Sources) {
    let line = StatusLine::global();
    if !line.enabled() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("progress".into())
        .spawn(move || {
            for frame in 0usize.. {
                let status = match sources.status.lock() {
                    Ok(s) => s.clone(),
                    Err(p) => p.into_inner().clone(),
                };
                let (phase, queue) = match &sources.model {
                    None => (ModelPhase::None, None),
                    Some(m) => match (m.ready)() {
                        Some(q) => (ModelPhase::Ready, Some(q)),
                        None if m.failed.load(Ordering::SeqCst) => (ModelPhase::Failed, None),
                        None => (
                            ModelPhase::Loading {
                                seconds: m.started.elapsed().as_secs(),
                            },
                            None,
                        ),
                    },
                };
                let text = render_line(frame, &status, &phase, queue.as_ref(), terminal_width());
                if line.draw(&mut std::io::stderr().lock(), &text).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sprinting() -> WorkerStatus {
        WorkerStatus {
            height: 812,
            epoch: 14,
            stage: "sprint".into(),
            nonces_done: 1234,
            nonces_per_second: 56.72,
            shares: 12,
            committed_shares: 8,
            duties: 3,
            votes_revealed: 2,
            txs_accepted: 45,
            ..Default::default()
        }
    }

    #[test]
    fn the_line_shows_the_sprint_the_votes_the_model_and_the_queue() {
        let q = QueueView {
            queued: 2,
            in_batch: 3,
            requests: 17,
            tokens_per_second: 41.25,
        };
        let line = render_line(0, &sprinting(), &ModelPhase::Ready, Some(&q), 400);
        assert_eq!(
            line,
            "⠋ height 812 · epoch 14 sprint │ sprint 1234 nonces (56.7/s) · 12 shares, 8 committed │ votes 2/3 │ queue 2 · batch 3 · 17 requests · 41.2 tok/s │ txs 45 ok"
        );
        let loading = render_line(
            1,
            &sprinting(),
            &ModelPhase::Loading { seconds: 7 },
            None,
            400,
        );
        assert!(
            loading.starts_with('⠙') && loading.contains("│ model loading 7s │"),
            "{loading}"
        );
        let mut failing = sprinting();
        failing.txs_refused = 2;
        failing.txs_failed_in_block = 1;
        failing.last_error = Some("node unreachable".into());
        let line = render_line(2, &failing, &ModelPhase::Failed, None, 400);
        assert!(line.contains("model failed (see the log)"), "{line}");
        assert!(
            line.ends_with("txs 45 ok, 3 refused/failed │ ! node unreachable"),
            "{line}"
        );
        let waiting = render_line(0, &WorkerStatus::default(), &ModelPhase::None, None, 400);
        assert_eq!(waiting, "⠋ waiting for the node │ txs 0 ok");
    }

    #[test]
    fn the_line_fits_the_terminal() {
        let line = render_line(0, &sprinting(), &ModelPhase::None, None, 40);
        assert_eq!(line.chars().count(), 40);
        assert!(line.ends_with('…'));
    }

    #[test]
    fn a_log_line_clears_the_status_line_and_redraws_it_below() {
        let line = StatusLine::default();
        let mut out = Vec::new();
        // Off a terminal: logs pass through untouched, nothing is drawn.
        line.write_log(&mut out, b"INFO first\n").unwrap();
        line.draw(&mut out, "status").unwrap();
        assert_eq!(out, b"INFO first\n");
        line.enable();
        out.clear();
        line.draw(&mut out, "epoch 3 sprint").unwrap();
        line.write_log(&mut out, b"INFO tx accepted\n").unwrap();
        line.finish(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\r\x1b[2Kepoch 3 sprint\r\x1b[2KINFO tx accepted\nepoch 3 sprint\n"
        );
    }
}
