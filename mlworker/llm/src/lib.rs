//! `kiln-llm`: the core of the worker's LLM engine — everything between a
//! model file and logits, with no serving policy in it.
//!
//! It owns:
//! - [`gguf`]: the GGUF v2/v3 parser (metadata of every type, tensor
//!   directory, alignment) and dequantization of F32, F16, BF16, Q8_0, Q4_0,
//!   Q4_1 with ggml's formulas; a model's identity is its file's SHA-256.
//! - [`tokenizer`]: the byte-level BPE tokenizer rebuilt from the GGUF
//!   vocabulary, merges and pre-tokenizer name, special tokens honoured, and
//!   a streaming detokenizer that only emits complete UTF-8.
//! - [`chat`]: the model's own Jinja chat template, rendered with minijinja.
//! - [`model`]: the Llama-family transformer on libtorch with per-sequence KV
//!   caches: prefill (chunkable), batched decode of sequences of different
//!   lengths, and the validation replay (top-k logprobs at every response
//!   position from one prefill).
//! - [`quant`]: products with the file's Q4_0/Q4_1/Q8_0 blocks kept as
//!   they are (decode steps on the CPU read ~5× less memory than in f32).
//! - [`decode_attention`]: a decode step's attention read from each
//!   sequence's cache where it lies (CPU, f32), instead of stacking them.
//! - [`validation`]: the executor's per-position record, the replay
//!   distance, its threshold and verdict, and substitute models (weights
//!   perturbed or requantized at load) that the threshold must catch.
//! - [`registry`]: models known by name (`smollm2-135m`) and where
//!   `scripts/setup.sh` installed them.
//!
//! Scheduling, sampling policy, the HTTP API and device sharing with the
//! sprint live in `kiln-mlworker`. This crate never sets torch's thread count,
//! except to narrow it to one thread for the length of a forward pass on
//! quantized blocks (see [`model::BlockThreads`]), restoring it after.
//!
//! ```no_run
//! use kiln_llm::{chat::ChatMessage, model::LoadOptions, Llm};
//! let llm = Llm::load("smollm2-135m", LoadOptions::cpu())?;
//! let prompt = llm.chat_prompt(&[ChatMessage::new("user", "Hi!")])?;
//! let steps = llm.model.generate_greedy(&prompt, 32, 5, llm.tokenizer.stop_ids())?;
//! let ids: Vec<u32> = steps.iter().map(|s| s.token).collect();
//! println!("{}", llm.tokenizer.decode(&ids, true));
//! # Ok::<(), kiln_llm::LlmError>(())
//! ```

pub mod chat;
pub mod decode_attention;
pub mod gguf;
pub mod model;
pub mod quant;
pub mod registry;
pub mod tokenizer;
pub mod validation;

use std::path::PathBuf;

use chat::{ChatError, ChatMessage, ChatTemplate};
use gguf::{GgufError, GgufFile};
use model::{LlamaModel, LoadOptions, ModelError};
use registry::{ModelIdentity, RegistryError};
use tokenizer::{Tokenizer, TokenizerError};

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A loaded model with everything needed to serve it.
pub struct Llm {
    /// The name or path it was loaded by.
    pub name: String,
    pub path: PathBuf,
    /// SHA-256 and size of the GGUF file.
    pub identity: ModelIdentity,
    pub tokenizer: Tokenizer,
    /// `None` when the file has no chat template.
    pub chat: Option<ChatTemplate>,
    pub model: LlamaModel,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("identity", &self.identity)
            .field("model", &self.model)
            .finish()
    }
}

impl Llm {
    /// Finds (by name or path), parses, hashes and loads a model.
    pub fn load(name_or_path: &str, options: LoadOptions) -> Result<Self, LlmError> {
        Self::load_inner(name_or_path, options, None)
    }

    /// [`Llm::load`] with every weight passed through `transform` (tests of
    /// validation: a substitute that claims the file's identity).
    pub fn load_with(
        name_or_path: &str,
        options: LoadOptions,
        transform: model::WeightTransform,
    ) -> Result<Self, LlmError> {
        Self::load_inner(name_or_path, options, Some(transform))
    }

    fn load_inner(
        name_or_path: &str,
        options: LoadOptions,
        transform: Option<model::WeightTransform>,
    ) -> Result<Self, LlmError> {
        let path = registry::resolve_model(name_or_path)?;
        let file = GgufFile::open(&path)?;
        let identity = ModelIdentity {
            sha256: file.sha256_hex(),
            size_bytes: file.file_size(),
        };
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let chat = match ChatTemplate::from_gguf(&file, &tokenizer) {
            Ok(t) => Some(t),
            Err(ChatError::NoTemplate) => None,
            Err(e) => return Err(e.into()),
        };
        let model = match transform {
            None => LlamaModel::load(&file, options)?,
            Some(transform) => LlamaModel::load_with(&file, options, transform)?,
        };
        if tokenizer.vocab_size() > model.config().vocab_size {
            return Err(ModelError::Config(format!(
                "tokenizer has {} tokens, the embedding {}",
                tokenizer.vocab_size(),
                model.config().vocab_size
            ))
            .into());
        }
        Ok(Llm {
            name: name_or_path.to_string(),
            path,
            identity,
            tokenizer,
            chat,
            model,
        })
    }

    /// Renders `messages` with the model's chat template (generation prompt
    /// appended) and tokenizes the result.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, LlmError> {
        let template = self.chat.as_ref().ok_or(ChatError::NoTemplate)?;
        let text = template.render(messages, true)?;
        Ok(self.tokenizer.encode(&text, false)?)
    }
}

#[cfg(test)]
mod tests {
    /// The serving engine moves a loaded model and its sequences into the
    /// engine thread (tch tensors are `Send`, not `Sync`).
    #[test]
    fn a_model_and_its_sequences_can_move_to_another_thread() {
        fn send<T: Send>() {}
        send::<super::Llm>();
        send::<super::model::Sequence>();
        fn sync<T: Sync>() {}
        sync::<super::tokenizer::Tokenizer>();
        sync::<super::chat::ChatTemplate>();
    }
}
