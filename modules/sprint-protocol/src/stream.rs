//! ChaCha20 random streams (RFC 8439 block function, 96-bit zero nonce, block
//! counter from 0) read as little-endian u32 words, and the exact draws of
//! SPEC §4.

use crate::Hash32;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;

const BUF_WORDS: usize = 256;

/// A ChaCha20 keystream read as consecutive little-endian `u32` words.
pub struct Stream {
    cipher: ChaCha20,
    buf: [u32; BUF_WORDS],
    pos: usize,
}

impl Stream {
    /// The stream of `key`, starting at word 0.
    pub fn new(key: &Hash32) -> Self {
        let cipher = ChaCha20::new(key.into(), &[0u8; 12].into());
        Stream {
            cipher,
            buf: [0; BUF_WORDS],
            pos: BUF_WORDS,
        }
    }

    /// The stream of `key`, starting at word `word` (any offset).
    pub fn at_word(key: &Hash32, word: u64) -> Self {
        let mut s = Self::new(key);
        let block_word = word - word % 16;
        s.cipher.seek(block_word * 4);
        s.pos = BUF_WORDS;
        for _ in block_word..word {
            s.next_u32();
        }
        s
    }

    fn refill(&mut self) {
        let mut bytes = [0u8; BUF_WORDS * 4];
        self.cipher.apply_keystream(&mut bytes);
        for (w, c) in self.buf.iter_mut().zip(bytes.chunks_exact(4)) {
            *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        self.pos = 0;
    }

    /// Next word of the stream.
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        if self.pos == BUF_WORDS {
            self.refill();
        }
        let w = self.buf[self.pos];
        self.pos += 1;
        w
    }

    /// Next value in `[-a, a]` (see [`word_to_value`]).
    #[cfg(feature = "float")]
    #[inline]
    pub fn next_value(&mut self, a: f64) -> f32 {
        word_to_value(self.next_u32(), a)
    }

    /// Next integer below `m` (see [`word_below`]).
    #[inline]
    pub fn next_below(&mut self, m: u32) -> u32 {
        word_below(self.next_u32(), m)
    }

    /// Fill `out` with consecutive values in `[-a, a]`.
    #[cfg(feature = "float")]
    pub fn fill_values(&mut self, a: f64, out: &mut [f32]) {
        for v in out.iter_mut() {
            *v = self.next_value(a);
        }
    }
}

#[cfg(feature = "float")]
/// `u = ((w >> 8) + 0.5) / 2^24` in f64; the value is `a·(2u − 1)` in f64,
/// rounded once to f32.
#[inline]
pub fn word_to_value(w: u32, a: f64) -> f32 {
    let u = ((w >> 8) as f64 + 0.5) / 16_777_216.0;
    (a * (2.0 * u - 1.0)) as f32
}

/// An integer below `m`: `(w · m) >> 32` in u64 arithmetic. Integer-only.
#[inline]
pub fn word_below(w: u32, m: u32) -> u32 {
    ((w as u64 * m as u64) >> 32) as u32
}

#[cfg(feature = "float")]
/// Weight amplitude `0.02·√3`.
pub fn weight_amplitude() -> f64 {
    0.02 * 3.0f64.sqrt()
}

#[cfg(feature = "float")]
/// Input / target amplitude `√3`.
pub fn unit_amplitude() -> f64 {
    3.0f64.sqrt()
}
