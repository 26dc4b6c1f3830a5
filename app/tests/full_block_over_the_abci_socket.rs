//! A whole block driven through the real ABCI socket protocol (the
//! length-delimited protobuf wire format CometBFT 0.38 speaks), from a plain
//! TCP client: Info → InitChain → CheckTx → PrepareProposal → ProcessProposal
//! → FinalizeBlock → Commit → Query → Info.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;

use kiln_app::KilnApp;
use kiln_store::{Storage, StorageConfig};
use kiln_testkit::{msg_send, sign_tx, BlockDriver, TestKey, TxOptions};
use prost::Message;
use tendermint_proto::v0_38::abci::*;
use tendermint_proto::v0_38::abci::{request, response, Request, Response};

struct WireClient {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl WireClient {
    fn call(&mut self, value: request::Value) -> response::Value {
        let mut buf = Vec::new();
        Request { value: Some(value) }
            .encode_length_delimited(&mut buf)
            .unwrap();
        Request {
            value: Some(request::Value::Flush(RequestFlush {})),
        }
        .encode_length_delimited(&mut buf)
        .unwrap();
        self.writer.write_all(&buf).unwrap();
        let first = self.read_one();
        let flush = self.read_one();
        assert!(matches!(flush, response::Value::Flush(_)));
        first
    }

    fn read_one(&mut self) -> response::Value {
        // uvarint length, then the Response message.
        let mut len: u64 = 0;
        let mut shift = 0;
        loop {
            let mut byte = [0u8; 1];
            self.reader.read_exact(&mut byte).unwrap();
            len |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let mut body = vec![0u8; len as usize];
        self.reader.read_exact(&mut body).unwrap();
        let response = Response::decode(body.as_slice()).unwrap();
        match response.value.unwrap() {
            response::Value::Exception(e) => panic!("ABCI exception: {}", e.error),
            other => other,
        }
    }
}

#[test]
fn a_block_over_the_socket_commits_and_is_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let app =
        KilnApp::new(Storage::open(dir.path(), StorageConfig { keep_recent: 0 }).unwrap()).unwrap();
    let server = tendermint_abci::ServerBuilder::new(1 << 20)
        .bind("127.0.0.1:0", app)
        .unwrap();
    let addr = server.local_addr();
    std::thread::spawn(move || {
        let _ = server.listen();
    });
    let stream = TcpStream::connect(&addr).unwrap();
    let mut client = WireClient {
        writer: stream.try_clone().unwrap(),
        reader: BufReader::new(stream),
    };

    let alice = TestKey::from_label("socket-alice");
    let bob = TestKey::from_label("socket-bob");
    let genesis = BlockDriver::genesis_funding(&[&alice], 1_000_000);

    let response::Value::Info(info) = client.call(request::Value::Info(RequestInfo::default()))
    else {
        panic!()
    };
    assert_eq!(info.last_block_height, 0);
    let response::Value::InitChain(init) =
        client.call(request::Value::InitChain(RequestInitChain {
            chain_id: "kiln-socket".into(),
            app_state_bytes: serde_json::to_vec(&genesis).unwrap().into(),
            initial_height: 1,
            ..Default::default()
        }))
    else {
        panic!()
    };
    assert_eq!(init.app_hash.len(), 32);

    let tx = sign_tx(
        &alice,
        vec![msg_send(&alice.address, &bob.address, 777)],
        &TxOptions::new("kiln-socket", 0, 0),
    );
    let response::Value::CheckTx(check) = client.call(request::Value::CheckTx(RequestCheckTx {
        tx: tx.clone().into(),
        r#type: 0,
    })) else {
        panic!()
    };
    assert_eq!(check.code, 0, "{}", check.log);
    let response::Value::CheckTx(garbage) = client.call(request::Value::CheckTx(RequestCheckTx {
        tx: vec![1, 2, 3].into(),
        r#type: 0,
    })) else {
        panic!()
    };
    assert_eq!(garbage.code, 2);

    let time = Some(tendermint_proto::google::protobuf::Timestamp {
        seconds: 1_800_000_000,
        nanos: 0,
    });
    let response::Value::PrepareProposal(prepared) =
        client.call(request::Value::PrepareProposal(RequestPrepareProposal {
            max_tx_bytes: 1 << 20,
            txs: vec![tx.clone().into(), vec![9, 9].into()],
            height: 1,
            time,
            ..Default::default()
        }))
    else {
        panic!()
    };
    assert_eq!(prepared.txs.len(), 1, "the undecodable tx must be dropped");
    let response::Value::ProcessProposal(processed) =
        client.call(request::Value::ProcessProposal(RequestProcessProposal {
            txs: prepared.txs.clone(),
            height: 1,
            time,
            ..Default::default()
        }))
    else {
        panic!()
    };
    assert_eq!(
        processed.status,
        response_process_proposal::ProposalStatus::Accept as i32
    );
    let response::Value::ProcessProposal(bad) =
        client.call(request::Value::ProcessProposal(RequestProcessProposal {
            txs: vec![vec![0xde, 0xad].into()],
            height: 1,
            time,
            ..Default::default()
        }))
    else {
        panic!()
    };
    assert_eq!(
        bad.status,
        response_process_proposal::ProposalStatus::Reject as i32
    );

    let response::Value::FinalizeBlock(finalized) =
        client.call(request::Value::FinalizeBlock(RequestFinalizeBlock {
            txs: prepared.txs,
            height: 1,
            hash: vec![7u8; 32].into(),
            time,
            ..Default::default()
        }))
    else {
        panic!()
    };
    assert_eq!(finalized.tx_results.len(), 1);
    assert_eq!(
        finalized.tx_results[0].code, 0,
        "{}",
        finalized.tx_results[0].log
    );
    assert_ne!(finalized.app_hash, init.app_hash);
    let response::Value::Commit(_) = client.call(request::Value::Commit(RequestCommit {})) else {
        panic!()
    };

    let response::Value::Info(info) = client.call(request::Value::Info(RequestInfo::default()))
    else {
        panic!()
    };
    assert_eq!(info.last_block_height, 1);
    assert_eq!(info.last_block_app_hash, finalized.app_hash);

    let query = cosmos_sdk_proto::cosmos::bank::v1beta1::QueryBalanceRequest {
        address: bob.address.to_bech32(),
        denom: "ukiln".into(),
    };
    let response::Value::Query(q) = client.call(request::Value::Query(RequestQuery {
        path: "/cosmos.bank.v1beta1.Query/Balance".into(),
        data: query.encode_to_vec().into(),
        ..Default::default()
    })) else {
        panic!()
    };
    assert_eq!(q.code, 0, "{}", q.log);
    let balance =
        cosmos_sdk_proto::cosmos::bank::v1beta1::QueryBalanceResponse::decode(q.value.as_ref())
            .unwrap();
    assert_eq!(balance.balance.unwrap().amount, "777");
}
