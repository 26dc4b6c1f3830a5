//! The SmolLM2 GGUF as kiln-llm reads it: its metadata and tensor
//! directory, the tokenizer (ids equal Hugging Face's tokenizer built from
//! the same GGUF on a corpus of Unicode, digits, whitespace runs, code and
//! special tokens; exact round trip; streaming decode only ever emits whole
//! characters) and the chat template (equal to transformers' Jinja2
//! rendering).

mod common;

use common::*;
use kiln_llm::chat::{ChatMessage, ChatTemplate};
use kiln_llm::gguf::{GgmlType, GgufFile};
use kiln_llm::model::LlamaConfig;
use kiln_llm::tokenizer::Tokenizer;

fn corpus() -> Vec<String> {
    let mut texts: Vec<String> = [
        "Hello world",
        "",
        " leading space",
        "trailing spaces   ",
        "a  b   c    d\t\te\n\nf\n\n\n\ng \r\n h",
        "                                 many spaces",
        "1234567890 3.14159 2024-01-01 1,000,000 0x1F 42nd 007",
        "Résumé, naïve café, Zürich, Ærøskøbing, ß ẞ",
        "日本語のテキスト、中文文本，한국어 텍스트",
        "Emoji: 🙂👍🏽🚀 family: 👨‍👩‍👧‍👦 flags: 🇫🇷🇯🇵",
        "Arabic: مرحبا بالعالم — Hebrew: שלום — Greek: Καλημέρα — Russian: Привет",
        "combining: e\u{301} a\u{308} — zero width:\u{200b}x — nbsp:\u{a0}y",
        "don't I'll we've they're it's she'd You'RE",
        "HELLO hello HeLLo hElLo",
        "!!! ??? ... --- *** ### $$$ %%% ^^^ &&& ((()))",
        "https://example.com/path?query=1&other=two#frag user@example.org",
        "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
        "fn main() {\n\tlet v: Vec<u32> = (0..10).map(|x| x * x).collect();\n\tprintln!(\"{v:?}\");\n}",
        "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|>",
        "x<|im_end|>y<|im_start|>z",
        "<|im_start|><|im_start|> <|im_end|>",
        "<repo_name>kiln<file_sep>src/main.rs<filename>a.py",
        "<|im_start |> not special <im_start>",
        "\u{0}\u{1}\u{7f} control bytes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let file = GgufFile::open(model_path()).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let template = ChatTemplate::from_gguf(&file, &tok).unwrap();
    texts.extend(
        conversations()
            .iter()
            .map(|c| template.render(c, true).unwrap()),
    );
    texts
}

#[test]
fn the_gguf_metadata_and_tensor_directory() {
    let file = GgufFile::open(model_path()).unwrap();
    println!("{file:?}, sha256 {}", file.sha256_hex());
    assert_eq!(file.version, 3);
    assert_eq!(file.tensors.len(), 272);
    assert_eq!(file.str("general.architecture").unwrap(), "llama");
    assert!(file.tensor("output.weight").is_none(), "tied embeddings");
    let embd = file.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (embd.shape(), embd.ggml_type),
        (vec![49152, 576], GgmlType::Q8_0)
    );
    assert_eq!(
        file.tensor("blk.0.attn_q.weight").unwrap().ggml_type,
        GgmlType::Q4_1
    );
    let config = LlamaConfig::from_gguf(&file).unwrap();
    assert_eq!(
        (
            config.n_layers,
            config.hidden,
            config.ffn_hidden,
            config.n_heads,
            config.n_kv_heads
        ),
        (30, 576, 1536, 9, 3)
    );
    assert_eq!(
        (config.head_dim, config.vocab_size, config.context_length),
        (64, 49152, 8192)
    );
    assert_eq!(config.rope_base, 1e5);
    assert!(config.tied_embeddings && config.permuted_qk && !config.qkv_bias);
    // Every tensor dequantizes (F32, Q8_0, Q4_1 here) to finite values.
    for t in &file.tensors {
        let (shape, values) = file.dequantize(&t.name).unwrap();
        assert_eq!(
            values.len() as i64,
            shape.iter().product::<i64>(),
            "{}",
            t.name
        );
        assert!(values.iter().all(|v| v.is_finite()), "{}", t.name);
    }
}

#[test]
fn token_ids_equal_transformers_tokenizer_from_the_same_gguf() {
    let file = GgufFile::open(model_path()).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    assert_eq!(tok.pre_tokenizer(), "smollm");
    let texts = corpus();
    let reference = run_reference("tokenize", &serde_json::json!({ "texts": texts }));
    let theirs: Vec<Vec<u32>> = serde_json::from_value(reference["ids"].clone()).unwrap();
    assert_eq!(theirs.len(), texts.len());
    let mut total = 0;
    for (text, their_ids) in texts.iter().zip(&theirs) {
        let ids = tok.encode(text, true).unwrap();
        assert_eq!(&ids, their_ids, "text {text:?}");
        total += ids.len();
    }
    println!(
        "{} texts, {total} tokens: ids equal transformers'",
        texts.len()
    );
}

#[test]
fn special_tokens_round_trip_and_streaming_emits_whole_characters() {
    let file = GgufFile::open(model_path()).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    assert_eq!(tok.encode("<|im_start|>", true).unwrap(), vec![1]);
    assert_eq!(tok.encode("<|im_end|>", true).unwrap(), vec![2]);
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(2)));
    assert_eq!(tok.stop_ids(), &[2]);
    assert!(tok.is_special(0) && tok.is_special(2) && !tok.is_special(19556));
    assert_eq!(tok.token_bytes(216), Some(&b" "[..]));
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    assert_eq!(tok.vocab_size(), 49152);

    let mut held_back = 0;
    for text in corpus() {
        let ids = tok.encode(&text, false).unwrap();
        assert_eq!(tok.decode(&ids, false), text, "round trip");
        let mut stream = tok.stream_decoder(false);
        let mut streamed = String::new();
        for &id in &ids {
            let piece = stream.push(id);
            // A String is always valid UTF-8: what matters is that nothing
            // was replaced by U+FFFD on the way.
            assert!(!piece.contains('\u{fffd}'), "{text:?}: piece {piece:?}");
            if stream.pending_bytes() > 0 {
                held_back += 1;
            }
            streamed.push_str(&piece);
        }
        streamed.push_str(&stream.finish());
        assert_eq!(streamed, text);
        // Skipping specials drops exactly the control tokens' text.
        let without: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&i| !tok.is_special(i))
            .collect();
        assert_eq!(tok.decode(&ids, true), tok.decode(&without, false));
    }
    assert!(held_back > 0, "some characters span several tokens");
    println!("tokens that ended mid-character (held back): {held_back}");
    // A stream cut in the middle of a character ends with U+FFFD, not a panic.
    let ids = tok.encode("🙂", false).unwrap();
    assert!(ids.len() > 1);
    let mut stream = tok.stream_decoder(false);
    assert_eq!(stream.push(ids[0]), "");
    assert_eq!(stream.finish(), "\u{fffd}");
}

#[test]
fn chat_template_renders_like_transformers() {
    let file = GgufFile::open(model_path()).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let template = ChatTemplate::from_gguf(&file, &tok).unwrap();
    let mut cases: Vec<(Vec<ChatMessage>, bool)> =
        conversations().into_iter().map(|c| (c, true)).collect();
    cases.push((
        vec![
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello! How can I help?"),
            ChatMessage::new("user", "  spaces\nand lines  "),
        ],
        false,
    ));
    let spec = serde_json::json!({
        "conversations": cases.iter().map(|(m, g)| serde_json::json!({
            "messages": m, "add_generation_prompt": g
        })).collect::<Vec<_>>()
    });
    let reference = run_reference("chat", &spec);
    let theirs: Vec<String> = serde_json::from_value(reference["rendered"].clone()).unwrap();
    for ((messages, generation), their_text) in cases.iter().zip(&theirs) {
        assert_eq!(&template.render(messages, *generation).unwrap(), their_text);
    }
    println!("{} conversations render identically", cases.len());
}
