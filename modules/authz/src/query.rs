//! `cosmos.authz.v1beta1.Query/{Grants,GranterGrants,GranteeGrants}`.

use cosmos_sdk_proto::cosmos::authz::v1beta1::{
    Grant, GrantAuthorization, QueryGranteeGrantsRequest, QueryGranteeGrantsResponse,
    QueryGranterGrantsRequest, QueryGranterGrantsResponse, QueryGrantsRequest, QueryGrantsResponse,
};
use cosmos_sdk_proto::cosmos::base::query::v1beta1::PageResponse;
use kiln_framework::{Address, StateReadExt, TxError, TxResult};
use kiln_state::StateRead;
use prost::Message;

use crate::keys;

fn decode<M: Message + Default>(data: &[u8]) -> TxResult<M> {
    M::decode(data).map_err(|e| TxError::tx_decode(format!("query request: {e}")))
}

fn parse(text: &str) -> TxResult<Address> {
    Address::parse(text).map_err(|e| TxError::invalid_address(e.to_string()))
}

fn page(n: usize) -> Option<PageResponse> {
    Some(PageResponse {
        next_key: Vec::new(),
        total: u64::try_from(n).unwrap_or(u64::MAX),
    })
}

pub fn route<S: StateRead + ?Sized>(
    state: &S,
    path: &str,
    data: &[u8],
) -> Option<TxResult<Vec<u8>>> {
    let result = match path {
        "/cosmos.authz.v1beta1.Query/Grants" => grants(state, data),
        "/cosmos.authz.v1beta1.Query/GranterGrants" => granter_grants(state, data),
        "/cosmos.authz.v1beta1.Query/GranteeGrants" => grantee_grants(state, data),
        _ => return None,
    };
    Some(result)
}

fn grant_authorization(granter: &Address, grantee: &Address, grant: Grant) -> GrantAuthorization {
    GrantAuthorization {
        granter: granter.to_bech32(),
        grantee: grantee.to_bech32(),
        authorization: grant.authorization,
        expiration: grant.expiration,
    }
}

fn decode_grant(bytes: &[u8]) -> TxResult<Grant> {
    Grant::decode(bytes).map_err(|e| TxError::internal(format!("corrupt grant: {e}")))
}

fn grants<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let request: QueryGrantsRequest = decode(data)?;
    let granter = parse(&request.granter)?;
    let grantee = parse(&request.grantee)?;
    let mut out = Vec::new();
    if request.msg_type_url.is_empty() {
        for (_, value) in state.prefix_raw(&keys::grants_between(&granter, &grantee))? {
            out.push(decode_grant(&value)?);
        }
    } else if let Some(grant) =
        state.get_proto::<Grant>(&keys::grant(&granter, &grantee, &request.msg_type_url))?
    {
        out.push(grant);
    }
    let n = out.len();
    Ok(QueryGrantsResponse {
        grants: out,
        pagination: page(n),
    }
    .encode_to_vec())
}

fn granter_grants<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let request: QueryGranterGrantsRequest = decode(data)?;
    let granter = parse(&request.granter)?;
    let prefix = keys::grants_of_granter(&granter);
    let mut out = Vec::new();
    for (key, value) in state.prefix_raw(&prefix)? {
        let rest = &key[prefix.len()..];
        let grantee = rest
            .get(..20)
            .and_then(Address::from_bytes)
            .ok_or_else(|| TxError::internal("corrupt grant key"))?;
        out.push(grant_authorization(
            &granter,
            &grantee,
            decode_grant(&value)?,
        ));
    }
    let n = out.len();
    Ok(QueryGranterGrantsResponse {
        grants: out,
        pagination: page(n),
    }
    .encode_to_vec())
}

fn grantee_grants<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let request: QueryGranteeGrantsRequest = decode(data)?;
    let grantee = parse(&request.grantee)?;
    let prefix = keys::grants_of_grantee(&grantee);
    let mut out = Vec::new();
    for (key, _) in state.prefix_raw(&prefix)? {
        let rest = &key[prefix.len()..];
        let granter = rest
            .get(..20)
            .and_then(Address::from_bytes)
            .ok_or_else(|| TxError::internal("corrupt grant index"))?;
        let type_url = String::from_utf8_lossy(rest.get(20..).unwrap_or_default()).into_owned();
        if let Some(grant) =
            state.get_proto::<Grant>(&keys::grant(&granter, &grantee, &type_url))?
        {
            out.push(grant_authorization(&granter, &grantee, grant));
        }
    }
    let n = out.len();
    Ok(QueryGranteeGrantsResponse {
        grants: out,
        pagination: page(n),
    }
    .encode_to_vec())
}
