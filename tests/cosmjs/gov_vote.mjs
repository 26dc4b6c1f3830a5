// End-to-end: cosmjs, unchanged, takes part in Kiln governance: a text
// proposal through the Cosmos gov v1 MsgSubmitProposal with a 10 KILN
// initial deposit (the devnet's min_deposit, so voting starts at once), then
// a YES MsgVote from the same key (the devnet's host), then the vote read
// back through abci_query of /kiln.gov.v1.Query/Votes.
// Env: KILN_RPC (http://127.0.0.1:26657), KILN_MNEMONIC (a registered host's
// mnemonic: only hosts vote). Prints `proposal_id=N` for the caller.
import assert from "node:assert/strict";
import { fromUtf8, toUtf8 } from "@cosmjs/encoding";
import { DirectSecp256k1HdWallet, Registry } from "@cosmjs/proto-signing";
import { GasPrice, SigningStargateClient, assertIsDeliverTxSuccess, defaultRegistryTypes } from "@cosmjs/stargate";
import { Comet38Client } from "@cosmjs/tendermint-rpc";
import { VoteOption } from "cosmjs-types/cosmos/gov/v1/gov.js";
import { MsgSubmitProposal, MsgVote } from "cosmjs-types/cosmos/gov/v1/tx.js";

// Gas: "auto", as a wallet sends it (simulated with an empty fee, × 1.3):
// the chain's simulation charges the fee transfer the delivered tx pays, so
// even a small MsgVote fits.
const GAS = "auto";
const SUBMIT_URL = "/cosmos.gov.v1.MsgSubmitProposal";
const VOTE_URL = "/cosmos.gov.v1.MsgVote";

const rpc = process.env.KILN_RPC ?? "http://127.0.0.1:26657";
const mnemonic = process.env.KILN_MNEMONIC;
assert.ok(mnemonic, "set KILN_MNEMONIC to a registered host's mnemonic");

const wallet = await DirectSecp256k1HdWallet.fromMnemonic(mnemonic, { prefix: "kiln" });
const [account] = await wallet.getAccounts();
// @cosmjs/stargate 0.32's default registry already has the gov v1 types;
// register them from cosmjs-types anyway, so the script does not depend on it.
const registry = new Registry(defaultRegistryTypes);
for (const [url, type] of [[SUBMIT_URL, MsgSubmitProposal], [VOTE_URL, MsgVote]]) {
  if (!registry.lookupType(url)) registry.register(url, type);
}
const client = await SigningStargateClient.connectWithSigner(rpc, wallet, {
  registry,
  gasPrice: GasPrice.fromString("0.025ukiln"),
  broadcastPollIntervalMs: 300,
});
const comet = await Comet38Client.connect(rpc);

async function abciJson(path, data) {
  const r = await comet.abciQuery({ path, data: toUtf8(data) });
  assert.equal(r.code, 0, `${path} ${data}: code ${r.code}: ${r.log}`);
  return JSON.parse(fromUtf8(r.value));
}

// 1. A text proposal (no messages) with the whole minimum deposit.
const submit = {
  typeUrl: SUBMIT_URL,
  value: MsgSubmitProposal.fromPartial({
    messages: [],
    initialDeposit: [{ denom: "ukiln", amount: "10000000" }],
    proposer: account.address,
    metadata: "",
    title: "cosmjs text proposal",
    summary: "Submitted by @cosmjs/stargate through /cosmos.gov.v1.MsgSubmitProposal.",
  }),
};
const submitted = await client.signAndBroadcast(account.address, [submit], GAS, "cosmjs gov submit");
assertIsDeliverTxSuccess(submitted);
const ids = submitted.events
  .filter((e) => e.type === "submit_proposal" || e.type === "kiln.gov.v1.EventProposalSubmitted")
  .flatMap((e) => e.attributes.filter((a) => a.key === "proposal_id").map((a) => a.value.replace(/"/g, "")));
assert.ok(ids.length > 0, `no proposal_id in the events: ${JSON.stringify(submitted.events)}`);
const id = BigInt(ids[0]);
console.log(`submitted proposal ${id} in ${submitted.transactionHash} (height ${submitted.height}, gas ${submitted.gasUsed}/${submitted.gasWanted})`);

const proposal = await abciJson("/kiln.gov.v1.Query/Proposal", id.toString());
assert.equal(proposal.status, "voting_period", `the 10 KILN deposit should start voting: ${JSON.stringify(proposal)}`);
assert.equal(proposal.title, "cosmjs text proposal");
assert.equal(proposal.total_deposit, "10000000");

// 2. YES from the same key (the devnet's host).
const vote = {
  typeUrl: VOTE_URL,
  value: MsgVote.fromPartial({ proposalId: id, voter: account.address, option: VoteOption.VOTE_OPTION_YES, metadata: "" }),
};
const voted = await client.signAndBroadcast(account.address, [vote], GAS, "cosmjs gov vote");
assertIsDeliverTxSuccess(voted);
console.log(`voted YES on proposal ${id} in ${voted.transactionHash} (height ${voted.height}, gas ${voted.gasUsed}/${voted.gasWanted})`);

// 3. The vote as the chain recorded it.
const votes = await abciJson("/kiln.gov.v1.Query/Votes", id.toString());
const mine = votes.find((v) => v.voter === account.address);
assert.ok(mine, `no vote by ${account.address} on proposal ${id}: ${JSON.stringify(votes)}`);
assert.deepEqual(
  mine.options.map((o) => o.option),
  ["yes"],
  `vote options ${JSON.stringify(mine.options)}`,
);
assert.equal(BigInt(mine.options[0].weight), 10n ** 18n, "a plain vote has the whole weight");
console.log(`vote recorded: ${mine.voter} yes at height ${mine.height}`);
comet.disconnect();
client.disconnect();
console.log(`proposal_id=${id}`);
console.log("cosmjs gov: OK");
