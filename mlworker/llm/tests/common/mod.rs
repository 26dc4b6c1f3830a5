//! Shared by the integration tests: the installed SmolLM2 GGUF, the chat
//! prompts, and `scripts/llm_reference.py` (transformers on the same file).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use kiln_llm::chat::ChatMessage;

/// One torch thread per test process: nextest runs the tests in parallel
/// on a 2-core machine, and OpenMP threads that wait on a preempted sibling
/// made a decode step 10× slower than one thread (measured: 1.4 vs 10 tokens/s).
pub fn one_torch_thread() {
    tch::set_num_threads(1);
}

/// The SmolLM2 GGUF (`scripts/setup.sh` installs it); a clear panic otherwise.
pub fn model_path() -> PathBuf {
    kiln_llm::registry::resolve_model("smollm2-135m").unwrap_or_else(|e| panic!("{e}"))
}

pub fn repo_root() -> PathBuf {
    std::env::var_os("KILN_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")))
}

/// `KILN_PYTHON`, else the repository venv's python.
pub fn python() -> PathBuf {
    std::env::var_os("KILN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

/// Runs `scripts/llm_reference.py MODE <gguf> <spec.json>` and parses its JSON.
pub fn run_reference(mode: &str, spec: &serde_json::Value) -> serde_json::Value {
    spawn_reference(mode, spec).wait()
}

/// The reference running in the background (so the Rust side can compute meanwhile).
pub struct ReferenceRun {
    child: std::process::Child,
    mode: String,
    _dir: tempfile::TempDir,
}

/// Starts `scripts/llm_reference.py MODE <gguf> <spec.json>`.
pub fn spawn_reference(mode: &str, spec: &serde_json::Value) -> ReferenceRun {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(spec).unwrap()).unwrap();
    let script = repo_root().join("scripts/llm_reference.py");
    let child = Command::new(python())
        .arg(&script)
        .arg(mode)
        .arg(model_path())
        .arg(&spec_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e} (run scripts/setup.sh)", python().display()));
    ReferenceRun {
        child,
        mode: mode.to_string(),
        _dir: dir,
    }
}

impl ReferenceRun {
    /// Waits for the script and parses its JSON output.
    pub fn wait(self) -> serde_json::Value {
        let out = self.child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "scripts/llm_reference.py {} failed:\n{}",
            self.mode,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "reference printed no JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

/// Twelve single-turn conversations (one with a system prompt) of varied kinds.
pub fn conversations() -> Vec<Vec<ChatMessage>> {
    let user = |s: &str| vec![ChatMessage::new("user", s)];
    vec![
        user("What is the capital of France?"),
        user("Write a haiku about the sea."),
        user("Explain photosynthesis in one sentence."),
        user("What is 17 times 23?"),
        user("Write a Python function that reverses a string."),
        user("List three colors."),
        user("Translate 'good morning' into Spanish."),
        user("Who wrote Romeo and Juliet?"),
        user("Give me a tip for sleeping better."),
        user("Why is the sky blue?"),
        user("Résumé: décris Zürich en une phrase. 🙂"),
        vec![
            ChatMessage::new("system", "You are a terse assistant. Answer in five words."),
            ChatMessage::new("user", "How do airplanes fly?"),
        ],
    ]
}
