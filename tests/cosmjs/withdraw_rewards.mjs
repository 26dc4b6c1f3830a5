// End-to-end: cosmjs's own `withdrawRewards` (the Cosmos
// MsgWithdrawDelegatorReward) pays a delegator's accrued rewards on a Kiln
// devnet. Env: KILN_RPC, KILN_MNEMONIC (a delegator's mnemonic), KILN_VALOPER
// (the host's kilnvaloper1… address it delegated to).
import assert from "node:assert/strict";
import { DirectSecp256k1HdWallet } from "@cosmjs/proto-signing";
import { GasPrice, SigningStargateClient, assertIsDeliverTxSuccess } from "@cosmjs/stargate";

const rpc = process.env.KILN_RPC ?? "http://127.0.0.1:26657";
const mnemonic = process.env.KILN_MNEMONIC;
const valoper = process.env.KILN_VALOPER;
assert.ok(mnemonic && valoper, "set KILN_MNEMONIC and KILN_VALOPER");

const wallet = await DirectSecp256k1HdWallet.fromMnemonic(mnemonic, { prefix: "kiln" });
const [delegator] = await wallet.getAccounts();
const client = await SigningStargateClient.connectWithSigner(rpc, wallet, { gasPrice: GasPrice.fromString("0.025ukiln") });
const before = BigInt((await client.getBalance(delegator.address, "ukiln")).amount);
const result = await client.withdrawRewards(delegator.address, valoper, "auto", "cosmjs withdraw");
assertIsDeliverTxSuccess(result);
const paid = result.events
  .filter((e) => e.type === "withdraw_rewards")
  .flatMap((e) => e.attributes.filter((a) => a.key === "amount").map((a) => BigInt(a.value.replace("ukiln", ""))));
assert.equal(paid.length, 1, `one withdraw_rewards event, got ${JSON.stringify(result.events)}`);
assert.ok(paid[0] > 0n, "the delegation accrued rewards");
const after = BigInt((await client.getBalance(delegator.address, "ukiln")).amount);
// The balance moved by exactly the reward minus the fee the tx paid.
const feePaid = before + paid[0] - after;
assert.ok(feePaid > 0n && feePaid < 100_000n, `fee ${feePaid} (before ${before}, paid ${paid[0]}, after ${after})`);
console.log(`cosmjs withdrawRewards: ${paid[0]}ukiln from ${valoper} (fee ${feePaid}ukiln, tx ${result.transactionHash.slice(0, 8)})`);
console.log("cosmjs withdraw: OK");
