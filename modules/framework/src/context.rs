//! What a message handler may know about its surroundings: the block it runs
//! in (height, time, chain id — never the wall clock) and where to put events.

use crate::address::Address;
use crate::event::Event;

/// Block-level facts, identical on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockInfo {
    pub chain_id: String,
    pub height: u64,
    /// Block time from the header, seconds since the Unix epoch.
    pub time_seconds: i64,
    pub time_nanos: u32,
    /// This block's hash (empty where CometBFT does not provide it, e.g. PrepareProposal).
    pub hash: Vec<u8>,
}

/// Per-message execution context: the block info and the event sink.
#[derive(Debug)]
pub struct ExecCtx<'a> {
    pub block: &'a BlockInfo,
    pub events: Vec<Event>,
    /// The ML key acting for the signer, while a `MsgExec` runs an inner
    /// message the grantee was granted (`None` when the signer signs
    /// itself): lets a handler bind a message to the key's ML node.
    pub acting_key: Option<Address>,
}

impl<'a> ExecCtx<'a> {
    pub fn new(block: &'a BlockInfo) -> Self {
        ExecCtx {
            block,
            events: Vec::new(),
            acting_key: None,
        }
    }

    pub fn emit(&mut self, event: Event) {
        self.events.push(event);
    }
}
