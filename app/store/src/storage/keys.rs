//! Every rocksdb key the store writes is built here (see the crate docs for
//! the layout as a whole).

use jmt::storage::NodeKey;

use crate::StoreError;

/// Flat latest state: `raw_key -> value`. Only the last committed version.
pub(crate) const CF_STATE: &str = "state";
/// Every version of every value: `escape(raw_key) ‖ be(u64::MAX - version) -> tag ‖ value`.
pub(crate) const CF_VERSIONED: &str = "versioned";
/// Which keys changed at a version (drives value pruning): `be(version) -> list(raw_key)`.
pub(crate) const CF_CHANGELOG: &str = "changelog";
/// Key-hash preimages for the JMT: `sha256(raw_key) -> raw_key`.
pub(crate) const CF_PREIMAGE: &str = "preimage";
/// JMT nodes: `be(node_version) ‖ borsh(nibble_path) -> borsh(Node)`.
pub(crate) const CF_NODES: &str = "jmt_nodes";
/// JMT stale-node index: `be(stale_since_version) -> list(node_key_bytes)`.
pub(crate) const CF_STALE: &str = "jmt_stale";
/// Non-verifiable application metadata: `aux_key -> value`.
pub(crate) const CF_AUX: &str = "aux";
/// Store bookkeeping: [`META_LATEST`], [`META_EARLIEST`] -> `be(u64)`.
pub(crate) const CF_META: &str = "meta";

pub(crate) const ALL_CFS: [&str; 8] = [
    CF_STATE,
    CF_VERSIONED,
    CF_CHANGELOG,
    CF_PREIMAGE,
    CF_NODES,
    CF_STALE,
    CF_AUX,
    CF_META,
];

/// The last committed version.
pub(crate) const META_LATEST: &[u8] = b"latest_version";
/// The oldest version still readable (everything older has been pruned).
pub(crate) const META_EARLIEST: &[u8] = b"earliest_version";

/// Tag byte of a versioned value: the key was deleted at this version.
pub(crate) const TAG_DELETED: u8 = 0;
/// Tag byte of a versioned value: the key was set at this version; the value follows.
pub(crate) const TAG_PRESENT: u8 = 1;

/// Appends the escaped body of `raw` to `out`: every `0x00` becomes `0x00 0xFF`,
/// every other byte is copied. Order-preserving, and a prefix of `raw` maps to a
/// prefix of the body.
pub(crate) fn push_escaped_body(out: &mut Vec<u8>, raw: &[u8]) {
    for &b in raw {
        if b == 0 {
            out.extend_from_slice(&[0x00, 0xFF]);
        } else {
            out.push(b);
        }
    }
}

/// The escaped body of `raw` (no terminator): the scan prefix for raw prefix `raw`.
pub(crate) fn escaped_body(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 2);
    push_escaped_body(&mut out, raw);
    out
}

/// `escape(raw)`: the escaped body followed by the terminator `0x00 0x01`.
/// Prefix-free (no encoded key is a proper prefix of another) and
/// order-preserving (`a < b` iff `escape(a) < escape(b)`).
pub(crate) fn escape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 10);
    push_escaped_body(&mut out, raw);
    out.extend_from_slice(&[0x00, 0x01]);
    out
}

/// Decodes the escaped key at the start of `enc`; returns the raw key and the
/// length of its encoding (terminator included).
pub(crate) fn unescape_prefix(enc: &[u8]) -> Result<(Vec<u8>, usize), StoreError> {
    let mut raw = Vec::with_capacity(enc.len());
    let mut i = 0;
    while i < enc.len() {
        let b = enc[i];
        if b != 0 {
            raw.push(b);
            i += 1;
            continue;
        }
        match enc.get(i + 1) {
            Some(0xFF) => {
                raw.push(0);
                i += 2;
            }
            Some(0x01) => return Ok((raw, i + 2)),
            _ => break,
        }
    }
    Err(StoreError(
        "corrupt versioned key: bad escape encoding".into(),
    ))
}

/// The key in [`CF_VERSIONED`] of `raw_key` at `version`. Versions of one key
/// sort newest first, so a seek to `(raw_key, v)` lands on the newest entry
/// whose version is `<= v`.
pub(crate) fn versioned_key(raw_key: &[u8], version: u64) -> Vec<u8> {
    let mut out = escape(raw_key);
    out.extend_from_slice(&(u64::MAX - version).to_be_bytes());
    out
}

/// Given `escape(raw) ‖ inverted version`, the version.
pub(crate) fn version_of_versioned_key(key: &[u8], enc_len: usize) -> Result<u64, StoreError> {
    let tail: [u8; 8] = key
        .get(enc_len..)
        .and_then(|t| t.try_into().ok())
        .ok_or_else(|| StoreError("corrupt versioned key: bad version suffix".into()))?;
    Ok(u64::MAX - u64::from_be_bytes(tail))
}

/// The smallest key greater than every key starting with `escape(raw)`
/// (the terminator `0x00 0x01` becomes `0x00 0x02`).
pub(crate) fn next_group(encoded: &[u8]) -> Vec<u8> {
    let mut out = encoded.to_vec();
    if let Some(last) = out.last_mut() {
        *last = last.saturating_add(1);
    }
    out
}

/// Encodes a versioned value.
pub(crate) fn encode_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        None => vec![TAG_DELETED],
        Some(v) => {
            let mut out = Vec::with_capacity(v.len() + 1);
            out.push(TAG_PRESENT);
            out.extend_from_slice(v);
            out
        }
    }
}

/// Decodes a versioned value (`None` = deleted at that version).
pub(crate) fn decode_value(bytes: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    match bytes.split_first() {
        Some((&TAG_PRESENT, v)) => Ok(Some(v.to_vec())),
        Some((&TAG_DELETED, [])) => Ok(None),
        _ => Err(StoreError("corrupt versioned value: bad tag".into())),
    }
}

/// `list(items)`: each item as `be32(len) ‖ bytes`, concatenated. The value
/// format of [`CF_CHANGELOG`] and [`CF_STALE`] (one rocksdb entry per version
/// instead of one per key or node keeps commits cheap).
pub(crate) fn encode_list<'a>(
    items: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    for item in items {
        let len = u32::try_from(item.len())
            .map_err(|_| StoreError("a key longer than 4 GiB cannot be stored".into()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(item);
    }
    Ok(out)
}

/// Inverse of [`encode_list`].
pub(crate) fn decode_list(mut bytes: &[u8]) -> Result<Vec<&[u8]>, StoreError> {
    let corrupt = || StoreError("corrupt store: bad list encoding".into());
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| corrupt())?;
        if rest.len() < len {
            return Err(corrupt());
        }
        let (item, rest) = rest.split_at(len);
        out.push(item);
        bytes = rest;
    }
    Ok(out)
}

/// The key in [`CF_NODES`] of a JMT node: `be(version) ‖ borsh(nibble_path)`.
/// Nodes of one version are contiguous.
pub(crate) fn node_key_bytes(node_key: &NodeKey) -> Result<Vec<u8>, StoreError> {
    let mut out = node_key.version().to_be_bytes().to_vec();
    borsh::to_writer(&mut out, node_key.nibble_path())
        .map_err(|e| StoreError(format!("encoding a JMT node key: {e}")))?;
    Ok(out)
}

/// The JMT key of the root node of `version` (version, empty nibble path).
/// jmt keeps its constructor crate-private, so it is decoded from its borsh
/// form: `le(version) ‖ le(num_nibbles = 0u64) ‖ le(len(bytes) = 0u32)`.
pub(crate) fn root_node_key(version: u64) -> Result<NodeKey, StoreError> {
    let mut bytes = version.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 12]);
    borsh::from_slice(&bytes).map_err(|e| StoreError(format!("building a JMT root key: {e}")))
}

/// Reads a big-endian `u64` from the first 8 bytes of `bytes`.
pub(crate) fn be_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let head: [u8; 8] = bytes
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| StoreError("corrupt store: expected a big-endian u64".into()))?;
    Ok(u64::from_be_bytes(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_is_order_preserving_and_prefix_free() {
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![0, 1],
            vec![0, 0xFF],
            vec![1],
            vec![1, 0],
            vec![0xFF],
            vec![0xFF, 0],
            vec![0xFF, 0xFF],
            b"a".to_vec(),
            b"a/".to_vec(),
            b"a/b".to_vec(),
        ];
        for a in &keys {
            let ea = escape(a);
            assert_eq!(unescape_prefix(&ea).unwrap(), (a.clone(), ea.len()));
            assert!(ea.starts_with(&escaped_body(a)));
            for b in &keys {
                let eb = escape(b);
                assert_eq!(a.cmp(b), ea.cmp(&eb), "{a:?} vs {b:?}");
                if a != b {
                    assert!(!eb.starts_with(&ea), "{a:?} encodes to a prefix of {b:?}");
                }
                assert_eq!(
                    b.starts_with(a),
                    eb.starts_with(&escaped_body(a)),
                    "{a:?} / {b:?}"
                );
            }
        }
    }

    #[test]
    fn lists_round_trip() {
        let items: Vec<&[u8]> = vec![b"", b"a", &[0, 1, 2], b""];
        let enc = encode_list(items.iter().copied()).unwrap();
        assert_eq!(decode_list(&enc).unwrap(), items);
        assert!(decode_list(&enc[..enc.len() - 1]).is_err());
        assert!(decode_list(&enc[..6]).is_err());
        assert_eq!(decode_list(&[]).unwrap(), Vec::<&[u8]>::new());
    }

    #[test]
    fn root_node_key_has_an_empty_path() {
        let key = root_node_key(7).unwrap();
        assert_eq!(key.version(), 7);
        assert!(key.nibble_path().is_empty());
    }

    #[test]
    fn versioned_keys_sort_newest_first_within_a_key() {
        assert!(versioned_key(b"k", 9) < versioned_key(b"k", 3));
        assert!(versioned_key(b"k", 0) < versioned_key(b"k\0", 9));
        assert!(versioned_key(b"k", 0) < next_group(&escape(b"k")));
        assert!(next_group(&escape(b"k")) <= versioned_key(b"k\0", u64::MAX));
        let key = versioned_key(b"a\0b", 42);
        let (raw, len) = unescape_prefix(&key).unwrap();
        assert_eq!(raw, b"a\0b");
        assert_eq!(version_of_versioned_key(&key, len).unwrap(), 42);
    }
}
