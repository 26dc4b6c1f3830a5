//! Genesis grants (`app_state.authz`), e.g. a devnet host's ML-ops grant.

use cosmos_sdk_proto::cosmos::authz::v1beta1::{GenericAuthorization, Grant};
use cosmos_sdk_proto::{Any, Timestamp};
use kiln_bank::state::AuthWriteExt;
use kiln_framework::Address;
use kiln_state::StateWrite;
use prost::Message;

use crate::params::AuthzParams;
use crate::state::{put_grant, set_authz_params, GENERIC_AUTHORIZATION_TYPE_URL};

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzGenesis {
    #[serde(default)]
    pub params: AuthzParams,
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
        self.params.validate()?;
        for (i, g) in self.grants.iter().enumerate() {
            if g.granter == g.grantee {
                return Err(format!(
                    "authz.grants[{i}]: granter and grantee are the same"
                ));
            }
            if !g.msg_type_url.starts_with('/') {
                return Err(format!(
                    "authz.grants[{i}]: msg_type_url {:?} must start with '/'",
                    g.msg_type_url
                ));
            }
        }
        Ok(())
    }
}

pub fn init_genesis<S: StateWrite>(state: &mut S, genesis: &AuthzGenesis) -> Result<(), String> {
    genesis.validate()?;
    set_authz_params(state, &genesis.params).map_err(|e| e.log)?;
    for g in &genesis.grants {
        let authorization = Any {
            type_url: GENERIC_AUTHORIZATION_TYPE_URL.to_string(),
            value: GenericAuthorization {
                msg: g.msg_type_url.clone(),
            }
            .encode_to_vec(),
        };
        let grant = Grant {
            authorization: Some(authorization),
            expiration: g
                .expiration_unix
                .map(|seconds| Timestamp { seconds, nanos: 0 }),
        };
        put_grant(state, &g.granter, &g.grantee, &g.msg_type_url, &grant);
        // Like `MsgGrant` (see the handler): a brand-new hot key gets its
        // account here, so it can sign from block 1 without being funded.
        // Runs after bank genesis, in grant order, so numbers are deterministic.
        state
            .ensure_account(&g.grantee)
            .map_err(|e| format!("authz.grants: {}", e.log))?;
    }
    Ok(())
}

/// Authz as a component: genesis, and at each epoch's first block the
/// previous epochs' fee-allowance counters are pruned.
pub struct Authz;

impl kiln_framework::Component for Authz {
    const NAME: &'static str = "authz";
    type Genesis = AuthzGenesis;

    fn init_genesis<S: StateWrite>(
        state: &mut S,
        genesis: &AuthzGenesis,
        _ctx: &kiln_framework::GenesisCtx,
    ) -> kiln_framework::TxResult<()> {
        init_genesis(state, genesis).map_err(kiln_framework::TxError::invalid_request)
    }

    fn begin_block<S: StateWrite>(
        state: &mut S,
        block: &kiln_framework::BlockInfo,
        epoch: &kiln_framework::EpochInfo,
    ) -> kiln_framework::TxResult<Vec<kiln_framework::Event>> {
        if epoch.start_height == block.height {
            crate::state::prune_fee_allowances(state, epoch.epoch)?;
        }
        Ok(Vec::new())
    }
}
