//! ABCI socket server for running the app under a real CometBFT 0.38
//! (`kilnd start`, default 127.0.0.1:26658).
//!
//! CometBFT opens four connections (consensus, mempool, query, snapshot);
//! each is served on its own thread, and the app does its own locking (see
//! `KilnApp`: no lock is held while a block is proposed or executed, nor from
//! FinalizeBlock to Commit, so CheckTx on the mempool connection never waits
//! for a block).
//!
//! The wire format is tendermint-abci's: each message is a protobuf
//! `Request`/`Response` prefixed by its length as an unsigned varint. This
//! server reads it itself instead of using `tendermint_abci::Server` so that
//! bad input only ever costs the connection that sent it, with a log line:
//! a frame longer than [`MAX_FRAME_BYTES`], bytes that do not decode, a
//! request without a value (which tendermint-abci's dispatcher would
//! `unwrap`), or a panic inside the application all close that connection;
//! the process and the other connections keep running.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;

use anyhow::Context;
use prost::Message;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{request, response, Request, Response};
use tracing::{error, info, warn};

/// Largest request frame accepted. CometBFT's hard cap on a block is
/// 100 MiB, so every honest FinalizeBlock/PrepareProposal fits; a larger
/// length prefix is garbage or an attack and closes the connection.
pub const MAX_FRAME_BYTES: u64 = 128 << 20;

/// A bound, not yet serving, ABCI server.
pub struct AbciServer<A> {
    listener: TcpListener,
    app: A,
    max_frame_bytes: u64,
}

/// Bind the ABCI server without serving yet (so a caller binding port 0 can
/// learn the address with `server.local_addr()` and then `server.listen()`).
pub fn bind_abci<A: Application>(app: A, addr: SocketAddr) -> anyhow::Result<AbciServer<A>> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("binding the ABCI socket on {addr}"))?;
    Ok(AbciServer {
        listener,
        app,
        max_frame_bytes: MAX_FRAME_BYTES,
    })
}

/// Serve `app` over the ABCI socket protocol on `addr` (blocking; one thread
/// per CometBFT connection: consensus, mempool, query, snapshot).
pub fn serve_abci<A: Application>(app: A, addr: SocketAddr) -> anyhow::Result<()> {
    let server = bind_abci(app, addr)?;
    info!(addr = %server.local_addr(), "ABCI server listening");
    server.listen().context("ABCI server stopped")
}

impl<A: Application> AbciServer<A> {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Refuse frames longer than `bytes` (default [`MAX_FRAME_BYTES`]).
    pub fn with_max_frame_bytes(mut self, bytes: u64) -> Self {
        self.max_frame_bytes = bytes;
        self
    }

    /// Accept connections forever, each on its own thread.
    pub fn listen(self) -> anyhow::Result<()> {
        for stream in self.listener.incoming() {
            match stream {
                Ok(stream) => {
                    let app = self.app.clone();
                    let max = self.max_frame_bytes;
                    let spawned = std::thread::Builder::new()
                        .name("abci-connection".into())
                        .spawn(move || serve_connection(stream, app, max));
                    if let Err(e) = spawned {
                        error!(error = %e, "could not start a thread for an ABCI connection");
                    }
                }
                // A failed accept (e.g. too many open files) costs only that
                // connection attempt.
                Err(e) => warn!(error = %e, "accepting an ABCI connection failed"),
            }
        }
        Ok(())
    }
}

/// Why a connection was closed.
#[derive(Debug)]
enum Closed {
    /// The peer closed the stream between frames.
    ByPeer,
    Io(std::io::Error),
    /// A frame longer than the limit.
    Oversized(u64),
    /// A length prefix longer than 10 bytes.
    BadLength,
}

/// Read one unsigned varint length prefix; `ByPeer` on a clean EOF before it.
fn read_length(reader: &mut impl Read) -> Result<u64, Closed> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        match reader.read(&mut byte) {
            Ok(0) if i == 0 => return Err(Closed::ByPeer),
            Ok(0) => {
                return Err(Closed::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "stream ended inside a length prefix",
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Closed::Io(e)),
        }
        value |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Closed::BadLength)
}

/// Read one frame (at most `max` bytes; memory grows only as bytes arrive).
fn read_frame(reader: &mut impl Read, max: u64) -> Result<Vec<u8>, Closed> {
    let len = read_length(reader)?;
    if len > max {
        return Err(Closed::Oversized(len));
    }
    let mut buf = Vec::with_capacity(usize::try_from(len.min(1 << 16)).unwrap_or(1 << 16));
    reader.take(len).read_to_end(&mut buf).map_err(Closed::Io)?;
    if buf.len() as u64 != len {
        return Err(Closed::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("stream ended inside a {len}-byte frame"),
        )));
    }
    Ok(buf)
}

fn request_kind(value: &request::Value) -> &'static str {
    use request::Value::*;
    match value {
        Echo(_) => "echo",
        Flush(_) => "flush",
        Info(_) => "info",
        InitChain(_) => "init_chain",
        Query(_) => "query",
        CheckTx(_) => "check_tx",
        Commit(_) => "commit",
        ListSnapshots(_) => "list_snapshots",
        OfferSnapshot(_) => "offer_snapshot",
        LoadSnapshotChunk(_) => "load_snapshot_chunk",
        ApplySnapshotChunk(_) => "apply_snapshot_chunk",
        PrepareProposal(_) => "prepare_proposal",
        ProcessProposal(_) => "process_proposal",
        ExtendVote(_) => "extend_vote",
        VerifyVoteExtension(_) => "verify_vote_extension",
        FinalizeBlock(_) => "finalize_block",
    }
}

/// Run one request on the app (what tendermint-abci's dispatcher does,
/// without its `unwrap` on a missing value: the caller checked it).
fn dispatch<A: Application>(app: &A, value: request::Value) -> Response {
    use request::Value as Req;
    use response::Value as Res;
    let value = match value {
        Req::Echo(r) => Res::Echo(app.echo(r)),
        Req::Flush(_) => Res::Flush(app.flush()),
        Req::Info(r) => Res::Info(app.info(r)),
        Req::InitChain(r) => Res::InitChain(app.init_chain(r)),
        Req::Query(r) => Res::Query(app.query(r)),
        Req::CheckTx(r) => Res::CheckTx(app.check_tx(r)),
        Req::Commit(_) => Res::Commit(app.commit()),
        Req::ListSnapshots(_) => Res::ListSnapshots(app.list_snapshots()),
        Req::OfferSnapshot(r) => Res::OfferSnapshot(app.offer_snapshot(r)),
        Req::LoadSnapshotChunk(r) => Res::LoadSnapshotChunk(app.load_snapshot_chunk(r)),
        Req::ApplySnapshotChunk(r) => Res::ApplySnapshotChunk(app.apply_snapshot_chunk(r)),
        Req::PrepareProposal(r) => Res::PrepareProposal(app.prepare_proposal(r)),
        Req::ProcessProposal(r) => Res::ProcessProposal(app.process_proposal(r)),
        Req::ExtendVote(r) => Res::ExtendVote(app.extend_vote(r)),
        Req::VerifyVoteExtension(r) => Res::VerifyVoteExtension(app.verify_vote_extension(r)),
        Req::FinalizeBlock(r) => Res::FinalizeBlock(app.finalize_block(r)),
    };
    Response { value: Some(value) }
}

fn serve_connection<A: Application>(stream: TcpStream, app: A, max_frame: u64) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_string(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    let write_half = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            error!(%peer, error = %e, "cannot split the ABCI connection; closing it");
            return;
        }
    };
    info!(%peer, "ABCI connection opened");
    let mut reader = BufReader::new(stream);
    let mut writer = BufWriter::new(write_half);
    loop {
        let frame = match read_frame(&mut reader, max_frame) {
            Ok(frame) => frame,
            Err(Closed::ByPeer) => {
                info!(%peer, "ABCI connection closed by the peer");
                return;
            }
            Err(Closed::Oversized(len)) => {
                warn!(%peer, len, limit = max_frame, "ABCI frame longer than the limit; closing the connection");
                return;
            }
            Err(Closed::BadLength) => {
                warn!(%peer, "ABCI length prefix is not a varint; closing the connection");
                return;
            }
            Err(Closed::Io(e)) => {
                warn!(%peer, error = %e, "reading from the ABCI connection failed; closing it");
                return;
            }
        };
        let request = match Request::decode(frame.as_slice()) {
            Ok(r) => r,
            Err(e) => {
                warn!(%peer, error = %e, "undecodable ABCI request; closing the connection");
                return;
            }
        };
        let Some(value) = request.value else {
            warn!(%peer, "ABCI request without a value; closing the connection");
            return;
        };
        let kind = request_kind(&value);
        let response = match std::panic::catch_unwind(AssertUnwindSafe(|| dispatch(&app, value))) {
            Ok(response) => response,
            Err(_) => {
                error!(%peer, request = kind, "the application panicked on an ABCI request; closing the connection");
                return;
            }
        };
        let mut out = Vec::with_capacity(response.encoded_len() + 10);
        if let Err(e) = response.encode_length_delimited(&mut out) {
            error!(%peer, error = %e, "encoding an ABCI response failed; closing the connection");
            return;
        }
        if let Err(e) = writer.write_all(&out) {
            warn!(%peer, error = %e, "writing to the ABCI connection failed; closing it");
            return;
        }
        // CometBFT sends Flush after the requests it waits on; flushing also
        // whenever no request is already buffered keeps any client moving.
        if kind == "flush" || reader.buffer().is_empty() {
            if let Err(e) = writer.flush() {
                warn!(%peer, error = %e, "flushing the ABCI connection failed; closing it");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefixes_decode_and_bad_ones_are_refused() {
        let mut ok: &[u8] = &[0xac, 0x02];
        assert_eq!(read_length(&mut ok).unwrap(), 300);
        let mut empty: &[u8] = &[];
        assert!(matches!(read_length(&mut empty), Err(Closed::ByPeer)));
        let mut cut: &[u8] = &[0x80];
        assert!(matches!(read_length(&mut cut), Err(Closed::Io(_))));
        let mut long: &[u8] = &[0xff; 11];
        assert!(matches!(read_length(&mut long), Err(Closed::BadLength)));
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            read_frame(&mut huge, 1 << 20),
            Err(Closed::Oversized(_))
        ));
    }
}
