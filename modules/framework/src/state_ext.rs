//! Typed helpers over raw state: protobuf messages, big-endian integers and
//! JSON-encoded parameter structs. Decoding failures of stored values are
//! internal errors (state written by the chain itself is always well formed).

use kiln_state::{StateRead, StateWrite};

use crate::error::{TxError, TxResult};
use crate::values::StoredValue;

pub trait StateReadExt: StateRead {
    /// A versioned stored value (see [`crate::values`]).
    fn get_value<V: StoredValue>(&self, key: &[u8]) -> TxResult<Option<V>> {
        match self.get_raw(key)? {
            None => Ok(None),
            Some(bytes) => V::decode_value(&bytes)
                .map(Some)
                .map_err(|e| TxError::internal(format!("at {}: {}", hex_key(key), e.log))),
        }
    }

    /// Every versioned value under `prefix`, in key order, with the key suffix after `prefix`.
    fn prefix_values<V: StoredValue>(&self, prefix: &[u8]) -> TxResult<Vec<(Vec<u8>, V)>> {
        let mut out = Vec::new();
        for (key, bytes) in self.prefix_raw(prefix)? {
            let value = V::decode_value(&bytes)
                .map_err(|e| TxError::internal(format!("at {}: {}", hex_key(&key), e.log)))?;
            out.push((key[prefix.len()..].to_vec(), value));
        }
        Ok(out)
    }

    fn get_proto<M: prost::Message + Default>(&self, key: &[u8]) -> TxResult<Option<M>> {
        match self.get_raw(key)? {
            None => Ok(None),
            Some(bytes) => M::decode(bytes.as_slice()).map(Some).map_err(|e| {
                TxError::internal(format!("corrupt stored value at {}: {e}", hex_key(key)))
            }),
        }
    }

    fn get_u64(&self, key: &[u8]) -> TxResult<Option<u64>> {
        match self.get_raw(key)? {
            None => Ok(None),
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
                .map(|b| Some(u64::from_be_bytes(b)))
                .map_err(|_| TxError::internal(format!("corrupt u64 at {}", hex_key(key)))),
        }
    }

    fn get_u128(&self, key: &[u8]) -> TxResult<Option<u128>> {
        match self.get_raw(key)? {
            None => Ok(None),
            Some(bytes) => <[u8; 16]>::try_from(bytes.as_slice())
                .map(|b| Some(u128::from_be_bytes(b)))
                .map_err(|_| TxError::internal(format!("corrupt u128 at {}", hex_key(key)))),
        }
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> TxResult<Option<T>> {
        match self.get_raw(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                TxError::internal(format!("corrupt stored json at {}: {e}", hex_key(key)))
            }),
        }
    }
}

impl<T: StateRead + ?Sized> StateReadExt for T {}

pub trait StateWriteExt: StateWrite {
    /// Stores a versioned value (see [`crate::values`]).
    fn put_value<V: StoredValue>(&mut self, key: Vec<u8>, value: &V) -> TxResult<()> {
        let bytes = value.encode_value()?;
        self.put_raw(key, bytes);
        Ok(())
    }

    fn put_proto<M: prost::Message>(&mut self, key: Vec<u8>, value: &M) {
        self.put_raw(key, value.encode_to_vec());
    }

    fn put_u64(&mut self, key: Vec<u8>, value: u64) {
        self.put_raw(key, value.to_be_bytes().to_vec());
    }

    fn put_u128(&mut self, key: Vec<u8>, value: u128) {
        self.put_raw(key, value.to_be_bytes().to_vec());
    }

    /// JSON of a struct with a fixed field order is deterministic (serde_json
    /// writes fields in declaration order; no maps are used in stored params).
    fn put_json<T: serde::Serialize>(&mut self, key: Vec<u8>, value: &T) -> TxResult<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| TxError::internal(e.to_string()))?;
        self.put_raw(key, bytes);
        Ok(())
    }
}

impl<T: StateWrite + ?Sized> StateWriteExt for T {}

fn hex_key(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}
