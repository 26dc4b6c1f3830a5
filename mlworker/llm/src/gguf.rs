//! GGUF files (llama.cpp's model format, versions 2 and 3): the header, every
//! metadata key/value, the tensor directory, and dequantization to `f32`.
//!
//! Layout (all integers little-endian):
//! ```text
//! magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
//! kv_count × (key: string, value_type u32, value)
//! tensor_count × (name: string, n_dims u32, dims n_dims×u64, ggml_type u32, offset u64)
//! padding to `general.alignment` (default 32)
//! tensor data; each tensor at data_start + offset (offset a multiple of the alignment)
//! ```
//! A string is `len u64` then `len` UTF-8 bytes; an array is `elem_type u32,
//! count u64` then `count` values. `dims[0]` is the fastest-varying axis, so a
//! GGUF `[576, 49152]` matrix is a row-major `[49152, 576]` tensor
//! ([`TensorInfo::shape`] gives the row-major order).
//!
//! Every length read from the file is checked against the bytes that remain
//! before anything is allocated: a malformed or truncated file is an error,
//! never a panic or a huge allocation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// What can go wrong reading a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not a GGUF file (magic {0:02x?}, expected \"GGUF\")")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    UnsupportedVersion(u32),
    #[error("GGUF truncated: {what} needs {needed} bytes at offset {offset}, the file has {len}")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        len: u64,
    },
    #[error("malformed GGUF: {0}")]
    Malformed(String),
    #[error("metadata key {0:?} is missing")]
    MissingKey(String),
    #[error("metadata key {key:?} is {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("tensor {0:?} is not in the file")]
    MissingTensor(String),
    #[error("tensor {name:?}: ggml type {ggml_type} cannot be dequantized (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)")]
    UnsupportedType { name: String, ggml_type: GgmlType },
}

pub type Result<T, E = GgufError> = std::result::Result<T, E>;

/// A metadata value. Integers keep their stored width; arrays hold values of
/// one element type.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The GGUF type name, for error messages.
    pub fn type_name(&self) -> String {
        match self {
            MetaValue::U8(_) => "u8".into(),
            MetaValue::I8(_) => "i8".into(),
            MetaValue::U16(_) => "u16".into(),
            MetaValue::I16(_) => "i16".into(),
            MetaValue::U32(_) => "u32".into(),
            MetaValue::I32(_) => "i32".into(),
            MetaValue::U64(_) => "u64".into(),
            MetaValue::I64(_) => "i64".into(),
            MetaValue::F32(_) => "f32".into(),
            MetaValue::F64(_) => "f64".into(),
            MetaValue::Bool(_) => "bool".into(),
            MetaValue::String(_) => "string".into(),
            MetaValue::Array(v) => match v.first() {
                Some(first) => format!("array of {} {}", v.len(), first.type_name()),
                None => "empty array".into(),
            },
        }
    }

    /// Any integer type that is non-negative, widened to u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type, widened to i64 (u64 above i64::MAX is `None`).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::I8(v) => Some(v.into()),
            MetaValue::I16(v) => Some(v.into()),
            MetaValue::I32(v) => Some(v.into()),
            MetaValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// F32 or F64 (narrowed) as f32.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            MetaValue::F32(v) => Some(v),
            MetaValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// A ggml tensor type id with its block geometry. Unknown ids are kept (so a
/// file with a newer quantization still parses) but cannot be dequantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GgmlType(pub u32);

impl GgmlType {
    pub const F32: GgmlType = GgmlType(0);
    pub const F16: GgmlType = GgmlType(1);
    pub const Q4_0: GgmlType = GgmlType(2);
    pub const Q4_1: GgmlType = GgmlType(3);
    pub const Q5_0: GgmlType = GgmlType(6);
    pub const Q5_1: GgmlType = GgmlType(7);
    pub const Q8_0: GgmlType = GgmlType(8);
    pub const Q8_1: GgmlType = GgmlType(9);
    pub const Q2_K: GgmlType = GgmlType(10);
    pub const Q3_K: GgmlType = GgmlType(11);
    pub const Q4_K: GgmlType = GgmlType(12);
    pub const Q5_K: GgmlType = GgmlType(13);
    pub const Q6_K: GgmlType = GgmlType(14);
    pub const Q8_K: GgmlType = GgmlType(15);
    pub const BF16: GgmlType = GgmlType(30);

    /// `(elements per block, bytes per block)` for the types whose layout is
    /// known (the dequantizable ones and the common K-quants, so their sizes
    /// can be bounds-checked), `None` otherwise.
    pub fn block_geometry(self) -> Option<(u64, u64)> {
        Some(match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q8_1 => (32, 36),
            GgmlType::Q2_K => (256, 84),
            GgmlType::Q3_K => (256, 110),
            GgmlType::Q4_K => (256, 144),
            GgmlType::Q5_K => (256, 176),
            GgmlType::Q6_K => (256, 210),
            GgmlType::Q8_K => (256, 292),
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q8_1 => "Q8_1",
            GgmlType::Q2_K => "Q2_K",
            GgmlType::Q3_K => "Q3_K",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q5_K => "Q5_K",
            GgmlType::Q6_K => "Q6_K",
            GgmlType::Q8_K => "Q8_K",
            _ => "unknown",
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// One entry of the tensor directory.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` varies fastest.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset from the start of the data section (already checked: aligned,
    /// and the tensor's bytes lie inside the file when its type is known).
    pub offset: u64,
}

impl TensorInfo {
    /// Row-major shape (GGUF dims reversed), e.g. `[vocab, hidden]` for `token_embd.weight`.
    pub fn shape(&self) -> Vec<i64> {
        // dims were checked to fit in i64 when parsed.
        self.dims.iter().rev().map(|&d| d as i64).collect()
    }

    pub fn element_count(&self) -> u64 {
        // Checked for overflow when parsed.
        self.dims.iter().product()
    }

    /// Bytes the tensor occupies, when its type's layout is known.
    pub fn byte_size(&self) -> Option<u64> {
        let (block, bytes) = self.ggml_type.block_geometry()?;
        Some(self.element_count() / block * bytes)
    }
}

/// A parsed GGUF file, held in memory (the whole file: tensor data is sliced
/// out of it at dequantization).
pub struct GgufFile {
    pub version: u32,
    /// Every key/value, ordered by key.
    pub metadata: BTreeMap<String, MetaValue>,
    /// The tensor directory in file order.
    pub tensors: Vec<TensorInfo>,
    /// `general.alignment`, default 32.
    pub alignment: u64,
    /// Where the data section starts in the file.
    pub data_start: u64,
    bytes: Vec<u8>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n > remaining {
            return Err(GgufError::Truncated {
                what: what.to_string(),
                offset: self.pos as u64,
                needed: n,
                len: self.bytes.len() as u64,
            });
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let slice = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| GgufError::Malformed(format!("{what} is not valid UTF-8")))
    }

    fn value(&mut self, value_type: u32, key: &str, depth: u32) -> Result<MetaValue> {
        Ok(match value_type {
            0 => MetaValue::U8(self.array::<1>(key)?[0]),
            1 => MetaValue::I8(self.array::<1>(key)?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(key)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(key)?)),
            4 => MetaValue::U32(self.u32(key)?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(key)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => {
                    return Err(GgufError::Malformed(format!(
                        "key {key:?}: bool byte {b} is neither 0 nor 1"
                    )))
                }
            },
            8 => MetaValue::String(self.string(key)?),
            9 => {
                if depth > 0 {
                    // llama.cpp itself does not read nested arrays; refusing them
                    // also bounds the recursion.
                    return Err(GgufError::Malformed(format!(
                        "key {key:?}: nested arrays are not supported"
                    )));
                }
                let elem_type = self.u32(key)?;
                let count = self.u64(key)?;
                // Every element takes at least one byte: a count larger than
                // what is left is a lie, caught before allocating.
                let min_size = match elem_type {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    t => {
                        return Err(GgufError::Malformed(format!(
                            "key {key:?}: unknown array element type {t}"
                        )))
                    }
                };
                if count.saturating_mul(min_size) > self.remaining() {
                    return Err(GgufError::Truncated {
                        what: format!("array {key:?} of {count} elements"),
                        offset: self.pos as u64,
                        needed: count.saturating_mul(min_size),
                        len: self.bytes.len() as u64,
                    });
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(elem_type, key, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64(key)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(key)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(key)?)),
            t => {
                return Err(GgufError::Malformed(format!(
                    "key {key:?}: unknown value type {t}"
                )))
            }
        })
    }
}

/// The most dimensions a ggml tensor has (GGML_MAX_DIMS).
const MAX_DIMS: u32 = 4;

impl GgufFile {
    /// Reads and parses the file at `path` (the whole file is kept in memory).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| GgufError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(bytes)
    }

    /// Parses a GGUF image already in memory.
    pub fn parse(bytes: Vec<u8>) -> Result<Self> {
        let mut cur = Cursor {
            bytes: &bytes,
            pos: 0,
        };
        let magic: [u8; 4] = cur.array("magic")?;
        if &magic != b"GGUF" {
            return Err(GgufError::BadMagic(magic));
        }
        let version = cur.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let tensor_count = cur.u64("tensor count")?;
        let kv_count = cur.u64("metadata count")?;
        // A key/value takes at least 8 (key length) + 4 (type) + 1 bytes, a
        // tensor info at least 8 + 4 + 4 + 8: bound the counts by the file.
        if kv_count.saturating_mul(13) > cur.remaining()
            || tensor_count.saturating_mul(24) > cur.remaining()
        {
            return Err(GgufError::Malformed(format!(
                "{kv_count} metadata entries and {tensor_count} tensors cannot fit in {} bytes",
                bytes.len()
            )));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = cur.string("metadata key")?;
            let value_type = cur.u32(&key)?;
            let value = cur.value(value_type, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(GgufError::Malformed(format!(
                    "metadata key {key:?} appears twice"
                )));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(GgufError::Malformed(format!(
                        "general.alignment {v:?} is not a power of two"
                    )))
                }
            },
        };
        let mut tensors = Vec::with_capacity(tensor_count as usize);
        for _ in 0..tensor_count {
            let name = cur.string("tensor name")?;
            let n_dims = cur.u32(&name)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::Malformed(format!(
                    "tensor {name:?} has {n_dims} dimensions (1..={MAX_DIMS})"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(cur.u64(&name)?);
            }
            let count = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&c| i64::try_from(c).is_ok())
                .ok_or_else(|| {
                    GgufError::Malformed(format!("tensor {name:?}: dims {dims:?} overflow"))
                })?;
            let ggml_type = GgmlType(cur.u32(&name)?);
            let offset = cur.u64(&name)?;
            if offset % alignment != 0 {
                return Err(GgufError::Malformed(format!(
                    "tensor {name:?}: offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            if let Some((block, _)) = ggml_type.block_geometry() {
                if dims[0] % block != 0 || count % block != 0 {
                    return Err(GgufError::Malformed(format!(
                        "tensor {name:?}: row length {} is not a multiple of {}'s block of {block}",
                        dims[0], ggml_type
                    )));
                }
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let header_end = cur.pos as u64;
        let data_start = header_end.div_ceil(alignment) * alignment;
        let file_len = bytes.len() as u64;
        for t in &tensors {
            if let Some(size) = t.byte_size() {
                let end = data_start
                    .checked_add(t.offset)
                    .and_then(|s| s.checked_add(size));
                if end.is_none_or(|e| e > file_len) {
                    return Err(GgufError::Truncated {
                        what: format!("tensor {:?} ({})", t.name, t.ggml_type),
                        offset: data_start.saturating_add(t.offset),
                        needed: size,
                        len: file_len,
                    });
                }
            }
        }
        let mut names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(GgufError::Malformed(format!(
                "tensor {:?} appears twice",
                w[0]
            )));
        }
        Ok(GgufFile {
            version,
            metadata,
            tensors,
            alignment,
            data_start,
            bytes,
        })
    }

    /// The file's identity: SHA-256 of all its bytes, lower-case hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(&self.bytes))
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&MetaValue> {
        self.get(key)
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    fn wrong(key: &str, expected: &'static str, found: &MetaValue) -> GgufError {
        GgufError::WrongType {
            key: key.to_string(),
            expected,
            found: found.type_name(),
        }
    }

    /// A required non-negative integer of any width.
    pub fn u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| Self::wrong(key, "a non-negative integer", v))
    }

    /// A required float (f32 or f64).
    pub fn f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f32().ok_or_else(|| Self::wrong(key, "a float", v))
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "a string", v))
    }

    /// An optional bool (`None` when absent, error when of another type).
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| Self::wrong(key, "a bool", v)),
        }
    }

    /// A required array of strings.
    pub fn str_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.require(key)?;
        let arr = v
            .as_array()
            .ok_or_else(|| Self::wrong(key, "an array of strings", v))?;
        arr.iter()
            .map(|x| {
                x.as_str()
                    .ok_or_else(|| Self::wrong(key, "an array of strings", v))
            })
            .collect()
    }

    /// A required array of integers, as i64.
    pub fn int_array(&self, key: &str) -> Result<Vec<i64>> {
        let v = self.require(key)?;
        let arr = v
            .as_array()
            .ok_or_else(|| Self::wrong(key, "an array of integers", v))?;
        arr.iter()
            .map(|x| {
                x.as_i64()
                    .ok_or_else(|| Self::wrong(key, "an array of integers", v))
            })
            .collect()
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor (bounds were checked at parse time).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> Result<&[u8]> {
        let size = info.byte_size().ok_or_else(|| GgufError::UnsupportedType {
            name: info.name.clone(),
            ggml_type: info.ggml_type,
        })?;
        let start = (self.data_start + info.offset) as usize;
        Ok(&self.bytes[start..start + size as usize])
    }

    /// Dequantizes the named tensor to f32, in row-major order of [`TensorInfo::shape`].
    pub fn dequantize(&self, name: &str) -> Result<(Vec<i64>, Vec<f32>)> {
        let info = self
            .tensor(name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
        let values = dequantize(info.ggml_type, self.tensor_bytes(info)?).ok_or_else(|| {
            GgufError::UnsupportedType {
                name: name.to_string(),
                ggml_type: info.ggml_type,
            }
        })?;
        Ok((info.shape(), values))
    }
}

/// IEEE half → f32, exact (every half is representable as f32).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits as u32) & 0x8000) << 16;
    let exp = ((bits >> 10) & 0x1f) as u32;
    let mant = (bits & 0x3ff) as u32;
    let out = match (exp, mant) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal half: value = mant × 2^-24, normal as f32.
            let shift = mant.leading_zeros() - 21; // bring the top bit to bit 10
            let mant = (mant << shift) & 0x3ff;
            let exp = 127 - 15 + 1 - shift;
            sign | (exp << 23) | (mant << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (mant << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (mant << 13),
    };
    f32::from_bits(out)
}

/// bfloat16 → f32 (the top half of an f32).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

fn half_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// Dequantizes `data` of `ggml_type` to f32 with ggml's reference formulas
/// (`dequantize_row_*` in ggml-quants.c). `None` for types not handled here.
/// `data` must be a whole number of blocks (the parser guarantees it for
/// tensors; trailing bytes of a partial block are ignored).
pub fn dequantize(ggml_type: GgmlType, data: &[u8]) -> Option<Vec<f32>> {
    let (block, bytes) = ggml_type.block_geometry()?;
    let (block, bytes) = (block as usize, bytes as usize);
    let blocks = data.chunks_exact(bytes);
    let mut out = Vec::with_capacity(data.len() / bytes * block);
    match ggml_type {
        GgmlType::F32 => out.extend(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        GgmlType::F16 => out.extend(blocks.map(|b| half_at(b, 0))),
        GgmlType::BF16 => out.extend(blocks.map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])))),
        // block_q8_0 { half d; int8 qs[32]; }: x = qs[j] * d
        GgmlType::Q8_0 => {
            for b in blocks {
                let d = half_at(b, 0);
                out.extend(b[2..34].iter().map(|&q| (q as i8) as f32 * d));
            }
        }
        // block_q4_0 { half d; uint8 qs[16]; }: x[j] = ((qs[j] & 15) - 8) * d,
        // x[j + 16] = ((qs[j] >> 4) - 8) * d
        GgmlType::Q4_0 => {
            for b in blocks {
                let d = half_at(b, 0);
                let qs = &b[2..18];
                out.extend(qs.iter().map(|&q| ((q & 0x0f) as i32 - 8) as f32 * d));
                out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
            }
        }
        // block_q4_1 { half d; half m; uint8 qs[16]; }: x[j] = (qs[j] & 15) * d + m,
        // x[j + 16] = (qs[j] >> 4) * d + m
        GgmlType::Q4_1 => {
            for b in blocks {
                let d = half_at(b, 0);
                let m = half_at(b, 2);
                let qs = &b[4..20];
                out.extend(qs.iter().map(|&q| (q & 0x0f) as f32 * d + m));
                out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
            }
        }
        _ => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f32 → f16 bits for exactly representable test values (no rounding needed).
    fn f16_bits(x: f32) -> u16 {
        // Only used on values with ≤ 10 mantissa bits and a normal half exponent.
        let b = x.to_bits();
        let sign = ((b >> 16) & 0x8000) as u16;
        if x == 0.0 {
            return sign;
        }
        let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
        assert!((1..31).contains(&exp), "not a normal half: {x}");
        assert_eq!(b & 0x1fff, 0, "not exact in half: {x}");
        sign | ((exp as u16) << 10) | (((b >> 13) & 0x3ff) as u16)
    }

    #[test]
    fn f16_conversion_covers_every_class() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24)); // smallest subnormal
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24)); // largest subnormal
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14)); // smallest normal
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        // Every finite half round-trips through f32 to the same half.
        for bits in 0u16..0x7c00 {
            let x = f16_to_f32(bits);
            if bits >= 0x0400 {
                assert_eq!(f16_bits(x), bits);
            } else {
                assert_eq!(x, bits as f32 * 2f32.powi(-24));
            }
        }
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc0a0), -5.0);
    }

    #[test]
    fn q8_0_block_matches_ggml_formula() {
        let d = 0.0625f32;
        let mut block = f16_bits(d).to_le_bytes().to_vec();
        let qs: Vec<i8> = (0..32).map(|j| (j * 9 - 128) as i8).collect();
        block.extend(qs.iter().map(|&q| q as u8));
        let out = dequantize(GgmlType::Q8_0, &block).unwrap();
        let want: Vec<f32> = qs.iter().map(|&q| q as f32 * d).collect();
        assert_eq!(bits(&out), bits(&want));
        assert_eq!(out[0], -8.0);
    }

    #[test]
    fn q4_0_block_matches_ggml_formula() {
        let d = -0.75f32;
        let qs: Vec<u8> = (0..16u8).map(|j| j.wrapping_mul(37) ^ 0x5a).collect();
        let mut block = f16_bits(d).to_le_bytes().to_vec();
        block.extend(&qs);
        let out = dequantize(GgmlType::Q4_0, &block).unwrap();
        let mut want = vec![0f32; 32];
        for j in 0..16 {
            want[j] = ((qs[j] & 0x0f) as i32 - 8) as f32 * d;
            want[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
        }
        assert_eq!(bits(&out), bits(&want));
        // qs[0] = 0x5a: low nibble 10 → (10 - 8) * -0.75, high nibble 5 → (5 - 8) * -0.75
        assert_eq!(out[0], -1.5);
        assert_eq!(out[16], 2.25);
    }

    #[test]
    fn q4_1_blocks_match_ggml_formula() {
        // Two blocks, with a scale/min that are not exact in binary so the
        // rounding of `q * d + m` (two roundings, no FMA) is exercised.
        let mut data = Vec::new();
        let mut want = Vec::new();
        for (d_bits, m_bits) in [(0x2e66u16, 0xb8cdu16), (0x1c00, 0x3c01)] {
            let qs: Vec<u8> = (0..16u8)
                .map(|j| j.wrapping_mul(53).wrapping_add(d_bits as u8))
                .collect();
            data.extend(d_bits.to_le_bytes());
            data.extend(m_bits.to_le_bytes());
            data.extend(&qs);
            let (d, m) = (f16_to_f32(d_bits), f16_to_f32(m_bits));
            let mut block = vec![0f32; 32];
            for j in 0..16 {
                block[j] = (qs[j] & 0x0f) as f32 * d + m;
                block[j + 16] = (qs[j] >> 4) as f32 * d + m;
            }
            want.extend(block);
        }
        let out = dequantize(GgmlType::Q4_1, &data).unwrap();
        assert_eq!(out.len(), 64);
        assert_eq!(bits(&out), bits(&want));
    }

    #[test]
    fn f32_f16_bf16_rows() {
        let vals = [1.5f32, -0.0, 3.25e-3, f32::MAX];
        let raw: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(bits(&dequantize(GgmlType::F32, &raw).unwrap()), bits(&vals));
        let halves = [0x3c00u16, 0xbc00, 0x0001];
        let raw: Vec<u8> = halves.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            dequantize(GgmlType::F16, &raw).unwrap(),
            vec![1.0, -1.0, 2f32.powi(-24)]
        );
        assert_eq!(
            dequantize(GgmlType::BF16, &raw).unwrap(),
            halves.iter().map(|&h| bf16_to_f32(h)).collect::<Vec<_>>()
        );
        assert!(dequantize(GgmlType::Q4_K, &[0u8; 144]).is_none());
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Builds a small GGUF image: a few metadata entries of every type and two tensors.
    pub(crate) struct Builder {
        pub version: u32,
        pub kvs: Vec<(String, u32, Vec<u8>)>,
        pub tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
        pub alignment: u64,
    }

    fn s(x: &str) -> Vec<u8> {
        let mut v = (x.len() as u64).to_le_bytes().to_vec();
        v.extend(x.as_bytes());
        v
    }

    impl Builder {
        pub fn new() -> Self {
            Builder {
                version: 3,
                kvs: Vec::new(),
                tensors: Vec::new(),
                alignment: 32,
            }
        }

        pub fn kv(mut self, key: &str, ty: u32, value: Vec<u8>) -> Self {
            self.kvs.push((key.into(), ty, value));
            self
        }

        pub fn kv_str(self, key: &str, value: &str) -> Self {
            self.kv(key, 8, s(value))
        }

        pub fn tensor(mut self, name: &str, dims: &[u64], ty: u32, data: Vec<u8>) -> Self {
            self.tensors.push((name.into(), dims.to_vec(), ty, data));
            self
        }

        pub fn build(&self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend(self.version.to_le_bytes());
            out.extend((self.tensors.len() as u64).to_le_bytes());
            out.extend((self.kvs.len() as u64).to_le_bytes());
            for (k, ty, v) in &self.kvs {
                out.extend(s(k));
                out.extend(ty.to_le_bytes());
                out.extend(v);
            }
            let mut offset = 0u64;
            let mut offsets = Vec::new();
            for (name, dims, ty, data) in &self.tensors {
                out.extend(s(name));
                out.extend((dims.len() as u32).to_le_bytes());
                for d in dims {
                    out.extend(d.to_le_bytes());
                }
                out.extend(ty.to_le_bytes());
                out.extend(offset.to_le_bytes());
                offsets.push(offset);
                offset = (offset + data.len() as u64).div_ceil(self.alignment) * self.alignment;
            }
            let start = (out.len() as u64).div_ceil(self.alignment) * self.alignment;
            out.resize(start as usize, 0);
            for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
                out.resize((start + off) as usize, 0);
                out.extend(data);
            }
            out
        }
    }

    fn sample() -> Builder {
        let mut arr = 4u32.to_le_bytes().to_vec(); // array of u32
        arr.extend(3u64.to_le_bytes());
        for x in [7u32, 8, 9] {
            arr.extend(x.to_le_bytes());
        }
        let mut strs = 8u32.to_le_bytes().to_vec();
        strs.extend(2u64.to_le_bytes());
        strs.extend(s("a b"));
        strs.extend(s("<|im_start|>"));
        let q8: Vec<u8> = {
            let mut b = 0x3c00u16.to_le_bytes().to_vec();
            b.extend((0..32).map(|j| j as u8));
            b
        };
        Builder::new()
            .kv_str("general.architecture", "llama")
            .kv("u8", 0, vec![200])
            .kv("i8", 1, vec![0xff])
            .kv("u16", 2, 65535u16.to_le_bytes().to_vec())
            .kv("i16", 3, (-3i16).to_le_bytes().to_vec())
            .kv("u32", 4, 7u32.to_le_bytes().to_vec())
            .kv("i32", 5, (-7i32).to_le_bytes().to_vec())
            .kv("f32", 6, 1e5f32.to_le_bytes().to_vec())
            .kv("bool", 7, vec![1])
            .kv("u64", 10, u64::MAX.to_le_bytes().to_vec())
            .kv("i64", 11, (-1i64).to_le_bytes().to_vec())
            .kv("f64", 12, 0.5f64.to_le_bytes().to_vec())
            .kv("arr", 9, arr)
            .kv("strs", 9, strs)
            .tensor(
                "norm",
                &[4],
                0,
                [1f32, 2., 3., 4.]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            )
            .tensor("emb", &[32, 1], 8, q8)
    }

    #[test]
    fn parses_every_metadata_type_and_the_tensor_directory() {
        let file = GgufFile::parse(sample().build()).unwrap();
        assert_eq!(file.version, 3);
        assert_eq!(file.str("general.architecture").unwrap(), "llama");
        assert_eq!(file.get("u8"), Some(&MetaValue::U8(200)));
        assert_eq!(file.get("i8"), Some(&MetaValue::I8(-1)));
        assert_eq!(file.u64("u16").unwrap(), 65535);
        assert_eq!(file.get("i16"), Some(&MetaValue::I16(-3)));
        assert_eq!(file.u64("u32").unwrap(), 7);
        assert!(matches!(file.u64("i32"), Err(GgufError::WrongType { .. })));
        assert_eq!(file.f32("f32").unwrap(), 1e5);
        assert_eq!(file.opt_bool("bool").unwrap(), Some(true));
        assert_eq!(file.opt_bool("absent").unwrap(), None);
        assert_eq!(file.u64("u64").unwrap(), u64::MAX);
        assert_eq!(file.get("i64").unwrap().as_i64(), Some(-1));
        assert_eq!(file.f32("f64").unwrap(), 0.5);
        assert_eq!(file.int_array("arr").unwrap(), vec![7, 8, 9]);
        assert_eq!(file.str_array("strs").unwrap(), vec!["a b", "<|im_start|>"]);
        assert!(matches!(file.str("u8"), Err(GgufError::WrongType { .. })));
        assert!(matches!(file.u64("nope"), Err(GgufError::MissingKey(_))));
        assert_eq!(file.tensors.len(), 2);
        assert_eq!(file.data_start % 32, 0);
        let (shape, norm) = file.dequantize("norm").unwrap();
        assert_eq!((shape, norm), (vec![4], vec![1., 2., 3., 4.]));
        let (shape, emb) = file.dequantize("emb").unwrap();
        assert_eq!(shape, vec![1, 32]);
        assert_eq!(emb, (0..32).map(|j| j as f32).collect::<Vec<_>>());
        assert!(matches!(
            file.dequantize("missing"),
            Err(GgufError::MissingTensor(_))
        ));
    }

    #[test]
    fn version_2_and_custom_alignment() {
        let mut b = sample().kv("general.alignment", 4, 64u32.to_le_bytes().to_vec());
        b.version = 2;
        b.alignment = 64;
        let file = GgufFile::parse(b.build()).unwrap();
        assert_eq!((file.version, file.alignment), (2, 64));
        assert_eq!(file.data_start % 64, 0);
        assert_eq!(file.dequantize("norm").unwrap().1, vec![1., 2., 3., 4.]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = sample().build();
        for len in 0..full.len() - 1 {
            let r = GgufFile::parse(full[..len].to_vec());
            assert!(r.is_err(), "a file cut at {len} bytes parsed");
        }
    }

    #[test]
    fn malformed_headers_are_clear_errors() {
        let err = |bytes: Vec<u8>| GgufFile::parse(bytes).unwrap_err().to_string();
        assert!(err(b"GGML\x03\0\0\0".to_vec()).contains("not a GGUF file"));
        let mut b = sample();
        b.version = 4;
        assert!(err(b.build()).contains("unsupported GGUF version 4"));
        // A string length far beyond the file.
        let mut bytes = sample().build();
        bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(bytes).contains("truncated"));
        // An array claiming 2^60 elements.
        let mut huge = 4u32.to_le_bytes().to_vec();
        huge.extend((1u64 << 60).to_le_bytes());
        assert!(err(Builder::new().kv("x", 9, huge).build()).contains("truncated"));
        // Unknown value type, bad bool, nested arrays, duplicate keys.
        assert!(err(Builder::new().kv("x", 13, vec![]).build()).contains("unknown value type 13"));
        assert!(err(Builder::new().kv("x", 7, vec![2]).build()).contains("neither 0 nor 1"));
        let mut nested = 9u32.to_le_bytes().to_vec();
        nested.extend(1u64.to_le_bytes());
        nested.extend(4u32.to_le_bytes());
        nested.extend(0u64.to_le_bytes());
        assert!(err(Builder::new().kv("x", 9, nested).build()).contains("nested"));
        assert!(err(Builder::new()
            .kv("x", 0, vec![1])
            .kv("x", 0, vec![2])
            .build())
        .contains("appears twice"));
        // Too many dims, a row that is not whole blocks, a tensor past the end.
        assert!(err(Builder::new()
            .tensor("t", &[1, 1, 1, 1, 1], 0, vec![0; 4])
            .build())
        .contains("5 dimensions"));
        assert!(
            err(Builder::new().tensor("t", &[16], 8, vec![0; 34]).build())
                .contains("not a multiple")
        );
        let mut short = Builder::new().tensor("t", &[64], 0, vec![0; 256]).build();
        short.truncate(short.len() - 4);
        assert!(err(short).contains("truncated"));
        assert!(err(Builder::new()
            .kv("general.alignment", 4, 3u32.to_le_bytes().to_vec())
            .build())
        .contains("power of two"));
        // Dims whose product overflows.
        assert!(err(Builder::new()
            .tensor("t", &[u64::MAX, 4], 0, vec![])
            .build())
        .contains("overflow"));
        // An unknown tensor type parses, and fails only at dequantization.
        let f = GgufFile::parse(Builder::new().tensor("t", &[4], 99, vec![0; 4]).build()).unwrap();
        assert!(f
            .dequantize("t")
            .unwrap_err()
            .to_string()
            .contains("cannot be dequantized"));
    }
}
