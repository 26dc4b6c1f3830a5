//! Gas metering. Each transaction declares a gas limit; reads, writes, bytes
//! and signature checks consume gas at fixed, documented costs. [`Metered`]
//! wraps a state view and charges for every access, so handlers cannot forget.

use std::cell::Cell;

use kiln_state::{StateRead, StateWrite, StoreError};

/// Costs in gas units (the Cosmos SDK's KV gas config).
pub const READ_COST_FLAT: u64 = 1_000;
pub const READ_COST_PER_BYTE: u64 = 3;
pub const WRITE_COST_FLAT: u64 = 2_000;
pub const WRITE_COST_PER_BYTE: u64 = 30;
pub const DELETE_COST: u64 = 1_000;
pub const ITER_NEXT_COST_FLAT: u64 = 30;

/// Counts gas used against a limit. Consumption saturates, never wraps; the
/// caller checks [`GasMeter::is_out_of_gas`] after each step.
#[derive(Debug)]
pub struct GasMeter {
    limit: u64,
    used: Cell<u64>,
}

impl GasMeter {
    pub fn new(limit: u64) -> Self {
        GasMeter {
            limit,
            used: Cell::new(0),
        }
    }

    /// A meter that never runs out (genesis, block hooks).
    pub fn infinite() -> Self {
        GasMeter::new(u64::MAX)
    }

    pub fn consume(&self, amount: u64) {
        self.used.set(self.used.get().saturating_add(amount));
    }

    pub fn used(&self) -> u64 {
        self.used.get()
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn is_out_of_gas(&self) -> bool {
        self.used.get() > self.limit
    }
}

/// A state view that charges `meter` for each access.
pub struct Metered<'m, S> {
    inner: S,
    meter: &'m GasMeter,
}

impl<'m, S> Metered<'m, S> {
    pub fn new(inner: S, meter: &'m GasMeter) -> Self {
        Metered { inner, meter }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl<S: StateRead> StateRead for Metered<'_, S> {
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.inner.get_raw(key)?;
        let bytes = len64(key.len()).saturating_add(len64(value.as_ref().map_or(0, Vec::len)));
        self.meter
            .consume(READ_COST_FLAT.saturating_add(READ_COST_PER_BYTE.saturating_mul(bytes)));
        Ok(value)
    }

    /// Charges a flat read, then each visited entry as it streams (the same
    /// total as a collected scan when every entry is visited).
    fn prefix_visit(
        &self,
        prefix: &[u8],
        visit: &mut kiln_state::Visitor<'_>,
    ) -> Result<(), StoreError> {
        self.meter.consume(READ_COST_FLAT);
        self.inner.prefix_visit(prefix, &mut |k, v| {
            let bytes = len64(k.len()).saturating_add(len64(v.len()));
            self.meter.consume(
                ITER_NEXT_COST_FLAT.saturating_add(READ_COST_PER_BYTE.saturating_mul(bytes)),
            );
            visit(k, v)
        })
    }
}

impl<S: StateWrite> StateWrite for Metered<'_, S> {
    fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let bytes = len64(key.len()).saturating_add(len64(value.len()));
        self.meter
            .consume(WRITE_COST_FLAT.saturating_add(WRITE_COST_PER_BYTE.saturating_mul(bytes)));
        self.inner.put_raw(key, value)
    }

    fn delete_raw(&mut self, key: Vec<u8>) {
        self.meter.consume(DELETE_COST);
        self.inner.delete_raw(key)
    }
}
