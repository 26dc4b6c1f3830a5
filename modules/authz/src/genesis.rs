//! Genesis grants (`app_state.authz`), e.g. a devnet host's ML-ops grant.

use cosmos_sdk_proto::cosmos::authz::v1beta1::{GenericAuthorization, Grant};
use cosmos_sdk_proto::{Any, Timestamp};
use kiln_framework::Address;
use kiln_store::StateWrite;
use prost::Message;

use crate::state::{put_grant, GENERIC_AUTHORIZATION_TYPE_URL};

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzGenesis {
    #[serde(default)]
    pub grants: Vec<GenesisGrant>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisGrant {
    pub granter: Address,
    pub grantee: Address,
    pub msg_type_url: String,
    /// Unix seconds; `None` = no expiry.
    #[serde(default)]
    pub expiration_unix: Option<i64>,
}

impl AuthzGenesis {
    pub fn validate(&self) -> Result<(), String> {
        for (i, g) in self.grants.iter().enumerate() {
            if g.granter == g.grantee {
                return Err(format!("authz.grants[{i}]: granter and grantee are the same"));
            }
            if !g.msg_type_url.starts_with('/') {
                return Err(format!("authz.grants[{i}]: msg_type_url {:?} must start with '/'", g.msg_type_url));
            }
        }
        Ok(())
    }
}

pub fn init_genesis<S: StateWrite>(state: &mut S, genesis: &AuthzGenesis) -> Result<(), String> {
    genesis.validate()?;
    for g in &genesis.grants {
        let authorization = Any {
            type_url: GENERIC_AUTHORIZATION_TYPE_URL.to_string(),
            value: GenericAuthorization { msg: g.msg_type_url.clone() }.encode_to_vec(),
        };
        let grant = Grant { authorization: Some(authorization), expiration: g.expiration_unix.map(|seconds| Timestamp { seconds, nanos: 0 }) };
        put_grant(state, &g.granter, &g.grantee, &g.msg_type_url, &grant);
    }
    Ok(())
}
