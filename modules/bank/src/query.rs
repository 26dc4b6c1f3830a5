//! gRPC-style queries (the paths cosmjs and the CLI use through `abci_query`).
//! Request and response bytes are the Cosmos SDK's protobuf messages.

use cosmos_sdk_proto::cosmos::auth::v1beta1::{QueryAccountRequest, QueryAccountResponse};
use cosmos_sdk_proto::cosmos::bank::v1beta1::{
    QueryAllBalancesRequest, QueryAllBalancesResponse, QueryBalanceRequest, QueryBalanceResponse,
    QuerySupplyOfRequest, QuerySupplyOfResponse, QueryTotalSupplyRequest, QueryTotalSupplyResponse,
};
use cosmos_sdk_proto::cosmos::base::query::v1beta1::PageResponse;
use cosmos_sdk_proto::Any;
use kiln_framework::{Address, Coin, StateReadExt, TxError, TxResult};
use kiln_state::StateRead;
use prost::Message;

use crate::keys;
use crate::state::{all_balances_readonly, balance_readonly, total_supply_readonly};

pub const BASE_ACCOUNT_TYPE_URL: &str = "/cosmos.auth.v1beta1.BaseAccount";

fn decode<M: Message + Default>(data: &[u8]) -> TxResult<M> {
    M::decode(data).map_err(|e| TxError::tx_decode(format!("query request: {e}")))
}

fn parse_addr(text: &str) -> TxResult<Address> {
    Address::parse(text).map_err(|e| TxError::invalid_address(e.to_string()))
}

/// Routes a query path owned by auth or bank; `None` if the path is not ours.
pub fn route<S: StateRead + ?Sized>(
    state: &S,
    path: &str,
    data: &[u8],
) -> Option<TxResult<Vec<u8>>> {
    let result = match path {
        "/cosmos.auth.v1beta1.Query/Account" => account(state, data),
        "/cosmos.bank.v1beta1.Query/Balance" => balance(state, data),
        "/cosmos.bank.v1beta1.Query/AllBalances" => all_balances(state, data),
        "/cosmos.bank.v1beta1.Query/TotalSupply" => total_supply(state, data),
        "/cosmos.bank.v1beta1.Query/SupplyOf" => supply_of(state, data),
        _ => return None,
    };
    Some(result)
}

fn account<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let request: QueryAccountRequest = decode(data)?;
    let addr = parse_addr(&request.address)?;
    let account: Option<cosmos_sdk_proto::cosmos::auth::v1beta1::BaseAccount> =
        state.get_proto(&keys::account(&addr))?;
    match account {
        // The wording matters: cosmjs recognises "rpc error: code = NotFound" as "no such account".
        None => Err(TxError::key_not_found(format!(
            "rpc error: code = NotFound desc = account {addr} not found"
        ))),
        Some(account) => Ok(QueryAccountResponse {
            account: Some(Any {
                type_url: BASE_ACCOUNT_TYPE_URL.to_string(),
                value: account.encode_to_vec(),
            }),
        }
        .encode_to_vec()),
    }
}

fn balance<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let request: QueryBalanceRequest = decode(data)?;
    let addr = parse_addr(&request.address)?;
    kiln_framework::coin::validate_denom(&request.denom).map_err(TxError::invalid_coins)?;
    let amount = balance_readonly(state, &addr, &request.denom)?;
    Ok(QueryBalanceResponse {
        balance: Some(Coin::new(request.denom, amount).to_proto()),
    }
    .encode_to_vec())
}

fn all_balances<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let request: QueryAllBalancesRequest = decode(data)?;
    let addr = parse_addr(&request.address)?;
    let coins = all_balances_readonly(state, &addr)?;
    let total = u64::try_from(coins.len()).unwrap_or(u64::MAX);
    Ok(QueryAllBalancesResponse {
        balances: coins.iter().map(Coin::to_proto).collect(),
        pagination: Some(PageResponse {
            next_key: Vec::new(),
            total,
        }),
    }
    .encode_to_vec())
}

fn total_supply<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let _request: QueryTotalSupplyRequest = decode(data)?;
    let coins = total_supply_readonly(state)?;
    let total = u64::try_from(coins.len()).unwrap_or(u64::MAX);
    Ok(QueryTotalSupplyResponse {
        supply: coins.iter().map(Coin::to_proto).collect(),
        pagination: Some(PageResponse {
            next_key: Vec::new(),
            total,
        }),
    }
    .encode_to_vec())
}

fn supply_of<S: StateRead + ?Sized>(state: &S, data: &[u8]) -> TxResult<Vec<u8>> {
    let request: QuerySupplyOfRequest = decode(data)?;
    let amount = state.get_u128(&keys::supply(&request.denom))?.unwrap_or(0);
    Ok(QuerySupplyOfResponse {
        amount: Some(Coin::new(request.denom, amount).to_proto()),
    }
    .encode_to_vec())
}
