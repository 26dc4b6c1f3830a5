//! The model's tokenizer, rebuilt from the GGUF metadata (a GGUF carries no
//! `tokenizer.json`): a byte-level BPE (`tokenizer.ggml.model = "gpt2"`) from
//! `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`, the pre-tokenizer
//! split named by `tokenizer.ggml.pre` (as llama.cpp maps it), and the tokens
//! marked CONTROL (type 3) added as special tokens, so `<|im_start|>` in a
//! rendered chat prompt encodes to its single id.
//!
//! Decoding goes through each token's raw bytes ([`Tokenizer::token_bytes`],
//! also what OpenAI's `logprobs.bytes` reports); [`StreamDecoder`] emits text
//! only once its UTF-8 is complete, so a character split across tokens is
//! never shown half-made.

use std::collections::HashMap;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::gguf::{GgufError, GgufFile};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tokenizer.ggml.model {0:?} is not supported (only byte-level BPE, \"gpt2\")")]
    UnsupportedModel(String),
    #[error("tokenizer.ggml.pre {0:?} is not supported (supported: {SUPPORTED_PRE})")]
    UnsupportedPre(String),
    #[error("malformed tokenizer metadata: {0}")]
    Malformed(String),
    #[error("tokenizer: {0}")]
    Tokenizers(String),
}

const SUPPORTED_PRE: &str = "gpt2, smollm, starcoder, refact, codeshell, llama3 (llama-bpe, llama-v3, dbrx, smaug-bpe), qwen2 (deepseek-r1-qwen)";

/// llama.cpp's GPT-2 split (also what `ByteLevel { use_regex: true }` applies).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// GPT-2's byte ↔ printable-character table: bytes that are printable map to
/// themselves, the others to U+0100 onwards, in order.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
        table[b as usize] = if printable {
            b as char
        } else {
            let c = char::from_u32(next).unwrap_or('\0');
            next += 1;
            c
        };
    }
    table
}

/// A GGUF model's tokenizer: a `tokenizers::Tokenizer` plus the raw bytes of
/// every token.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    token_bytes: Vec<Vec<u8>>,
    tokens: Vec<String>,
    is_control: Vec<bool>,
    bos: Option<u32>,
    eos: Option<u32>,
    stop: Vec<u32>,
    add_bos: bool,
    pre: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.tokens.len())
            .field("pre", &self.pre)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

fn token_id(file: &GgufFile, key: &str, vocab: usize) -> Result<Option<u32>, TokenizerError> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(id) if (id as usize) < vocab => Ok(Some(id as u32)),
            // llama.cpp writes -1 (as u32::MAX) for "none" in some files.
            Some(id) if id == u32::MAX as u64 => Ok(None),
            _ => Err(TokenizerError::Malformed(format!(
                "{key} = {v:?} is not a token id below {vocab}"
            ))),
        },
    }
}

/// The tokenizer's fingerprint the chain registers beside the GGUF file's
/// hash (`tokenizer_sha256` of a model): SHA-256 over `"kiln/tokenizer/v1"`
/// and, each as a u32 LE byte length then the bytes, `tokenizer.ggml.model`,
/// `tokenizer.ggml.pre` (empty when absent), the token count (u32 LE), every
/// token, the merge count (u32 LE) and every merge. Two files with the same
/// vocabulary and merges tokenize alike, whatever their weights.
pub fn tokenizer_sha256(file: &GgufFile) -> Result<String, TokenizerError> {
    use sha2::{Digest, Sha256};
    fn field(h: &mut Sha256, bytes: &[u8]) {
        h.update((bytes.len() as u32).to_le_bytes());
        h.update(bytes);
    }
    let mut h = Sha256::new();
    h.update(b"kiln/tokenizer/v1");
    field(&mut h, file.str("tokenizer.ggml.model")?.as_bytes());
    let pre = match file.get("tokenizer.ggml.pre") {
        Some(_) => file.str("tokenizer.ggml.pre")?.to_string(),
        None => String::new(),
    };
    field(&mut h, pre.as_bytes());
    let tokens = file.str_array("tokenizer.ggml.tokens")?;
    let merges = file.str_array("tokenizer.ggml.merges")?;
    h.update((tokens.len() as u32).to_le_bytes());
    for t in &tokens {
        field(&mut h, t.as_bytes());
    }
    h.update((merges.len() as u32).to_le_bytes());
    for m in &merges {
        field(&mut h, m.as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

impl Tokenizer {
    /// Builds the tokenizer described by `file`'s `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        let model = file.str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_string()));
        }
        let tokens: Vec<String> = file
            .str_array("tokenizer.ggml.tokens")?
            .into_iter()
            .map(str::to_string)
            .collect();
        let merges: Vec<(String, String)> = file
            .str_array("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| TokenizerError::Malformed(format!("merge {m:?} has no space")))
            })
            .collect::<Result<_, _>>()?;
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(TokenizerError::Malformed(format!("{n} tokens")));
        }
        let types = match file.get("tokenizer.ggml.token_type") {
            Some(_) => file.int_array("tokenizer.ggml.token_type")?,
            None => vec![1; n],
        };
        if types.len() != n {
            return Err(TokenizerError::Malformed(format!(
                "{} token types for {n} tokens",
                types.len()
            )));
        }
        let pre = file
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("gpt2")
            .to_string();
        let gpt2_bytelevel = || ByteLevel::new(false, true, true);
        let split = |re: &str| -> Result<PreTokenizerWrapper, TokenizerError> {
            Split::new(
                SplitPattern::Regex(re.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map(Into::into)
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))
        };
        let (pre_tokenizer, ignore_merges): (PreTokenizerWrapper, bool) = match pre.as_str() {
            "gpt2" => (gpt2_bytelevel().into(), false),
            // llama.cpp: every digit on its own, then the GPT-2 split (the
            // `Digits(individual_digits) + ByteLevel` of SmolLM's tokenizer.json).
            "smollm" | "starcoder" | "refact" | "codeshell" => (
                Sequence::new(vec![Digits::new(true).into(), gpt2_bytelevel().into()]).into(),
                false,
            ),
            "llama3" | "llama-bpe" | "llama-v3" | "dbrx" | "smaug-bpe" => (
                Sequence::new(vec![
                    split(LLAMA3_SPLIT)?,
                    ByteLevel::new(false, true, false).into(),
                ])
                .into(),
                true,
            ),
            "qwen2" | "deepseek-r1-qwen" => (
                Sequence::new(vec![
                    split(QWEN2_SPLIT)?,
                    ByteLevel::new(false, true, false).into(),
                ])
                .into(),
                false,
            ),
            other => return Err(TokenizerError::UnsupportedPre(other.to_string())),
        };

        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let control: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL)
            .map(|(tok, _)| AddedToken::from(tok.clone(), true).normalized(false))
            .collect();
        inner.add_special_tokens(&control);
        let user: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == TOKEN_TYPE_USER_DEFINED)
            .map(|(tok, _)| AddedToken::from(tok.clone(), false).normalized(false))
            .collect();
        inner.add_tokens(&user);
        if inner.get_vocab_size(true) != n {
            return Err(TokenizerError::Malformed(format!(
                "vocabulary of {n} tokens became {} (duplicate token strings?)",
                inner.get_vocab_size(true)
            )));
        }

        let byte_of: HashMap<char, u8> = byte_to_char_table()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let is_control: Vec<bool> = types.iter().map(|&t| t == TOKEN_TYPE_CONTROL).collect();
        let token_bytes = tokens
            .iter()
            .zip(&is_control)
            .map(|(tok, &control)| {
                let spelled: Option<Vec<u8>> =
                    tok.chars().map(|c| byte_of.get(&c).copied()).collect();
                match spelled {
                    // Control tokens are plain text (`<|im_end|>`), as are
                    // tokens outside the byte alphabet.
                    Some(bytes) if !control => bytes,
                    _ => tok.as_bytes().to_vec(),
                }
            })
            .collect();

        let bos = token_id(file, "tokenizer.ggml.bos_token_id", n)?;
        let eos = token_id(file, "tokenizer.ggml.eos_token_id", n)?;
        let mut stop = Vec::new();
        for key in ["eos_token_id", "eot_token_id", "eom_token_id"] {
            if let Some(id) = token_id(file, &format!("tokenizer.ggml.{key}"), n)? {
                if !stop.contains(&id) {
                    stop.push(id);
                }
            }
        }
        Ok(Tokenizer {
            inner,
            token_bytes,
            tokens,
            is_control,
            bos,
            eos,
            stop,
            add_bos: file
                .opt_bool("tokenizer.ggml.add_bos_token")?
                .unwrap_or(false),
            pre,
        })
    }

    /// Token ids of `text`. Special tokens written in the text (`<|im_start|>`)
    /// become their ids. With `add_bos`, BOS is prepended when the model asks
    /// for it (`tokenizer.ggml.add_bos_token`); chat prompts rendered from the
    /// template already carry what the model needs, so pass `false` for them.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if add_bos && self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text of `ids`; invalid UTF-8 (a character cut by the end) becomes U+FFFD.
    /// `skip_special` drops control tokens (`<|im_end|>`).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            if skip_special && self.is_special(id) {
                continue;
            }
            bytes.extend_from_slice(self.token_bytes(id).unwrap_or(&[]));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The raw bytes a token stands for (`None` for an id outside the vocabulary).
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.token_bytes.get(id as usize).map(Vec::as_slice)
    }

    /// The token as the vocabulary spells it (byte-level alphabet, e.g. `Ġthe`).
    pub fn token_str(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a vocabulary entry spelled `token` (e.g. `"<|im_end|>"`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Whether `id` is a control (special) token.
    pub fn is_special(&self, id: u32) -> bool {
        self.is_control.get(id as usize).copied().unwrap_or(false)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Ids that end a generation: EOS, and EOT/EOM when the file names them.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop
    }

    /// `tokenizer.ggml.pre`, the pre-tokenizer this vocabulary was trained with.
    pub fn pre_tokenizer(&self) -> &str {
        &self.pre
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// A streaming detokenizer over this vocabulary.
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder<'_> {
        StreamDecoder {
            tokenizer: self,
            pending: Vec::new(),
            skip_special,
        }
    }
}

/// Turns a stream of token ids into text pieces that are always complete
/// UTF-8: bytes of a character split across tokens wait for the token that
/// completes it.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    pending: Vec<u8>,
    skip_special: bool,
}

impl StreamDecoder<'_> {
    /// Adds one token; returns the text it completes (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        if self.skip_special && self.tokenizer.is_special(id) {
            return String::new();
        }
        self.pending
            .extend_from_slice(self.tokenizer.token_bytes(id).unwrap_or(&[]));
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Safe: from_utf8 said the prefix is valid.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Bytes that can never become valid: replace them, go on.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: an unfinished character left over becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// Bytes held back waiting for the rest of a character.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_gpt2s() {
        let t = byte_to_char_table();
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
        assert_eq!(t[0xad], 'Ń');
        let mut seen = std::collections::BTreeSet::new();
        assert!(t.iter().all(|c| seen.insert(*c)), "table is a bijection");
    }
}
