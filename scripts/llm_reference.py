#!/usr/bin/env python3
"""Independent reference for kiln-llm: Hugging Face transformers loading the
same GGUF (dequantized by transformers' own code, float32, CPU).

    llm_reference.py generate GGUF IN.json   greedy tokens + top-k logprobs per step
    llm_reference.py tokenize GGUF IN.json   token ids of each text (no BOS added)
    llm_reference.py chat GGUF IN.json       the chat template rendered by transformers (Jinja2)

IN.json for generate: {"prompts": [[ids...], ...], "new_tokens": N, "top_k": K}.
Token ids are passed in directly (the prompts are tokenized by the Rust side),
decoding is a plain greedy loop with the KV cache that never stops at EOS, so
both sides produce exactly N tokens. Prints one JSON object on stdout.
Runs offline: nothing is fetched from a hub.
"""
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

# The Rust tests run in parallel on few cores: one thread each, like them
# (KILN_REFERENCE_THREADS overrides).
torch.set_num_threads(int(os.environ.get("KILN_REFERENCE_THREADS", "1")))


def split(path):
    return os.path.dirname(os.path.abspath(path)), os.path.basename(path)


def tokenizer_of(path):
    from transformers import AutoTokenizer

    folder, name = split(path)
    return AutoTokenizer.from_pretrained(folder, gguf_file=name)


def generate(path, spec):
    from transformers import AutoModelForCausalLM

    folder, name = split(path)
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    load_seconds = time.perf_counter() - started
    n_new, k = spec["new_tokens"], spec["top_k"]
    results = []
    decode_seconds = 0.0
    with torch.inference_mode():
        for prompt in spec["prompts"]:
            ids = torch.tensor([prompt], dtype=torch.long)
            out = model(input_ids=ids, use_cache=True)
            tokens, tops = [], []
            t0 = time.perf_counter()
            for step in range(n_new):
                logits = out.logits[0, -1].float()
                logprobs = torch.log_softmax(logits, dim=-1)
                values, indices = torch.topk(logprobs, k)
                token = int(torch.argmax(logits))
                tokens.append(token)
                tops.append([[int(i), float(v)] for i, v in zip(indices, values)])
                if step + 1 < n_new:
                    out = model(
                        input_ids=torch.tensor([[token]]),
                        past_key_values=out.past_key_values,
                        use_cache=True,
                    )
            decode_seconds += time.perf_counter() - t0
            results.append({"tokens": tokens, "top": tops})
    total = n_new * len(spec["prompts"])
    return {
        "results": results,
        "load_seconds": load_seconds,
        "decode_tokens_per_second": total / decode_seconds if decode_seconds else 0.0,
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
    }


def tokenize(path, spec):
    tok = tokenizer_of(path)
    return {"ids": [tok(text, add_special_tokens=False)["input_ids"] for text in spec["texts"]]}


def chat(path, spec):
    tok = tokenizer_of(path)
    return {
        "rendered": [
            tok.apply_chat_template(c["messages"], tokenize=False, add_generation_prompt=c["add_generation_prompt"])
            for c in spec["conversations"]
        ]
    }


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("generate", "tokenize", "chat"):
        sys.exit(__doc__)
    mode, path, spec_path = sys.argv[1:]
    with open(spec_path) as f:
        spec = json.load(f)
    result = {"generate": generate, "tokenize": tokenize, "chat": chat}[mode](path, spec)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
