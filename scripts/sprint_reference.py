#!/usr/bin/env python3
"""Independent PyTorch reference of the Kiln sprint (SPEC §4), written from the
spec text only (no shared code with the Rust implementation).

It generates the weights, target, nonce inputs and permutations bit-exactly
(ChaCha20 per RFC 8439 in numpy, the f64 -> f32 value rule), runs the
Llama-family forward pass one nonce at a time with plain torch ops, and
measures distances. It is also the benchmark baseline (`bench`).

Commands (all print one JSON object on stdout):
  digests   --seed HEX --addr HEX [--dims d,l,h,f,s,o] [--nonces N]
            SHA-256 of every weight tensor's f32 LE bytes, of the target, and of
            the inputs / permutation draws of nonces 0..N-1, plus first values.
  distances --seed HEX --addr HEX [--dims ...] --nonces 0,1,2 [--dtype float64|float32]
  bench     [--seconds S] [--dims ...] [--threads T]   nonces/s of this reference
            (T = 0: best of 1 thread and all cores)
"""
import argparse
import hashlib
import json
import math
import sys
import time

import numpy as np
import torch

DEVNET = (256, 4, 4, 768, 32, 256)

# ---------------------------------------------------------------- ChaCha20 --

def _rotl(x, n):
    return (x << np.uint32(n)) | (x >> np.uint32(32 - n))


def chacha20_words(key: bytes, nwords: int, start_block: int = 0) -> np.ndarray:
    """Keystream of ChaCha20(key, nonce = 0^96, counter from start_block) as u32 LE words."""
    assert len(key) == 32
    nblocks = (nwords + 15) // 16
    const = np.frombuffer(b"expand 32-byte k", dtype="<u4")
    kw = np.frombuffer(key, dtype="<u4")
    init = np.zeros((16, nblocks), dtype=np.uint32)
    init[0:4] = const[:, None]
    init[4:12] = kw[:, None]
    init[12] = (np.arange(nblocks, dtype=np.uint64) + start_block).astype(np.uint32)
    # words 13..15: the all-zero 96-bit nonce
    x = [init[i].copy() for i in range(16)]

    def qr(a, b, c, d):
        x[a] += x[b]; x[d] ^= x[a]; x[d] = _rotl(x[d], 16)
        x[c] += x[d]; x[b] ^= x[c]; x[b] = _rotl(x[b], 12)
        x[a] += x[b]; x[d] ^= x[a]; x[d] = _rotl(x[d], 8)
        x[c] += x[d]; x[b] ^= x[c]; x[b] = _rotl(x[b], 7)

    with np.errstate(over="ignore"):
        for _ in range(10):
            qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
            qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
        out = np.stack([x[i] + init[i] for i in range(16)])  # [16, nblocks]
    return out.T.reshape(-1)[:nwords]


def values(key: bytes, n: int, a: float) -> np.ndarray:
    w = chacha20_words(key, n)
    u = ((w >> np.uint32(8)).astype(np.float64) + 0.5) / float(1 << 24)
    return (a * (2.0 * u - 1.0)).astype(np.float32)


class Draws:
    """Sequential integer draws below m from a stream."""

    def __init__(self, key: bytes, n: int):
        self.w = chacha20_words(key, n)
        self.i = 0

    def below(self, m: int) -> int:
        w = int(self.w[self.i])
        self.i += 1
        return (w * m) >> 32


def sha(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()

# ------------------------------------------------------------ generation --

W_AMP = 0.02 * math.sqrt(3.0)
X_AMP = math.sqrt(3.0)


def tensor_shapes(d, l, h, f, s, o):
    out = []
    for i in range(l):
        for p in "qkvo":
            out.append((f"layers.{i}.attn.{p}", (d, d)))
        out.append((f"layers.{i}.ffn.gate", (d, f)))
        out.append((f"layers.{i}.ffn.up", (d, f)))
        out.append((f"layers.{i}.ffn.down", (f, d)))
    out.append(("out", (d, o)))
    return out


def gen_weights(seed: bytes, dims):
    ws = {}
    for name, (r, c) in tensor_shapes(*dims):
        ws[name] = values(sha(seed, name.encode()), r * c, W_AMP).reshape(r, c)
    return ws


def gen_target(seed: bytes, o: int) -> np.ndarray:
    return values(sha(seed, b"target"), o, X_AMP)


def nonce_key(seed: bytes, addr: bytes, n: int) -> bytes:
    return sha(seed, addr, n.to_bytes(8, "little"))


def gen_input(seed, addr, n, dims) -> np.ndarray:
    d, _, _, _, s, _ = dims
    return values(nonce_key(seed, addr, n), s * d, X_AMP).reshape(s, d)


def perm_draws(nkey: bytes, o: int):
    dr = Draws(sha(nkey, b"perm"), o)
    return [dr.below(i + 1) for i in range(o - 1, 0, -1)]


def permute(vec: np.ndarray, nkey: bytes) -> np.ndarray:
    v = vec.copy()
    o = len(v)
    for i, j in zip(range(o - 1, 0, -1), perm_draws(nkey, o)):
        v[i], v[j] = v[j], v[i]
    return v

# --------------------------------------------------------------- forward --


class Model:
    def __init__(self, seed, dims, dtype=torch.float64):
        self.dims = dims
        self.dtype = dtype
        d, l, h, f, s, o = dims
        ws = gen_weights(seed, dims)
        self.w = {k: torch.from_numpy(v).to(dtype) for k, v in ws.items()}
        hd = d // h
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        ang = torch.arange(s, dtype=torch.float64)[:, None] * inv[None, :]
        ang = torch.cat([ang, ang], dim=-1)  # rotate-half layout
        self.cos = ang.cos().to(dtype)
        self.sin = ang.sin().to(dtype)
        self.mask = torch.triu(torch.ones(s, s, dtype=torch.bool), diagonal=1)
        t = torch.from_numpy(gen_target(seed, o)).to(torch.float64)
        self.target = t / t.norm()

    @staticmethod
    def rmsnorm(x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)

    def rope(self, x):  # x: [h, s, hd]
        half = x.shape[-1] // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * self.cos + rot * self.sin

    def forward(self, x):  # x: [s, d] -> out-projection at the last position
        d, l, h, f, s, o = self.dims
        hd = d // h
        w = self.w
        for i in range(l):
            p = f"layers.{i}."
            xn = self.rmsnorm(x)
            q = (xn @ w[p + "attn.q"]).view(s, h, hd).transpose(0, 1)
            k = (xn @ w[p + "attn.k"]).view(s, h, hd).transpose(0, 1)
            v = (xn @ w[p + "attn.v"]).view(s, h, hd).transpose(0, 1)
            q, k = self.rope(q), self.rope(k)
            sc = (q @ k.transpose(1, 2)) / math.sqrt(hd)
            sc = sc.masked_fill(self.mask, float("-inf"))
            # softmax in f32 (in f64 for the f64 reference)
            sm_dtype = torch.float64 if self.dtype == torch.float64 else torch.float32
            a = torch.softmax(sc.to(sm_dtype), dim=-1).to(self.dtype)
            att = (a @ v).transpose(0, 1).reshape(s, d)
            x = x + att @ w[p + "attn.o"]
            hn = self.rmsnorm(x)
            g = hn @ w[p + "ffn.gate"]
            u = hn @ w[p + "ffn.up"]
            x = x + (torch.nn.functional.silu(g) * u) @ w[p + "ffn.down"]
        return self.rmsnorm(x[-1]) @ w["out"]

    def distance(self, seed, addr, n):
        x = torch.from_numpy(gen_input(seed, addr, n, self.dims)).to(self.dtype)
        with torch.no_grad():
            y = self.forward(x).to(torch.float64).numpy()
        y = permute(y, nonce_key(seed, addr, n))
        y = torch.from_numpy(y)
        y = y / y.norm()
        return float((y - self.target).norm())

# ------------------------------------------------------------------ main --


def parse_dims(s):
    if not s:
        return DEVNET
    v = tuple(int(x) for x in s.split(","))
    assert len(v) == 6, "--dims d,layers,heads,ffn,seq,out"
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["digests", "distances", "bench"])
    ap.add_argument("--seed", default="836c28835f9d66a15c9adc3ba6b889228990c556771f215d96f753ba2aa11ae5")
    ap.add_argument("--addr", default="00112233445566778899aabbccddeeff00112233")
    ap.add_argument("--dims", default="")
    ap.add_argument("--nonces", default="4")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    seed = bytes.fromhex(a.seed)
    addr = bytes.fromhex(a.addr)
    dims = parse_dims(a.dims)
    if a.cmd == "digests":
        n = int(a.nonces)
        ws = gen_weights(seed, dims)
        out = {
            "weights": {k: hashlib.sha256(v.astype("<f4").tobytes()).hexdigest() for k, v in ws.items()},
            "weights_first8": {k: [int(x) for x in v.reshape(-1)[:8].view(np.uint32)] for k, v in ws.items()},
            "target": hashlib.sha256(gen_target(seed, dims[5]).astype("<f4").tobytes()).hexdigest(),
            "inputs": [hashlib.sha256(gen_input(seed, addr, i, dims).astype("<f4").tobytes()).hexdigest() for i in range(n)],
            "perm_draws": [perm_draws(nonce_key(seed, addr, i), dims[5]) for i in range(n)],
        }
        print(json.dumps(out))
    elif a.cmd == "distances":
        dtype = torch.float64 if a.dtype == "float64" else torch.float32
        m = Model(seed, dims, dtype)
        nonces = [int(x) for x in a.nonces.split(",") if x]
        print(json.dumps({"dtype": a.dtype, "distances": {str(n): m.distance(seed, addr, n) for n in nonces}}))
    else:
        # Baseline: this reference, one nonce per forward pass, f32. With
        # --threads 0 it is measured with 1 thread and with all cores and the
        # better one is reported (torch's OpenMP pool can be slow for these
        # small per-nonce matmuls, especially on a loaded machine).
        m = Model(seed, dims, torch.float32)
        cores = torch.get_num_threads() if a.threads == 0 else a.threads
        trials = sorted({1, cores}) if a.threads == 0 else [a.threads]
        per = {}
        for t in trials:
            torch.set_num_threads(t)
            m.distance(seed, addr, 0)  # warm-up
            t0 = time.perf_counter()
            n = 0
            while time.perf_counter() - t0 < a.seconds / len(trials):
                m.distance(seed, addr, 1_000_000 + n)
                n += 1
            dt = time.perf_counter() - t0
            per[str(t)] = {"nonces": n, "seconds": dt, "nonces_per_s": n / dt}
        best = max(per, key=lambda k: per[k]["nonces_per_s"])
        print(json.dumps({"nonces_per_s": per[best]["nonces_per_s"], "best_threads": int(best), "per_threads": per, "dims": dims}))

if __name__ == "__main__":
    sys.exit(main())
