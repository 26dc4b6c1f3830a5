//! Typed access to grants and the authorization check used by `MsgExec`.

use cosmos_sdk_proto::cosmos::authz::v1beta1::{GenericAuthorization, Grant};
use cosmos_sdk_proto::Timestamp;
use kiln_framework::{Address, BlockInfo, StateReadExt, StateWriteExt, TxError, TxResult};
use kiln_state::{StateRead, StateWrite};
use prost::Message;

use crate::keys;

pub const GENERIC_AUTHORIZATION_TYPE_URL: &str = "/cosmos.authz.v1beta1.GenericAuthorization";

/// The one message type a grant authorizes (its GenericAuthorization.msg).
pub fn authorized_type_url(grant: &Grant) -> TxResult<String> {
    let any = grant
        .authorization
        .as_ref()
        .ok_or_else(|| TxError::invalid_request("grant has no authorization"))?;
    if any.type_url != GENERIC_AUTHORIZATION_TYPE_URL {
        return Err(TxError::invalid_type(format!(
            "unsupported authorization {:?}: Kiln supports only {GENERIC_AUTHORIZATION_TYPE_URL}",
            any.type_url
        )));
    }
    let generic = GenericAuthorization::decode(any.value.as_slice())
        .map_err(|e| TxError::tx_decode(format!("GenericAuthorization: {e}")))?;
    if generic.msg.is_empty() || !generic.msg.starts_with('/') {
        return Err(TxError::invalid_request(format!(
            "authorization msg {:?} must be a type URL like /cosmos.bank.v1beta1.MsgSend",
            generic.msg
        )));
    }
    Ok(generic.msg)
}

/// True when `expiration` is at or before the block time.
pub fn is_expired(expiration: Option<&Timestamp>, block: &BlockInfo) -> bool {
    match expiration {
        None => false,
        Some(t) => {
            (t.seconds, t.nanos)
                <= (
                    block.time_seconds,
                    i32::try_from(block.time_nanos).unwrap_or(i32::MAX),
                )
        }
    }
}

pub fn get_grant<S: StateRead + ?Sized>(
    state: &S,
    granter: &Address,
    grantee: &Address,
    type_url: &str,
) -> TxResult<Option<Grant>> {
    state.get_proto(&keys::grant(granter, grantee, type_url))
}

pub fn put_grant<S: StateWrite + ?Sized>(
    state: &mut S,
    granter: &Address,
    grantee: &Address,
    type_url: &str,
    grant: &Grant,
) {
    state.put_proto(keys::grant(granter, grantee, type_url), grant);
    state.put_raw(keys::by_grantee(grantee, granter, type_url), Vec::new());
}

pub fn delete_grant<S: StateWrite + ?Sized>(
    state: &mut S,
    granter: &Address,
    grantee: &Address,
    type_url: &str,
) {
    state.delete_raw(keys::grant(granter, grantee, type_url));
    state.delete_raw(keys::by_grantee(grantee, granter, type_url));
}

/// Checks that `grantee` may send a message of `type_url` on behalf of
/// `granter` at this block. The caller executes the message only on `Ok`.
pub fn authorize<S: StateRead + ?Sized>(
    state: &S,
    block: &BlockInfo,
    granter: &Address,
    grantee: &Address,
    type_url: &str,
) -> TxResult<()> {
    let grant = get_grant(state, granter, grantee, type_url)?
        .ok_or_else(|| TxError::unauthorized(format!("authorization not found: {granter} has not granted {grantee} permission to send {type_url}")))?;
    if is_expired(grant.expiration.as_ref(), block) {
        return Err(TxError::unauthorized(format!("authorization expired: the grant from {granter} to {grantee} for {type_url} has expired")));
    }
    Ok(())
}

pub fn authz_params<S: StateRead + ?Sized>(state: &S) -> TxResult<crate::AuthzParams> {
    Ok(state.get_value(keys::PARAMS)?.unwrap_or_default())
}

pub fn set_authz_params<S: StateWrite + ?Sized>(
    state: &mut S,
    params: &crate::AuthzParams,
) -> TxResult<()> {
    state.put_value(keys::PARAMS.to_vec(), params)
}

/// The single host (granter) on whose behalf `grantee` sends `inner` (pairs of
/// granter and message type URL), if the set qualifies for the ML-ops fee
/// allowance: non-empty, every granter is the same account other than the
/// grantee, and the grantee holds an unexpired grant for each. The caller has
/// already checked that every type URL is an ML-ops message.
/// `Ok(None)` when it does not qualify; errors only on storage failures.
pub fn ml_ops_host<S: StateRead + ?Sized>(
    state: &S,
    block: &BlockInfo,
    grantee: &Address,
    inner: &[(Address, &str)],
) -> TxResult<Option<Address>> {
    let Some((host, _)) = inner.first() else {
        return Ok(None);
    };
    for (granter, type_url) in inner {
        if granter != host || granter == grantee {
            return Ok(None);
        }
        match get_grant(state, granter, grantee, type_url)? {
            Some(grant) if !is_expired(grant.expiration.as_ref(), block) => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(*host))
}

/// What a host's hot keys have used of the ML-ops fee allowance in one
/// epoch: transactions, gas (their gas limits), and the gas of the latest
/// block they used it in.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
)]
pub struct FeeAllowanceUse {
    pub txs: u64,
    pub gas: u64,
    pub last_height: u64,
    pub gas_at_last_height: u64,
}

kiln_framework::stored_value!(FeeAllowanceUse, "fee allowance use", 1);

impl FeeAllowanceUse {
    /// Fee-free gas already used in block `height`.
    pub fn gas_in_block(&self, height: u64) -> u64 {
        if self.last_height == height {
            self.gas_at_last_height
        } else {
            0
        }
    }
}

/// What `host` has used of the ML-ops fee allowance in `epoch`.
pub fn fee_allowance_use<S: StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    host: &Address,
) -> TxResult<FeeAllowanceUse> {
    Ok(state
        .get_value(&keys::fee_allowance(epoch, host))?
        .unwrap_or_default())
}

/// Fee-exempt ML-ops transactions `host` has used in `epoch`.
pub fn fee_allowance_used<S: StateRead + ?Sized>(
    state: &S,
    epoch: u64,
    host: &Address,
) -> TxResult<u64> {
    Ok(fee_allowance_use(state, epoch, host)?.txs)
}

pub fn set_fee_allowance_use<S: StateWrite + ?Sized>(
    state: &mut S,
    epoch: u64,
    host: &Address,
    used: &FeeAllowanceUse,
) -> TxResult<()> {
    state.put_value(keys::fee_allowance(epoch, host), used)
}

/// Deletes the allowance counters of every epoch before `epoch` (called at
/// each epoch's first block, so at most one epoch's counters are ever pruned).
pub fn prune_fee_allowances<S: StateWrite + ?Sized>(state: &mut S, epoch: u64) -> TxResult<()> {
    for (key, _) in state.prefix_raw(keys::FEE_ALLOWANCE_PREFIX)? {
        let counted = key
            .get(keys::FEE_ALLOWANCE_PREFIX.len()..keys::FEE_ALLOWANCE_PREFIX.len() + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| TxError::internal("corrupt fee allowance key"))?;
        if counted < epoch {
            state.delete_raw(key);
        }
    }
    Ok(())
}
