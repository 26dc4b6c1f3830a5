//! Products with a GGUF's quantized weights kept in their blocks, for the
//! CPU's decode steps.
//!
//! A decode step multiplies a few rows (one per running request) by every
//! weight matrix of the model: it is bound by reading the weights from
//! memory, not by arithmetic. In f32 SmolLM2-135M's matrices are 540 MB per
//! step; kept as the file's Q4_1/Q8_0 blocks they are ~5× smaller. A
//! [`QuantMatrix`] holds one matrix's blocks and computes `y = x · wᵀ`
//! by dequantizing one weight row at a time into a small buffer (it stays in
//! the L1 cache) with ggml's formulas — the very f32 values the model's f32
//! tensors hold (`gguf::dequantize`), bit for bit — and taking its dot
//! product with each row of `x` in f32. So the result is the f32 product up
//! to summation order; activations are not quantized (llama.cpp's
//! `vec_dot` also rounds `x` to 8 bits, which this does not).
//!
//! Each row of `x` is reduced in one fixed order whatever the number of
//! rows, so a request's logits do not depend on which requests share its
//! batch. Prefill (many rows) stays on MKL's f32 kernels, which are
//! compute-bound there and faster.
//!
//! AVX2 + FMA where the CPU has them (checked at run time), a portable loop
//! otherwise. Work is split over output rows between the calling thread and
//! helper threads that wait spinning for a moment before they sleep (see
//! [`pool`]): one product takes tens of microseconds, about what waking a
//! sleeping thread costs.

use crate::gguf::{f16_to_f32, GgmlType};

/// Elements per block in every format handled here.
const BLOCK: usize = 32;

/// Output rows per unit of work handed to a thread.
const CHUNK_ROWS: usize = 64;

/// The block formats kept quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantFormat {
    /// `{ f16 d; u8 qs[16] }`: `x = ((q & 15) − 8) · d`, high nibbles are elements 16..32.
    Q4_0,
    /// `{ f16 d; f16 m; u8 qs[16] }`: `x = (q & 15) · d + m`.
    Q4_1,
    /// `{ f16 d; i8 qs[32] }`: `x = q · d`.
    Q8_0,
}

impl QuantFormat {
    pub fn from_ggml(t: GgmlType) -> Option<Self> {
        match t {
            GgmlType::Q4_0 => Some(QuantFormat::Q4_0),
            GgmlType::Q4_1 => Some(QuantFormat::Q4_1),
            GgmlType::Q8_0 => Some(QuantFormat::Q8_0),
            _ => None,
        }
    }

    fn block_bytes(self) -> usize {
        match self {
            QuantFormat::Q4_0 => 18,
            QuantFormat::Q4_1 => 20,
            QuantFormat::Q8_0 => 34,
        }
    }

    /// The block's quants: 16 bytes of nibbles, or 32 signed bytes.
    fn quant_bytes(self) -> usize {
        match self {
            QuantFormat::Q4_0 | QuantFormat::Q4_1 => 16,
            QuantFormat::Q8_0 => 32,
        }
    }

    /// `d`, or `d` and `m`.
    fn scales_per_block(self) -> usize {
        match self {
            QuantFormat::Q4_1 => 2,
            _ => 1,
        }
    }
}

/// Whether this CPU runs the AVX2 + FMA kernels (checked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    avx2::available()
}

/// A `[rows, cols]` weight matrix from its GGUF blocks, split at load into
/// the blocks' quants (16 bytes of nibbles or 32 signed bytes per block) and
/// their scales as f32 (`d`, and `m` for Q4_1): a kernel then never converts
/// a half.
#[derive(Clone)]
pub struct QuantMatrix {
    format: QuantFormat,
    rows: usize,
    cols: usize,
    quants: Vec<u8>,
    scales: Vec<f32>,
}

impl std::fmt::Debug for QuantMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantMatrix")
            .field("format", &self.format)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish()
    }
}

/// An output buffer's pointer, shared by the parts of one computation
/// (each writes its own range).
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub(crate) *mut f32);
// SAFETY: users (`QuantMatrix::matmul`, `decode_attention::attend`) have
// their parts write disjoint ranges of a buffer that outlives them.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// A row's view: its quants and scales.
#[derive(Clone, Copy)]
struct Row<'a> {
    quants: &'a [u8],
    scales: &'a [f32],
}

impl QuantMatrix {
    /// `None` unless `ggml_type` is Q4_0, Q4_1 or Q8_0, `cols` is a whole
    /// number of blocks and `data` is exactly `rows × cols` elements.
    pub fn new(ggml_type: GgmlType, rows: usize, cols: usize, data: &[u8]) -> Option<Self> {
        let format = QuantFormat::from_ggml(ggml_type)?;
        if cols == 0 || !cols.is_multiple_of(BLOCK) {
            return None;
        }
        let blocks = rows.checked_mul(cols / BLOCK)?;
        if data.len() != blocks.checked_mul(format.block_bytes())? {
            return None;
        }
        let mut quants = Vec::with_capacity(blocks * format.quant_bytes());
        let mut scales = Vec::with_capacity(blocks * format.scales_per_block());
        let half = |b: &[u8], i: usize| f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]));
        for b in data.chunks_exact(format.block_bytes()) {
            scales.push(half(b, 0));
            if format == QuantFormat::Q4_1 {
                scales.push(half(b, 2));
            }
            quants.extend_from_slice(&b[format.block_bytes() - format.quant_bytes()..]);
        }
        Some(QuantMatrix {
            format,
            rows,
            cols,
            quants,
            scales,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held (quants and scales).
    pub fn bytes(&self) -> usize {
        self.quants.len() + 4 * self.scales.len()
    }

    fn row(&self, row: usize) -> Row<'_> {
        let blocks = self.cols / BLOCK;
        let (q, s) = (
            blocks * self.format.quant_bytes(),
            blocks * self.format.scales_per_block(),
        );
        Row {
            quants: &self.quants[row * q..(row + 1) * q],
            scales: &self.scales[row * s..(row + 1) * s],
        }
    }

    /// The matrix whose row `i` is row `order[i]` of this one. `None` if an
    /// index is out of range.
    pub fn select_rows(&self, order: &[usize]) -> Option<Self> {
        let mut quants = Vec::new();
        let mut scales = Vec::new();
        for &r in order {
            if r >= self.rows {
                return None;
            }
            let row = self.row(r);
            quants.extend_from_slice(row.quants);
            scales.extend_from_slice(row.scales);
        }
        Some(QuantMatrix {
            format: self.format,
            rows: order.len(),
            cols: self.cols,
            quants,
            scales,
        })
    }

    /// The parts' rows one after another (as `torch.cat(parts, 0)`). `None`
    /// when formats or widths differ.
    pub fn stack(parts: &[&QuantMatrix]) -> Option<Self> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.format != first.format || p.cols != first.cols)
        {
            return None;
        }
        Some(QuantMatrix {
            format: first.format,
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            quants: parts
                .iter()
                .flat_map(|p| p.quants.iter().copied())
                .collect(),
            scales: parts
                .iter()
                .flat_map(|p| p.scales.iter().copied())
                .collect(),
        })
    }

    /// Row `row` in f32 (ggml's formulas, as `gguf::dequantize`).
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        dequantize_row_portable(self.format, self.row(row), &mut out[..self.cols]);
    }

    /// `y = x · wᵀ` for `x` `[n, cols]` row-major; returns `y` `[n, rows]`
    /// row-major. Splits the output rows over `threads` (≥ 1) threads: the
    /// caller's and [`pool`]'s helpers.
    ///
    /// # Panics
    /// If `x.len() != n × cols` (a caller's bug, not input).
    pub fn matmul(&self, x: &[f32], n: usize, threads: usize) -> Vec<f32> {
        assert_eq!(x.len(), n * self.cols, "x must be [n, cols]");
        // Computed transposed (`[rows, n]`: each thread's output rows are one
        // contiguous slice), then transposed back.
        let mut yt = vec![0f32; self.rows * n];
        if n == 0 || self.rows == 0 {
            return yt;
        }
        // Chunks of output rows handed out one at a time, so a helper that
        // starts late (it was asleep) takes fewer of them.
        let per = CHUNK_ROWS;
        let parts = self.rows.div_ceil(per);
        let yt_ptr = SharedOut(yt.as_mut_ptr());
        let part = |i: usize| {
            let first = i * per;
            let count = per.min(self.rows - first);
            // SAFETY: part `i` writes only rows `first..first + count` of
            // `yt` (`n` values each): the parts are disjoint and inside it,
            // and `yt` outlives `pool::run`, which returns after every part.
            let out =
                unsafe { std::slice::from_raw_parts_mut(yt_ptr.get().add(first * n), count * n) };
            self.rows_into(first, x, n, out);
        };
        if threads <= 1 {
            (0..parts).for_each(part);
        } else {
            pool::run(parts, threads, &part);
        }
        if n == 1 {
            return yt;
        }
        let mut y = vec![0f32; n * self.rows];
        for (o, col) in yt.chunks_exact(n).enumerate() {
            for (r, &v) in col.iter().enumerate() {
                y[r * self.rows + o] = v;
            }
        }
        y
    }

    /// Output rows `first..` (as many as `yt` holds, `n` values each) into `yt`.
    fn rows_into(&self, first: usize, x: &[f32], n: usize, yt: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            if n <= 2 {
                for (i, out) in yt.chunks_exact_mut(n).enumerate() {
                    // SAFETY: the CPU has AVX2 and FMA (checked above); the
                    // row is whole blocks of `self.cols`; `x` holds `n` rows
                    // of `self.cols` and `out` holds `n`.
                    unsafe { avx2::fused_dots(self.format, self.row(first + i), x, n, out) };
                }
                return;
            }
            // Two weight rows at a time: each row of `x` loaded serves both
            // (a decode step's many rows are bound by arithmetic, not memory).
            let mut w = vec![0f32; 2 * self.cols];
            let (w0, w1) = w.split_at_mut(self.cols);
            let mut pairs = yt.chunks_exact_mut(2 * n);
            let mut row = first;
            for out in &mut pairs {
                // SAFETY: as above; `w0`/`w1` hold `self.cols` each and `out`
                // holds `2 × n`.
                unsafe {
                    avx2::dequantize_row(self.format, self.row(row), w0);
                    avx2::dequantize_row(self.format, self.row(row + 1), w1);
                    avx2::dots([&*w0, &*w1], x, n, out);
                }
                row += 2;
            }
            let rest = pairs.into_remainder();
            if !rest.is_empty() {
                // SAFETY: as above; `rest` holds `n`.
                unsafe {
                    avx2::dequantize_row(self.format, self.row(row), w0);
                    avx2::dots([&*w0], x, n, rest);
                }
            }
            return;
        }
        let mut w = vec![0f32; self.cols];
        for (i, out) in yt.chunks_exact_mut(n).enumerate() {
            dequantize_row_portable(self.format, self.row(first + i), &mut w);
            for (r, o) in out.iter_mut().enumerate() {
                *o = dot_portable(&w, &x[r * self.cols..(r + 1) * self.cols]);
            }
        }
    }
}

fn dequantize_row_portable(format: QuantFormat, row: Row, out: &mut [f32]) {
    let per = format.scales_per_block();
    let quants = row.quants.chunks_exact(format.quant_bytes());
    for ((qs, sc), dst) in quants
        .zip(row.scales.chunks_exact(per))
        .zip(out.chunks_exact_mut(BLOCK))
    {
        let d = sc[0];
        match format {
            QuantFormat::Q4_0 => {
                for (j, &q) in qs.iter().enumerate() {
                    dst[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
                    dst[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
                }
            }
            QuantFormat::Q4_1 => {
                let m = sc[1];
                for (j, &q) in qs.iter().enumerate() {
                    dst[j] = (q & 0x0f) as f32 * d + m;
                    dst[j + 16] = (q >> 4) as f32 * d + m;
                }
            }
            QuantFormat::Q8_0 => {
                for (j, &q) in qs.iter().enumerate() {
                    dst[j] = (q as i8) as f32 * d;
                }
            }
        }
    }
}

/// The reduction order of the AVX2 kernels (16 lanes: 2 accumulators of 8),
/// without fused multiply-adds.
fn dot_portable(w: &[f32], x: &[f32]) -> f32 {
    // Sixteen partial sums: element `k` goes to `k mod 16` (the AVX2 path's
    // two eight-wide accumulators), combined as it combines them.
    let mut acc = [0f32; 16];
    for (wc, xc) in w.chunks_exact(16).zip(x.chunks_exact(16)) {
        for l in 0..16 {
            acc[l] += wc[l] * xc[l];
        }
    }
    let mut lanes = [0f32; 8];
    for (l, lane) in lanes.iter_mut().enumerate() {
        *lane = acc[l] + acc[8 + l];
    }
    let quad = [
        lanes[0] + lanes[4],
        lanes[1] + lanes[5],
        lanes[2] + lanes[6],
        lanes[3] + lanes[7],
    ];
    (quad[0] + quad[2]) + (quad[1] + quad[3])
}

pub mod pool {
    //! Helper threads for the products of one decode step. A product takes
    //! ~10–100 µs and a step runs ~120 of them back to back, so a helper
    //! that went to sleep between two of them would be woken ~120 times per
    //! step at tens of microseconds each. Helpers spin for a short while
    //! after each part (`SPIN`, yielding the core now and then to any other
    //! runnable thread), then sleep until the next product.
    //!
    //! One product at a time uses the helpers; a caller that finds them busy
    //! (another thread's product) computes all its parts itself. A product
    //! uses at most as many threads as its caller asks for (torch's thread
    //! count on that thread): helpers past that are not woken and do not
    //! spin.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex, OnceLock, TryLockError};
    use std::time::{Duration, Instant};

    /// How long a helper keeps checking for the next product before it sleeps.
    const SPIN: Duration = Duration::from_micros(500);

    /// A type-erased `&(dyn Fn(usize) + Sync)` valid until the caller has
    /// seen every part done.
    #[derive(Clone, Copy)]
    struct Job {
        work: *const (dyn Fn(usize) + Sync),
        parts: usize,
        /// Helpers `0..helpers` may join.
        helpers: usize,
    }
    // SAFETY: the closure is `Sync`; `run` keeps it alive until every
    // helper has reported its parts done.
    unsafe impl Send for Job {}

    struct Shared {
        /// Bumped (under `job`'s lock) for each product.
        generation: AtomicUsize,
        /// Helpers that joined the current product (under `job`'s lock,
        /// while it was open).
        joined: AtomicUsize,
        /// Helpers that joined the current product and are done with it.
        done: AtomicUsize,
        /// The next part of the current product nobody has taken.
        next: AtomicUsize,
        /// A part of the current product panicked on a helper.
        helper_panicked: std::sync::atomic::AtomicBool,
        job: Mutex<Option<Job>>,
        /// One per helper, so a product wakes only the helpers it may use.
        wake: Vec<Condvar>,
        /// Helper threads running (set once, before the first product).
        helpers: AtomicUsize,
    }

    struct Pool {
        shared: &'static Shared,
        /// Held by the caller using the helpers.
        busy: Mutex<()>,
    }

    fn pool() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| {
            let wanted = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .saturating_sub(1)
                .min(15);
            let shared: &'static Shared = Box::leak(Box::new(Shared {
                generation: AtomicUsize::new(0),
                joined: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
                next: AtomicUsize::new(0),
                helper_panicked: std::sync::atomic::AtomicBool::new(false),
                job: Mutex::new(None),
                wake: (0..wanted).map(|_| Condvar::new()).collect(),
                helpers: AtomicUsize::new(0),
            }));
            let mut running = 0;
            for index in 0..wanted {
                let spawned = std::thread::Builder::new()
                    .name(format!("kiln-quant-{index}"))
                    .spawn(move || helper(shared, index));
                if spawned.is_err() {
                    // Fewer helpers: their parts are done by the caller.
                    break;
                }
                running += 1;
            }
            shared.helpers.store(running, Ordering::Release);
            Pool {
                shared,
                busy: Mutex::new(()),
            }
        })
    }

    fn helper(shared: &'static Shared, index: usize) {
        let mut seen = 0;
        // Spin only after a product this helper took part in.
        let mut spin = false;
        loop {
            if spin {
                let spin_from = Instant::now();
                let mut spins = 0u32;
                while shared.generation.load(Ordering::Acquire) == seen {
                    spins += 1;
                    if spins.is_multiple_of(64) {
                        if spin_from.elapsed() > SPIN {
                            break;
                        }
                        // On a machine with more runnable threads than
                        // cores, let them run: waiting here must not take
                        // a core from other work (other workers, the node).
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
            let job = {
                let mut guard = shared.job.lock().unwrap_or_else(|e| e.into_inner());
                while shared.generation.load(Ordering::Acquire) == seen {
                    guard = shared.wake[index]
                        .wait(guard)
                        .unwrap_or_else(|e| e.into_inner());
                }
                seen = shared.generation.load(Ordering::Acquire);
                match *guard {
                    Some(job) if index < job.helpers => {
                        shared.joined.fetch_add(1, Ordering::AcqRel);
                        Some(job)
                    }
                    _ => None,
                }
            };
            spin = job.is_some();
            // A helper that comes late (the product already closed) finds
            // no job and never touches the closure.
            if let Some(job) = job {
                // SAFETY: this helper joined while the job was open; `run`
                // waits for every helper that joined before the closure dies.
                let work = unsafe { &*job.work };
                // A panicking part must still count this helper done (the
                // caller waits for it); the caller then panics in its place.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    take_parts(shared, work, job.parts)
                }));
                if outcome.is_err() {
                    shared.helper_panicked.store(true, Ordering::Release);
                }
                shared.done.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Runs parts until none is left.
    fn take_parts(shared: &Shared, work: &(dyn Fn(usize) + Sync), parts: usize) {
        loop {
            let part = shared.next.fetch_add(1, Ordering::AcqRel);
            if part >= parts {
                break;
            }
            work(part);
        }
    }

    /// Runs `work(0)`, …, `work(parts − 1)` on the calling thread and the
    /// helpers, each taking the next part not taken yet (the caller alone
    /// when there are no helpers or they are busy), and returns when all are
    /// done, using at most `threads` threads (the caller's included). The
    /// caller never waits for a helper that has not started: it takes the
    /// parts that helper would have.
    pub fn run(parts: usize, threads: usize, work: &(dyn Fn(usize) + Sync)) {
        let pool = pool();
        let helpers = pool
            .shared
            .helpers
            .load(Ordering::Acquire)
            .min(threads.saturating_sub(1));
        let guard = match (parts > 1 && helpers > 0).then(|| pool.busy.try_lock()) {
            Some(Ok(guard)) => guard,
            Some(Err(TryLockError::Poisoned(e))) => e.into_inner(),
            _ => {
                (0..parts).for_each(work);
                return;
            }
        };
        let shared = pool.shared;
        {
            let mut job = shared.job.lock().unwrap_or_else(|e| e.into_inner());
            // Every helper of the previous product is done (it was waited
            // for), so these can be reset.
            shared.joined.store(0, Ordering::Release);
            shared.done.store(0, Ordering::Release);
            shared.next.store(0, Ordering::Release);
            // SAFETY (lifetime erasure): the pointer is only used by helpers
            // before they count themselves done, which this call waits for.
            let work: *const (dyn Fn(usize) + Sync + '_) = work;
            *job = Some(Job {
                work: unsafe {
                    std::mem::transmute::<
                        *const (dyn Fn(usize) + Sync + '_),
                        *const (dyn Fn(usize) + Sync + 'static),
                    >(work)
                },
                parts,
                helpers,
            });
            shared.generation.fetch_add(1, Ordering::AcqRel);
            for wake in &shared.wake[..helpers] {
                wake.notify_one();
            }
        }
        // The closure must outlive the helpers' use of it even if a part
        // panics here: close and wait first, then carry the panic on.
        let own = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            take_parts(shared, work, parts)
        }));
        // Close the product: helpers that have not joined yet (asleep, or
        // their core taken by another thread) stay out, and only the ones
        // that joined — working on their last part now — are waited for.
        let joined = {
            let mut job = shared.job.lock().unwrap_or_else(|e| e.into_inner());
            *job = None;
            shared.joined.load(Ordering::Acquire)
        };
        let mut spins = 0u32;
        while shared.done.load(Ordering::Acquire) < joined {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            }
        }
        let panicked = shared.helper_panicked.swap(false, Ordering::AcqRel);
        drop(guard);
        if let Err(payload) = own {
            std::panic::resume_unwind(payload);
        }
        if panicked {
            panic!("a part of a product panicked on a helper thread");
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{QuantFormat, Row, BLOCK};
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    pub fn available() -> bool {
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }

    /// Eight bytes → eight f32 lanes (zero-extended).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn u8x8(v: __m128i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
    }

    /// Block `b` of a row as four vectors of eight weights, the same values
    /// as the portable formulas (a multiply then an add, never fused:
    /// bit-identical).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block(format: QuantFormat, row: Row, b: usize) -> [__m256; 4] {
        match format {
            QuantFormat::Q4_0 | QuantFormat::Q4_1 => {
                let low_nibbles = _mm_set1_epi8(0x0f);
                let qs = _mm_loadu_si128(row.quants.as_ptr().add(16 * b) as *const __m128i);
                let lo = _mm_and_si128(qs, low_nibbles);
                let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), low_nibbles);
                let mut q = [
                    u8x8(lo),
                    u8x8(_mm_srli_si128(lo, 8)),
                    u8x8(hi),
                    u8x8(_mm_srli_si128(hi, 8)),
                ];
                if format == QuantFormat::Q4_1 {
                    let d = _mm256_set1_ps(*row.scales.get_unchecked(2 * b));
                    let m = _mm256_set1_ps(*row.scales.get_unchecked(2 * b + 1));
                    for v in &mut q {
                        *v = _mm256_add_ps(_mm256_mul_ps(*v, d), m);
                    }
                } else {
                    // (q − 8) is exact in f32, as the portable integer subtraction.
                    let d = _mm256_set1_ps(*row.scales.get_unchecked(b));
                    let eight = _mm256_set1_ps(8.0);
                    for v in &mut q {
                        *v = _mm256_mul_ps(_mm256_sub_ps(*v, eight), d);
                    }
                }
                q
            }
            QuantFormat::Q8_0 => {
                let d = _mm256_set1_ps(*row.scales.get_unchecked(b));
                let p = row.quants.as_ptr().add(32 * b);
                let mut q = [_mm256_setzero_ps(); 4];
                for (k, v) in q.iter_mut().enumerate() {
                    let q8 = _mm_loadl_epi64(p.add(8 * k) as *const __m128i);
                    *v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), d);
                }
                q
            }
        }
    }

    /// One weight row in f32 into `out`.
    ///
    /// # Safety
    /// AVX2 and FMA present; `row` is whole blocks; `out` holds 32 per block.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dequantize_row(format: QuantFormat, row: Row, out: &mut [f32]) {
        let p = out.as_mut_ptr();
        for b in 0..row.quants.len() / format.quant_bytes() {
            for (k, v) in block(format, row, b).iter().enumerate() {
                _mm256_storeu_ps(p.add(BLOCK * b + 8 * k), *v);
            }
        }
    }

    /// Horizontal sum of an output's two accumulators, in the portable
    /// loop's order.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn reduce(a: [__m256; 2]) -> f32 {
        let v = _mm256_add_ps(a[0], a[1]);
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let one = _mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1));
        _mm_cvtss_f32(one)
    }

    /// `out[r] = w · x[r]` for `n` ≤ 2 rows of `x`, the weights dequantized
    /// in registers. Every product here, whatever the batch, reduces one
    /// way: each output has two accumulators, the first summing the
    /// eight-wide slices at `k ≡ 0` (mod 16) in ascending `k`, the second
    /// those at `k ≡ 8`, then [`reduce`] — so a request's logits do not
    /// depend on its batch.
    ///
    /// # Safety
    /// AVX2 and FMA present; `row` is whole blocks of `cols`; `x` holds
    /// `n × cols`; `out` holds `n`; `n` is 1 or 2.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fused_dots(format: QuantFormat, row: Row, x: &[f32], n: usize, out: &mut [f32]) {
        let blocks = row.quants.len() / format.quant_bytes();
        let cols = blocks * BLOCK;
        let x0 = x.as_ptr();
        if n == 2 {
            let x1 = x0.add(cols);
            let mut a = [_mm256_setzero_ps(); 2];
            let mut c = [_mm256_setzero_ps(); 2];
            for b in 0..blocks {
                let w = block(format, row, b);
                for (s, v) in w.iter().enumerate() {
                    let k = BLOCK * b + 8 * s;
                    a[s % 2] = _mm256_fmadd_ps(*v, _mm256_loadu_ps(x0.add(k)), a[s % 2]);
                    c[s % 2] = _mm256_fmadd_ps(*v, _mm256_loadu_ps(x1.add(k)), c[s % 2]);
                }
            }
            out[0] = reduce(a);
            out[1] = reduce(c);
        } else {
            let mut a = [_mm256_setzero_ps(); 2];
            for b in 0..blocks {
                let w = block(format, row, b);
                for (s, v) in w.iter().enumerate() {
                    let k = BLOCK * b + 8 * s;
                    a[s % 2] = _mm256_fmadd_ps(*v, _mm256_loadu_ps(x0.add(k)), a[s % 2]);
                }
            }
            out[0] = reduce(a);
        }
    }

    /// `out[i × n + r] = ws[i] · x[r]` for the `W` (1 or 2) dequantized
    /// weight rows in `ws` and the `n` rows of `x`, in [`fused_dots`]'
    /// arithmetic. Tiles of two weight rows × three rows of `x`: each load
    /// of `x` feeds two FMAs and each weight load three, and the twelve
    /// accumulators fill the FMA pipeline (one row at a time is bound by
    /// loads: ~0.6× the arithmetic rate measured here).
    ///
    /// # Safety
    /// AVX2 and FMA present; every `ws[i]` holds `cols`, a multiple of 16;
    /// `x` holds `n × cols`; `out` holds `W × n`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dots<const W: usize>(ws: [&[f32]; W], x: &[f32], n: usize, out: &mut [f32]) {
        let cols = ws[0].len();
        let w: [*const f32; W] = std::array::from_fn(|i| ws[i].as_ptr());
        let mut r = 0;
        while r < n {
            let take = (n - r).min(3);
            let sums = match take {
                1 => tile::<W, 1>(w, x.as_ptr().add(r * cols), cols).map(|s| [s[0], 0.0, 0.0]),
                2 => tile::<W, 2>(w, x.as_ptr().add(r * cols), cols).map(|s| [s[0], s[1], 0.0]),
                _ => tile::<W, 3>(w, x.as_ptr().add(r * cols), cols),
            };
            for (i, row_sums) in sums.iter().enumerate() {
                out[i * n + r..i * n + r + take].copy_from_slice(&row_sums[..take]);
            }
            r += take;
        }
    }

    /// Weight rows `w` against the `X` consecutive rows of `x` at `x0`.
    // Index loops over constant bounds: unrolled, the accumulators stay in
    // registers.
    #[allow(clippy::needless_range_loop)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const W: usize, const X: usize>(
        w: [*const f32; W],
        x0: *const f32,
        cols: usize,
    ) -> [[f32; X]; W] {
        let mut acc = [[[_mm256_setzero_ps(); 2]; X]; W];
        let mut k = 0;
        while k < cols {
            for l in 0..2 {
                let v: [__m256; W] = std::array::from_fn(|i| _mm256_loadu_ps(w[i].add(k + 8 * l)));
                for j in 0..X {
                    let y = _mm256_loadu_ps(x0.add(j * cols + k + 8 * l));
                    for i in 0..W {
                        acc[i][j][l] = _mm256_fmadd_ps(v[i], y, acc[i][j][l]);
                    }
                }
            }
            k += 16;
        }
        acc.map(|row| row.map(|a| reduce(a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequantize;

    /// Deterministic pseudo-random bytes (xorshift).
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect()
    }

    /// Random blocks whose f16 scales are finite and small (exponent bits
    /// kept in range), so products stay finite.
    fn blocks(format: QuantFormat, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let bb = format.block_bytes();
        let mut data = bytes(rows * cols / BLOCK * bb, seed);
        for b in data.chunks_exact_mut(bb) {
            // d (and m) in about ±[2^-10, 2^-6]: exponent field 5..9.
            b[1] = (b[1] & 0x83) | 0x14;
            if format == QuantFormat::Q4_1 {
                b[3] = (b[3] & 0x83) | 0x14;
            }
        }
        data
    }

    fn ggml(format: QuantFormat) -> GgmlType {
        match format {
            QuantFormat::Q4_0 => GgmlType::Q4_0,
            QuantFormat::Q4_1 => GgmlType::Q4_1,
            QuantFormat::Q8_0 => GgmlType::Q8_0,
        }
    }

    #[test]
    fn rows_dequantize_to_the_loaders_values_bit_for_bit() {
        for format in [QuantFormat::Q4_0, QuantFormat::Q4_1, QuantFormat::Q8_0] {
            let (rows, cols) = (5, 96);
            let data = blocks(format, rows, cols, 7);
            let m = QuantMatrix::new(ggml(format), rows, cols, &data).unwrap();
            let reference = dequantize(ggml(format), &data).unwrap();
            for r in 0..rows {
                let mut portable = vec![0f32; cols];
                m.dequantize_row(r, &mut portable);
                let want = &reference[r * cols..(r + 1) * cols];
                assert_eq!(
                    portable.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{format:?} row {r}"
                );
                #[cfg(target_arch = "x86_64")]
                if avx2::available() {
                    let mut simd = vec![0f32; cols];
                    // SAFETY: AVX2 checked; whole blocks; `simd` holds the row.
                    unsafe { avx2::dequantize_row(format, m.row(r), &mut simd) };
                    assert_eq!(
                        simd.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "{format:?} row {r} (AVX2)"
                    );
                }
            }
        }
    }

    #[test]
    fn products_equal_f64_products_of_the_dequantized_weights() {
        for format in [QuantFormat::Q4_0, QuantFormat::Q4_1, QuantFormat::Q8_0] {
            let (rows, cols) = (37, 160);
            let data = blocks(format, rows, cols, 11);
            let m = QuantMatrix::new(ggml(format), rows, cols, &data).unwrap();
            let w = dequantize(ggml(format), &data).unwrap();
            for n in [1, 2, 3, 8] {
                let x: Vec<f32> = bytes(n * cols, 3 + n as u64)
                    .iter()
                    .map(|&b| (b as f32 - 127.5) / 64.0)
                    .collect();
                for threads in [1, 2, 3] {
                    let y = m.matmul(&x, n, threads);
                    assert_eq!(y.len(), n * rows);
                    for r in 0..n {
                        for o in 0..rows {
                            let exact: f64 = (0..cols)
                                .map(|k| w[o * cols + k] as f64 * x[r * cols + k] as f64)
                                .sum();
                            let scale: f64 = (0..cols)
                                .map(|k| (w[o * cols + k] as f64 * x[r * cols + k] as f64).abs())
                                .sum();
                            let got = y[r * rows + o] as f64;
                            assert!(
                                (got - exact).abs() <= 1e-5 * scale.max(1e-30),
                                "{format:?} n={n} threads={threads} [{r},{o}]: {got} vs {exact}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_rows_result_does_not_depend_on_its_batch_or_threads() {
        let (rows, cols) = (19, 64);
        let data = blocks(QuantFormat::Q4_1, rows, cols, 5);
        let m = QuantMatrix::new(GgmlType::Q4_1, rows, cols, &data).unwrap();
        let x: Vec<f32> = bytes(9 * cols, 9)
            .iter()
            .map(|&b| (b as f32 - 127.5) / 32.0)
            .collect();
        // Every batch size the kernels tile differently (1–2 fused, 3–9 in
        // tiles of up to four), an odd number of weight rows, 1 and 2 threads.
        for n in 2..=9 {
            let batch = m.matmul(&x[..n * cols], n, 1 + n % 2);
            for r in 0..n {
                let alone = m.matmul(&x[r * cols..(r + 1) * cols], 1, 1);
                assert_eq!(
                    alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    batch[r * rows..(r + 1) * rows]
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>(),
                    "row {r} of a batch of {n}"
                );
            }
        }
        let batch = m.matmul(&x[..5 * cols], 5, 2);
        // The portable loop reduces in the same order; without fused
        // multiply-adds it may differ in the last bits only.
        let w = {
            let mut w = vec![0f32; cols];
            m.dequantize_row(3, &mut w);
            w
        };
        let portable = dot_portable(&w, &x[..cols]);
        assert!((portable - batch[3]).abs() <= 1e-5 * portable.abs().max(1.0));
    }

    #[test]
    fn the_pool_runs_every_part_once_within_the_threads_asked_for() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Mutex;
        for threads in [1, 2, 4] {
            for parts in [1, 2, 7, 300] {
                let runs: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                let seen = Mutex::new(std::collections::BTreeSet::new());
                pool::run(parts, threads, &|i| {
                    runs[i].fetch_add(1, Ordering::Relaxed);
                    seen.lock()
                        .unwrap()
                        .insert(format!("{:?}", std::thread::current().id()));
                });
                assert!(
                    runs.iter().all(|r| r.load(Ordering::Relaxed) == 1),
                    "{threads} threads, {parts} parts"
                );
                let used = seen.lock().unwrap().len();
                assert!(used <= threads, "{used} threads used, {threads} allowed");
            }
        }
        // A panicking part (here or on a helper) reaches the caller, after
        // every helper let go of the closure; the pool keeps working.
        let outcome = std::panic::catch_unwind(|| {
            pool::run(64, 2, &|i| assert_ne!(i, 37, "part 37 fails"));
        });
        assert!(outcome.is_err());
        let count = AtomicUsize::new(0);
        pool::run(64, 2, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 64);
        // One thread: everything on the caller's.
        let caller = std::thread::current().id();
        pool::run(50, 1, &|_| assert_eq!(std::thread::current().id(), caller));
    }

    #[test]
    fn select_and_stack_move_whole_rows() {
        let (rows, cols) = (4, 64);
        let data = blocks(QuantFormat::Q8_0, rows, cols, 13);
        let m = QuantMatrix::new(GgmlType::Q8_0, rows, cols, &data).unwrap();
        let row = |m: &QuantMatrix, r: usize| {
            let mut v = vec![0f32; cols];
            m.dequantize_row(r, &mut v);
            v
        };
        let picked = m.select_rows(&[3, 0, 2]).unwrap();
        assert_eq!(picked.rows(), 3);
        assert_eq!(row(&picked, 0), row(&m, 3));
        assert_eq!(row(&picked, 1), row(&m, 0));
        assert!(m.select_rows(&[4]).is_none());
        let both = QuantMatrix::stack(&[&picked, &m]).unwrap();
        assert_eq!(both.rows(), 7);
        assert_eq!(row(&both, 3), row(&m, 0));
        let other =
            QuantMatrix::new(GgmlType::Q4_1, 1, 64, &blocks(QuantFormat::Q4_1, 1, 64, 1)).unwrap();
        assert!(QuantMatrix::stack(&[&m, &other]).is_none());
        // Shapes that are not whole blocks are refused.
        assert!(QuantMatrix::new(GgmlType::Q8_0, 1, 48, &[0; 51]).is_none());
        assert!(QuantMatrix::new(GgmlType::Q8_0, 2, 32, &[0; 34]).is_none());
        assert!(QuantMatrix::new(GgmlType::F32, 1, 32, &[0; 128]).is_none());
    }
}
