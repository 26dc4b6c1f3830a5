//! The one message list (`kiln-messages`) is what the chain decodes, routes
//! and grants: every listed type decodes and reaches its module's handler,
//! every ML-ops type is grantable to a hot key and routable through its
//! `MsgExec`, and nothing else is — an unlisted type does not decode and a
//! listed type that is not ML-ops is refused to a hot key holding every
//! ML-ops grant. A new message without a sample here fails the test, so its
//! author must say which module handles it.

use cosmos_sdk_proto::cosmos::bank::v1beta1::MsgSend;
use cosmos_sdk_proto::Any;
use kiln_framework::params::gov_authority;
use kiln_framework::Address;
use kiln_testkit::{any_of, msg_exec, msg_grant, msg_send, sign_tx, BlockDriver, TestKey};

const CHAIN: &str = "kiln-message-list";

/// A well-formed message of each listed type, signed for by `signer`.
fn sample(type_url: &str, signer: &Address, other: &Address) -> Any {
    let s = signer.to_bech32();
    match type_url {
        "/cosmos.bank.v1beta1.MsgSend" => msg_send(signer, other, 1),
        "/cosmos.authz.v1beta1.MsgGrant" => msg_grant(signer, other, "/x.y.MsgZ", None),
        "/cosmos.authz.v1beta1.MsgRevoke" => {
            any_of(&cosmos_sdk_proto::cosmos::authz::v1beta1::MsgRevoke {
                granter: s,
                grantee: other.to_bech32(),
                msg_type_url: "/x.y.MsgZ".into(),
            })
        }
        "/kiln.host.v1.MsgRegisterHost" => any_of(&kiln_hosts::msgs::MsgRegisterHost {
            owner: s,
            worker_url: "http://h.example".into(),
            consensus_pubkey: vec![9; 32],
            models: vec![],
            hardware: String::new(),
            consensus_key_proof: vec![0; 64],
        }),
        "/kiln.host.v1.MsgUpdateHost" => any_of(&kiln_hosts::msgs::MsgUpdateHost {
            owner: s,
            worker_url: "http://h.example".into(),
            consensus_pubkey: vec![],
            models: vec![],
            hardware: String::new(),
            consensus_key_proof: vec![],
        }),
        "/kiln.host.v1.MsgAddMlNode" => any_of(&kiln_hosts::mlnodes::MsgAddMlNode {
            owner: s,
            id: "gpu-0".into(),
            worker_url: "http://gpu0.example".into(),
            models: vec![],
            hardware: String::new(),
            ml_key: other.to_bech32(),
        }),
        "/kiln.host.v1.MsgUpdateMlNode" => any_of(&kiln_hosts::mlnodes::MsgUpdateMlNode {
            owner: s,
            id: "gpu-0".into(),
            worker_url: "http://gpu0.example".into(),
            models: vec![],
            hardware: String::new(),
        }),
        "/kiln.host.v1.MsgSetMlNodeEnabled" => any_of(&kiln_hosts::mlnodes::MsgSetMlNodeEnabled {
            owner: s,
            id: "gpu-0".into(),
            enabled: false,
        }),
        "/kiln.host.v1.MsgRemoveMlNode" => any_of(&kiln_hosts::mlnodes::MsgRemoveMlNode {
            owner: s,
            id: "gpu-0".into(),
        }),
        "/kiln.sprint.v1.MsgSprintCommit" => any_of(&kiln_sprint::msgs::MsgSprintCommit {
            host: s,
            ml_node: String::new(),
            epoch: 1,
            root: vec![7; 32],
            count: 3,
            secret_hash: vec![5; 32],
        }),
        "/kiln.sprint.v1.MsgSprintRevealSecret" => {
            any_of(&kiln_sprint::msgs::MsgSprintRevealSecret {
                host: s,
                ml_node: String::new(),
                epoch: 1,
                secret: vec![6; 32],
            })
        }
        "/kiln.sprint.v1.MsgSprintOpen" => any_of(&kiln_sprint::msgs::MsgSprintOpen {
            host: s,
            ml_node: String::new(),
            epoch: 1,
            leaves: vec![],
        }),
        "/kiln.sprint.v1.MsgSprintVoteCommit" => any_of(&kiln_sprint::msgs::MsgSprintVoteCommit {
            voter: s,
            epoch: 1,
            host: other.to_bech32(),
            commitment: vec![1; 32],
        }),
        "/kiln.sprint.v1.MsgSprintVoteReveal" => any_of(&kiln_sprint::msgs::MsgSprintVoteReveal {
            voter: s,
            epoch: 1,
            host: other.to_bech32(),
            valid: true,
            salt: vec![],
        }),
        "/kiln.inference.v1.MsgStartInference" => {
            any_of(&kiln_inference::msgs::MsgStartInference {
                transfer_agent: s,
                id: kiln_inference::request::request_id(&[3; 64]).to_vec(),
                requester: other.to_bech32(),
                requester_pubkey: vec![2; 33],
                model: "smollm2-135m".into(),
                prompt_hash: vec![4; 32],
                prompt_tokens: 5,
                max_tokens: 6,
                executor: other.to_bech32(),
                seed_height: 1,
                request_timestamp: 1,
                request_signature: vec![3; 64],
            })
        }
        "/kiln.inference.v1.MsgFinishInference" => {
            any_of(&kiln_inference::msgs::MsgFinishInference {
                executor: s,
                id: vec![1; 32],
                response_hash: vec![2; 32],
                completion_tokens: 3,
                top_logprobs_hash: vec![4; 32],
            })
        }
        "/kiln.inference.v1.MsgValidation" => any_of(&kiln_inference::msgs::MsgValidation {
            validator: s,
            id: vec![1; 32],
            score_micro: 990_000,
        }),
        "/kiln.inference.v1.MsgDisputeVote" => any_of(&kiln_inference::msgs::MsgDisputeVote {
            voter: s,
            id: vec![1; 32],
            invalid: true,
        }),
        "/kiln.inference.v1.MsgCommitValidationSeed" => {
            any_of(&kiln_inference::msgs::MsgCommitValidationSeed {
                host: s,
                period: 0,
                commitment: vec![5; 32],
            })
        }
        "/kiln.inference.v1.MsgRevealValidationSeed" => {
            any_of(&kiln_inference::msgs::MsgRevealValidationSeed {
                host: s,
                period: 0,
                seed: vec![6; 32],
            })
        }
        "/kiln.staking.v1.MsgBond" => any_of(&kiln_staking::msgs::MsgBond {
            host: s,
            amount: "7".into(),
        }),
        "/kiln.staking.v1.MsgUnbond" => any_of(&kiln_staking::msgs::MsgUnbond {
            host: s,
            amount: "7".into(),
        }),
        "/kiln.staking.v1.MsgUnjail" => any_of(&kiln_staking::msgs::MsgUnjail { host: s }),
        "/kiln.staking.v1.MsgSetCommission" => any_of(&kiln_staking::msgs::MsgSetCommission {
            host: s,
            commission_bps: 50,
        }),
        "/cosmos.staking.v1beta1.MsgDelegate" => {
            any_of(&cosmos_sdk_proto::cosmos::staking::v1beta1::MsgDelegate {
                delegator_address: s,
                validator_address: Address([9; 20]).to_valoper(),
                amount: Some(cosmos_sdk_proto::cosmos::base::v1beta1::Coin {
                    denom: "ukiln".into(),
                    amount: "7".into(),
                }),
            })
        }
        "/cosmos.staking.v1beta1.MsgUndelegate" => {
            any_of(&cosmos_sdk_proto::cosmos::staking::v1beta1::MsgUndelegate {
                delegator_address: s,
                validator_address: Address([9; 20]).to_valoper(),
                amount: Some(cosmos_sdk_proto::cosmos::base::v1beta1::Coin {
                    denom: "ukiln".into(),
                    amount: "7".into(),
                }),
            })
        }
        "/cosmos.staking.v1beta1.MsgBeginRedelegate" => any_of(
            &cosmos_sdk_proto::cosmos::staking::v1beta1::MsgBeginRedelegate {
                delegator_address: s,
                validator_src_address: Address([9; 20]).to_valoper(),
                validator_dst_address: Address([8; 20]).to_valoper(),
                amount: Some(cosmos_sdk_proto::cosmos::base::v1beta1::Coin {
                    denom: "ukiln".into(),
                    amount: "7".into(),
                }),
            },
        ),
        "/cosmos.distribution.v1beta1.MsgWithdrawDelegatorReward" => any_of(
            &cosmos_sdk_proto::cosmos::distribution::v1beta1::MsgWithdrawDelegatorReward {
                delegator_address: s,
                validator_address: Address([9; 20]).to_valoper(),
            },
        ),
        "/cosmos.gov.v1.MsgSubmitProposal" => {
            any_of(&cosmos_sdk_proto::cosmos::gov::v1::MsgSubmitProposal {
                messages: vec![],
                initial_deposit: vec![cosmos_sdk_proto::cosmos::base::v1beta1::Coin {
                    denom: "ukiln".into(),
                    amount: "7".into(),
                }],
                proposer: s,
                metadata: String::new(),
                title: "t".into(),
                summary: String::new(),
                expedited: false,
            })
        }
        "/cosmos.gov.v1.MsgDeposit" => any_of(&cosmos_sdk_proto::cosmos::gov::v1::MsgDeposit {
            proposal_id: 1,
            depositor: s,
            amount: vec![cosmos_sdk_proto::cosmos::base::v1beta1::Coin {
                denom: "ukiln".into(),
                amount: "7".into(),
            }],
        }),
        "/cosmos.gov.v1.MsgVote" => any_of(&cosmos_sdk_proto::cosmos::gov::v1::MsgVote {
            proposal_id: 1,
            voter: s,
            option: 1,
            metadata: String::new(),
        }),
        "/cosmos.gov.v1.MsgVoteWeighted" => {
            any_of(&cosmos_sdk_proto::cosmos::gov::v1::MsgVoteWeighted {
                proposal_id: 1,
                voter: s,
                options: vec![cosmos_sdk_proto::cosmos::gov::v1::WeightedVoteOption {
                    option: 1,
                    weight: "1.0".into(),
                }],
                metadata: String::new(),
            })
        }
        // Governance-only messages: signed by the governance authority.
        "/cosmos.upgrade.v1beta1.MsgSoftwareUpgrade" => any_of(
            &cosmos_sdk_proto::cosmos::upgrade::v1beta1::MsgSoftwareUpgrade {
                authority: gov_authority().to_bech32(),
                plan: Some(cosmos_sdk_proto::cosmos::upgrade::v1beta1::Plan {
                    name: "v2".into(),
                    height: 1_000,
                    ..Default::default()
                }),
            },
        ),
        "/cosmos.upgrade.v1beta1.MsgCancelUpgrade" => any_of(
            &cosmos_sdk_proto::cosmos::upgrade::v1beta1::MsgCancelUpgrade {
                authority: gov_authority().to_bech32(),
            },
        ),
        "/cosmos.distribution.v1beta1.MsgCommunityPoolSpend" => any_of(
            &cosmos_sdk_proto::cosmos::distribution::v1beta1::MsgCommunityPoolSpend {
                authority: gov_authority().to_bech32(),
                recipient: other.to_bech32(),
                amount: vec![cosmos_sdk_proto::cosmos::base::v1beta1::Coin {
                    denom: "ukiln".into(),
                    amount: "7".into(),
                }],
            },
        ),
        "/kiln.inference.v1.MsgRegisterModel" => {
            any_of(&kiln_inference::registry::MsgRegisterModel {
                authority: gov_authority().to_bech32(),
                model: serde_json::json!({
                    "id": "m",
                    "gguf_sha256": "1".repeat(64),
                    "tokenizer_sha256": "2".repeat(64),
                    "price_floor_pkiln": 1,
                })
                .to_string(),
            })
        }
        "/kiln.inference.v1.MsgRetireModel" => any_of(&kiln_inference::registry::MsgRetireModel {
            authority: gov_authority().to_bech32(),
            model_id: "m".into(),
        }),
        other => match default_params(other) {
            Some(params) => Any {
                type_url: other.into(),
                value: prost::Message::encode_to_vec(&kiln_framework::params::MsgUpdateParams {
                    authority: gov_authority().to_bech32(),
                    params,
                }),
            },
            None => panic!("listed message {other} has no sample: add one (and its module)"),
        },
    }
}

/// Default params (as JSON) of the module whose `MsgUpdateParams` is `type_url`.
fn default_params(type_url: &str) -> Option<String> {
    let (module, _) = kiln_messages::UPDATE_PARAMS
        .iter()
        .find(|(_, url)| *url == type_url)?;
    Some(
        match *module {
            "auth" => serde_json::to_string(&kiln_bank::AuthParams::default()),
            "authz" => serde_json::to_string(&kiln_authz::AuthzParams::default()),
            "epochs" => serde_json::to_string(&kiln_epochs::EpochParams::default()),
            "staking" => serde_json::to_string(&kiln_staking::StakingParams::default()),
            "sprint" => serde_json::to_string(&kiln_sprint::SprintParams::default()),
            "reputation" => serde_json::to_string(&kiln_reputation::ReputationParams::default()),
            "inference" => serde_json::to_string(&kiln_inference::InferenceParams::default()),
            "rewards" => serde_json::to_string(&kiln_rewards::RewardsParams::default()),
            "slashing" => serde_json::to_string(&kiln_slashing::SlashingParams::default()),
            "gov" => serde_json::to_string(&kiln_gov::GovParams::default()),
            other => panic!("no default params for module {other}"),
        }
        .unwrap(),
    )
}

/// Who signs the sample of `type_url`: the governance authority for the
/// messages only a passed proposal sends, else `signer`.
fn expected_signer(type_url: &str, signer: Address) -> Address {
    let gov_only = default_params(type_url).is_some()
        || matches!(
            type_url,
            "/cosmos.upgrade.v1beta1.MsgSoftwareUpgrade"
                | "/cosmos.upgrade.v1beta1.MsgCancelUpgrade"
                | "/cosmos.distribution.v1beta1.MsgCommunityPoolSpend"
                | "/kiln.inference.v1.MsgRegisterModel"
                | "/kiln.inference.v1.MsgRetireModel"
        );
    if gov_only {
        gov_authority()
    } else {
        signer
    }
}

/// The codespace of the module that handles each listed type.
fn module_codespace(type_url: &str) -> &'static str {
    if type_url.starts_with("/kiln.sprint.") {
        "sprint"
    } else if type_url.starts_with("/kiln.inference.") {
        "inference"
    } else if type_url.starts_with("/kiln.staking.")
        || type_url.starts_with("/cosmos.staking.")
        || type_url.starts_with("/cosmos.distribution.")
    {
        "staking"
    } else if type_url.starts_with("/kiln.host.") {
        "hosts"
    } else {
        "sdk"
    }
}

#[test]
fn every_listed_type_decodes_and_an_unlisted_one_does_not() {
    let (a, b) = (Address([1; 20]), Address([2; 20]));
    for url in kiln_messages::TYPE_URLS {
        let msg = kiln_messages::Msg::from_any(&sample(url, &a, &b), 0)
            .unwrap_or_else(|e| panic!("{url}: {}", e.log));
        assert_eq!(msg.type_url(), *url);
        assert_eq!(msg.signer().unwrap(), expected_signer(url, a), "{url}");
        // Proposals carry exactly the messages only governance signs.
        assert_eq!(
            kiln_messages::is_proposable(url),
            expected_signer(url, a) == gov_authority(),
            "{url}"
        );
        assert_eq!(
            msg.is_ml_ops(),
            kiln_messages::ml_ops_type_urls().contains(url),
            "{url}"
        );
        // The wallet description comes from the same declaration.
        assert_eq!(
            kiln_messages::describe_any(&sample(url, &a, &b))["@type"],
            *url
        );
    }
    let unlisted = Any {
        type_url: "/cosmos.staking.v1beta1.MsgCreateValidator".into(),
        value: vec![],
    };
    let e = kiln_messages::Msg::from_any(&unlisted, 0).unwrap_err();
    assert!(e.log.contains("unrecognized message type"), "{}", e.log);
    // A listed type with a malformed body fails its stateless check at decode
    // (so CheckTx and ProcessProposal refuse it), not in a block.
    let bad = any_of(&kiln_sprint::msgs::MsgSprintCommit {
        host: a.to_bech32(),
        ml_node: String::new(),
        epoch: 1,
        root: vec![7; 31],
        count: 3,
        secret_hash: vec![5; 32],
    });
    let e = kiln_messages::Msg::from_any(&bad, 0).unwrap_err();
    assert_eq!((e.codespace, e.code), ("sprint", 7), "{}", e.log);
    let send_without_coins = any_of(&MsgSend {
        from_address: a.to_bech32(),
        to_address: b.to_bech32(),
        amount: vec![],
    });
    assert!(kiln_messages::Msg::from_any(&send_without_coins, 0).is_err());
}

#[test]
fn the_ml_ops_set_is_the_sprint_and_inference_messages() {
    assert_eq!(
        kiln_messages::ml_ops_type_urls(),
        [
            "/kiln.sprint.v1.MsgSprintCommit",
            "/kiln.sprint.v1.MsgSprintRevealSecret",
            "/kiln.sprint.v1.MsgSprintOpen",
            "/kiln.sprint.v1.MsgSprintVoteCommit",
            "/kiln.sprint.v1.MsgSprintVoteReveal",
            "/kiln.inference.v1.MsgStartInference",
            "/kiln.inference.v1.MsgFinishInference",
            "/kiln.inference.v1.MsgValidation",
            "/kiln.inference.v1.MsgDisputeVote",
            "/kiln.inference.v1.MsgCommitValidationSeed",
            "/kiln.inference.v1.MsgRevealValidationSeed",
        ]
    );
}

#[test]
fn a_hot_key_can_route_exactly_the_ml_ops_messages() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestKey::from_label("list-host");
    let hot = TestKey::from_label("list-hot");
    let other = TestKey::from_label("list-other");
    let mut g = kiln_genesis::AppGenesis::default();
    g.add_balance(
        host.address,
        vec![kiln_framework::Coin::new("ukiln", 1_000_000_000)],
    );
    g.add_balance(
        hot.address,
        vec![kiln_framework::Coin::new("ukiln", 1_000_000_000)],
    );
    g.epochs.params = kiln_epochs::EpochParams::devnet();
    g.sprint.params = kiln_sprint::SprintParams::devnet();
    g.hosts.hosts.push(kiln_hosts::GenesisHost {
        owner: host.address,
        worker_url: "http://host.example".into(),
        consensus_pubkey: hex::encode([1u8; 32]),
        models: vec![],
        hardware: String::new(),
        weight: 10,
    });
    let mut d =
        BlockDriver::open(dir.path(), CHAIN, &serde_json::to_value(&g).unwrap(), 0).unwrap();

    // Every ML-ops type is grantable, in one transaction.
    let grants = kiln_messages::ml_ops_type_urls()
        .iter()
        .map(|url| msg_grant(&host.address, &hot.address, url, None))
        .collect();
    let mut o = d.opts_for(&host);
    o.gas_limit = 1_000_000;
    o.fee = 25_000;
    let out = d.deliver(vec![sign_tx(&host, grants, &o)]).unwrap();
    assert_eq!(
        out.response.tx_results[0].code, 0,
        "{}",
        out.response.tx_results[0].log
    );

    for url in kiln_messages::TYPE_URLS {
        let mut o = d.opts_for(&hot);
        o.gas_limit = 1_000_000;
        o.fee = 25_000;
        let tx = sign_tx(
            &hot,
            vec![msg_exec(
                &hot.address,
                vec![sample(url, &host.address, &other.address)],
            )],
            &o,
        );
        let r = d.deliver(vec![tx]).unwrap().response.tx_results[0].clone();
        if kiln_messages::ml_ops_type_urls().contains(url) {
            // Authorized, and routed to the sprint module: it succeeds or the
            // sprint's own stage rules refuse it — never the authz check.
            assert!(
                r.code == 0 || r.codespace == module_codespace(url),
                "{url}: ({}, {}) {}",
                r.codespace,
                r.code,
                r.log
            );
        } else {
            assert_eq!(
                (r.codespace.as_str(), r.code),
                ("sdk", 4),
                "{url} must be refused to the hot key: {}",
                r.log
            );
            assert!(
                r.log.contains("authorization not found"),
                "{url}: {}",
                r.log
            );
        }
    }
}
