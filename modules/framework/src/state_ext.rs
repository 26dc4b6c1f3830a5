//! Typed helpers over raw state: versioned stored values
//! ([`crate::values`]), protobuf messages and big-endian integers, and
//! streaming prefix scans. Decoding failures of stored values are
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

    /// Streams every entry under `prefix` in key order to `f(suffix, value)`
    /// (the key after `prefix`), without collecting the scan; the first error
    /// `f` returns stops the scan and is returned.
    fn for_each_under(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> TxResult<()>,
    ) -> TxResult<()> {
        let mut failure = None;
        self.prefix_visit(
            prefix,
            &mut |key, value| match f(&key[prefix.len()..], value) {
                Ok(()) => std::ops::ControlFlow::Continue(()),
                Err(e) => {
                    failure = Some(e);
                    std::ops::ControlFlow::Break(())
                }
            },
        )?;
        failure.map_or(Ok(()), Err)
    }

    /// Whether any entry lies under `prefix` (the scan stops at the first).
    fn has_any_under(&self, prefix: &[u8]) -> TxResult<bool> {
        let mut found = false;
        self.prefix_visit(prefix, &mut |_, _| {
            found = true;
            std::ops::ControlFlow::Break(())
        })?;
        Ok(found)
    }

    /// Every versioned value under `prefix`, in key order, with the key suffix
    /// after `prefix` (streamed and decoded one by one).
    fn prefix_values<V: StoredValue>(&self, prefix: &[u8]) -> TxResult<Vec<(Vec<u8>, V)>> {
        let mut out = Vec::new();
        self.for_each_under(prefix, |suffix, bytes| {
            let value = V::decode_value(bytes)
                .map_err(|e| TxError::internal(format!("under {}: {}", hex_key(prefix), e.log)))?;
            out.push((suffix.to_vec(), value));
            Ok(())
        })?;
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
}

impl<T: StateWrite + ?Sized> StateWriteExt for T {}

fn hex_key(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}
