//! ABCI socket server for running the app under a real CometBFT 0.38
//! (`kilnd start`, default 127.0.0.1:26658).

use std::net::SocketAddr;

use anyhow::Context;
use tendermint_abci::{Application, Server, ServerBuilder};

/// Read buffer per connection (large enough for big FinalizeBlock requests).
pub const READ_BUF_SIZE: usize = 1 << 20;

/// Bind the ABCI server without serving yet (so a caller binding port 0 can
/// learn the address with `server.local_addr()` and then `server.listen()`).
pub fn bind_abci<A: Application>(app: A, addr: SocketAddr) -> anyhow::Result<Server<A>> {
    ServerBuilder::new(READ_BUF_SIZE)
        .bind(addr, app)
        .with_context(|| format!("binding the ABCI socket on {addr}"))
}

/// Serve `app` over the ABCI socket protocol on `addr` (blocking; one thread
/// per CometBFT connection: consensus, mempool, query, snapshot).
pub fn serve_abci<A: Application>(app: A, addr: SocketAddr) -> anyhow::Result<()> {
    let server = bind_abci(app, addr)?;
    tracing::info!(addr = %server.local_addr(), "ABCI server listening");
    server.listen().context("ABCI server stopped")
}
