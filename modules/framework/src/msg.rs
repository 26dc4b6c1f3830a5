//! How a module declares a message type: once, in its `msgs.rs`, as a unit
//! type implementing [`MsgKind`] (type URL, signer, ML-ops or not, stateless
//! check, handler, description). The app's message list (`kiln-messages`)
//! names each declaration on one line and derives the tx decoder, the router,
//! the ML-ops grant set, the worker's set and wallet descriptions from it.
//!
//! A unit descriptor (rather than a trait on the protobuf type) lets a module
//! declare Cosmos SDK messages it does not own (`MsgSend`, `MsgGrant`, …).

use kiln_state::StateWrite;

use crate::address::Address;
use crate::context::ExecCtx;
use crate::error::{TxError, TxResult};

/// One message type the chain executes.
pub trait MsgKind {
    /// The protobuf message.
    type Proto: prost::Message + Default + Clone + PartialEq;
    /// `/package.Name`, the `Any` type URL.
    const TYPE_URL: &'static str;
    /// True when a host's ML operational key may send it through `MsgExec`
    /// (SPEC §1). Never true for anything that moves funds or changes grants.
    const ML_OPS: bool = false;

    /// The account that must sign it.
    fn signer(msg: &Self::Proto) -> TxResult<Address>;

    /// Checks that need no state. Runs in CheckTx and ProcessProposal, so a
    /// malformed message never reaches a block, and again before execution.
    fn validate_basic(msg: &Self::Proto) -> TxResult<()> {
        let _ = msg;
        Ok(())
    }

    /// Executes it. The signer has been authenticated (or authorized through
    /// a grant) and `validate_basic` has passed.
    fn handle<S: StateWrite>(
        state: &mut S,
        ctx: &mut ExecCtx<'_>,
        msg: &Self::Proto,
    ) -> TxResult<()>;

    /// Its fields as JSON (wallet confirmations, `--generate-only`), Cosmos
    /// style: `@type` first, then the fields under their proto names.
    fn describe(msg: &Self::Proto) -> serde_json::Value;
}

/// Parses a bech32 address field of a message, naming the field on error.
pub fn address_field(text: &str, field: &str) -> TxResult<Address> {
    Address::parse(text).map_err(|e| TxError::invalid_address(format!("{field}: {e}")))
}

/// `seconds` since the Unix epoch as RFC 3339 UTC (`2026-01-31T00:00:00Z`),
/// without a time library (proleptic Gregorian calendar, days-from-civil).
pub fn rfc3339(seconds: i64, nanos: i32) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let frac = if nanos > 0 {
        let mut f = format!(".{nanos:09}");
        while f.ends_with('0') {
            f.pop();
        }
        f
    } else {
        String::new()
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// Implements `prost::Name` for a hand-written message:
/// `proto_name!(MsgSprintCommit, "kiln.sprint.v1");`
#[macro_export]
macro_rules! proto_name {
    ($ty:ident, $package:literal) => {
        impl ::prost::Name for $ty {
            const NAME: &'static str = stringify!($ty);
            const PACKAGE: &'static str = $package;
            fn full_name() -> String {
                format!("{}.{}", $package, stringify!($ty))
            }
            fn type_url() -> String {
                format!("/{}.{}", $package, stringify!($ty))
            }
        }
    };
}

/// JSON of an `Any` the reader does not know: its type URL and base64 value.
pub fn opaque_any_json(any: &cosmos_sdk_proto::Any) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::json!({"@type": any.type_url,
        "value_base64": base64::engine::general_purpose::STANDARD.encode(&any.value)})
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_769_817_600, 0), "2026-01-31T00:00:00Z");
        assert_eq!(
            rfc3339(1_769_817_600, 500_000_000),
            "2026-01-31T00:00:00.5Z"
        );
        assert_eq!(rfc3339(-1, 0), "1969-12-31T23:59:59Z");
    }
}
