//! A client for the ABCI socket that talks like CometBFT 0.38: four TCP
//! connections to one address (query, snapshot, mempool, consensus, opened in
//! that order), each carrying length-delimited protobuf `Request`s and
//! `Flush`es. Every read has a deadline, so a request the app never answers
//! fails the test with the connection's name instead of hanging it.
#![allow(dead_code)]

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use prost::Message;
use tendermint_proto::v0_38::abci::{
    request, response, CheckTxType, Request, RequestCheckTx, RequestCommit, RequestFinalizeBlock,
    RequestFlush, RequestInfo, RequestInitChain, RequestQuery, Response, ResponseCheckTx,
    ResponseCommit, ResponseFinalizeBlock, ResponseInfo, ResponseInitChain, ResponseQuery,
};

/// How long any one answer may take before the test calls the app stuck.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(20);

/// One ABCI connection.
pub struct AbciConn {
    pub name: &'static str,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl AbciConn {
    pub fn connect(addr: SocketAddr, name: &'static str) -> AbciConn {
        let stream =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("{name} connection to {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(ANSWER_DEADLINE)).unwrap();
        AbciConn {
            name,
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// Writes one request without waiting (CometBFT's `*Async` calls).
    pub fn send(&mut self, value: request::Value) {
        let mut buf = Vec::new();
        Request { value: Some(value) }
            .encode_length_delimited(&mut buf)
            .unwrap();
        self.writer
            .write_all(&buf)
            .unwrap_or_else(|e| panic!("writing to the {} connection: {e}", self.name));
    }

    /// Writes a Flush request (CometBFT sends one after the requests it waits on).
    pub fn send_flush(&mut self) {
        self.send(request::Value::Flush(RequestFlush {}));
    }

    /// The next response, or an error saying the deadline passed.
    pub fn try_recv(&mut self) -> Result<response::Value, String> {
        let mut len: u64 = 0;
        let mut shift = 0;
        loop {
            let mut byte = [0u8; 1];
            self.reader.read_exact(&mut byte).map_err(|e| {
                format!(
                    "no answer on the {} connection within {ANSWER_DEADLINE:?}: {e}",
                    self.name
                )
            })?;
            len |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let mut body = vec![0u8; usize::try_from(len).unwrap()];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| format!("reading a response on the {} connection: {e}", self.name))?;
        match Response::decode(body.as_slice()).unwrap().value {
            Some(response::Value::Exception(e)) => {
                Err(format!("ABCI exception on {}: {}", self.name, e.error))
            }
            Some(other) => Ok(other),
            None => Err(format!("empty response on {}", self.name)),
        }
    }

    pub fn recv(&mut self) -> response::Value {
        self.try_recv().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reads the Flush answer that follows the answers already read.
    pub fn recv_flush(&mut self) {
        match self.recv() {
            response::Value::Flush(_) => {}
            other => panic!("expected Flush on {}, got {other:?}", self.name),
        }
    }

    /// One request, then Flush; the answer (the Flush answer is checked).
    pub fn call(&mut self, value: request::Value) -> response::Value {
        self.send(value);
        self.send_flush();
        let answer = self.recv();
        self.recv_flush();
        answer
    }

    pub fn info(&mut self) -> ResponseInfo {
        match self.call(request::Value::Info(RequestInfo {
            version: "0.38.25".into(),
            block_version: 11,
            p2p_version: 8,
            abci_version: "2.0.0".into(),
        })) {
            response::Value::Info(r) => r,
            other => panic!("expected Info, got {other:?}"),
        }
    }

    pub fn init_chain(&mut self, request: RequestInitChain) -> ResponseInitChain {
        match self.call(request::Value::InitChain(request)) {
            response::Value::InitChain(r) => r,
            other => panic!("expected InitChain, got {other:?}"),
        }
    }

    pub fn check_tx(&mut self, tx: &[u8], kind: CheckTxType) -> ResponseCheckTx {
        match self.call(check_tx_request(tx, kind)) {
            response::Value::CheckTx(r) => r,
            other => panic!("expected CheckTx, got {other:?}"),
        }
    }

    pub fn finalize_block(&mut self, request: RequestFinalizeBlock) -> ResponseFinalizeBlock {
        match self.call(request::Value::FinalizeBlock(request)) {
            response::Value::FinalizeBlock(r) => r,
            other => panic!("expected FinalizeBlock, got {other:?}"),
        }
    }

    pub fn commit(&mut self) -> ResponseCommit {
        match self.call(request::Value::Commit(RequestCommit {})) {
            response::Value::Commit(r) => r,
            other => panic!("expected Commit, got {other:?}"),
        }
    }

    pub fn query(&mut self, path: &str, data: Vec<u8>) -> ResponseQuery {
        match self.call(request::Value::Query(RequestQuery {
            path: path.into(),
            data: data.into(),
            ..Default::default()
        })) {
            response::Value::Query(r) => r,
            other => panic!("expected Query, got {other:?}"),
        }
    }
}

pub fn check_tx_request(tx: &[u8], kind: CheckTxType) -> request::Value {
    request::Value::CheckTx(RequestCheckTx {
        tx: tx.to_vec().into(),
        r#type: kind as i32,
    })
}

/// CometBFT's four connections to one app (proxy/multi_app_conn.go opens
/// them in this order).
pub struct CometConnections {
    pub query: AbciConn,
    pub snapshot: AbciConn,
    pub mempool: AbciConn,
    pub consensus: AbciConn,
}

impl CometConnections {
    pub fn open(addr: SocketAddr) -> CometConnections {
        CometConnections {
            query: AbciConn::connect(addr, "query"),
            snapshot: AbciConn::connect(addr, "snapshot"),
            mempool: AbciConn::connect(addr, "mempool"),
            consensus: AbciConn::connect(addr, "consensus"),
        }
    }

    /// What CometBFT's `BlockExecutor.Commit` does around the app's Commit:
    /// flush the mempool connection (every CheckTx sent so far must be
    /// answered first), Commit on the consensus connection, then recheck the
    /// txs left in the mempool (sent asynchronously, then one Flush). Returns
    /// the Commit answer and the recheck answers in mempool order.
    pub fn commit_and_recheck(
        &mut self,
        mempool_left: &[Vec<u8>],
    ) -> (ResponseCommit, Vec<ResponseCheckTx>) {
        self.mempool.send_flush();
        self.mempool.recv_flush();
        let committed = self.consensus.commit();
        for tx in mempool_left {
            self.mempool
                .send(check_tx_request(tx, CheckTxType::Recheck));
        }
        self.mempool.send_flush();
        let rechecked = mempool_left
            .iter()
            .map(|_| match self.mempool.recv() {
                response::Value::CheckTx(r) => r,
                other => panic!("expected a recheck answer, got {other:?}"),
            })
            .collect();
        self.mempool.recv_flush();
        (committed, rechecked)
    }
}

/// A block time `height` seconds after a fixed genesis time.
pub fn block_time(height: i64) -> tendermint_proto::google::protobuf::Timestamp {
    tendermint_proto::google::protobuf::Timestamp {
        seconds: 1_800_000_000 + height,
        nanos: 0,
    }
}

/// FinalizeBlock for `height` with `txs` (a fixed hash and time per height,
/// so two nodes given the same heights see the same blocks).
pub fn finalize_request(height: i64, txs: &[Vec<u8>]) -> RequestFinalizeBlock {
    RequestFinalizeBlock {
        txs: txs.iter().cloned().map(Into::into).collect(),
        height,
        hash: {
            let mut hash = vec![0u8; 32];
            hash[..8].copy_from_slice(&height.to_be_bytes());
            hash.into()
        },
        time: Some(block_time(height)),
        ..Default::default()
    }
}
