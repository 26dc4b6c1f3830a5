//! JSON queries of the registry: `/kiln.sprint.v1.Query/Hosts` (every host)
//! and `/kiln.sprint.v1.Query/Host` (data: bech32 address). The paths keep
//! their pre-split `kiln.sprint.v1` names so existing clients keep working.

use kiln_framework::query::{address_arg, json};
use kiln_framework::{TxError, TxResult};
use kiln_state::StateRead;

use crate::state::HostsExt;

pub const HOSTS_PATH: &str = "/kiln.sprint.v1.Query/Hosts";
pub const HOST_PATH: &str = "/kiln.sprint.v1.Query/Host";

pub fn route<S: StateRead + ?Sized>(
    state: &S,
    path: &str,
    data: &[u8],
) -> Option<TxResult<Vec<u8>>> {
    let result = match path {
        HOSTS_PATH => state.hosts().and_then(|h| json(&h)),
        HOST_PATH => address_arg(data)
            .and_then(|a| state.host(&a))
            .and_then(|h| match h {
                Some(h) => json(&h),
                None => Err(TxError::key_not_found("no such host")),
            }),
        _ => return None,
    };
    Some(result)
}
