// End-to-end: cosmjs, unchanged, talks to a Kiln devnet: queries, a send,
// and staking (delegate, undelegate) by the operator address.
// Env: KILN_RPC (http://127.0.0.1:26657), KILN_MNEMONIC (a funded key's mnemonic).
import assert from "node:assert/strict";
import { fromBech32, toBech32 } from "@cosmjs/encoding";
import { DirectSecp256k1HdWallet } from "@cosmjs/proto-signing";
import { GasPrice, SigningStargateClient, StargateClient, assertIsDeliverTxSuccess } from "@cosmjs/stargate";

const rpc = process.env.KILN_RPC ?? "http://127.0.0.1:26657";
const mnemonic = process.env.KILN_MNEMONIC;
assert.ok(mnemonic, "set KILN_MNEMONIC to a funded key's mnemonic");

const wallet = await DirectSecp256k1HdWallet.fromMnemonic(mnemonic, { prefix: "kiln" });
const [sender] = await wallet.getAccounts();
const recipientWallet = await DirectSecp256k1HdWallet.generate(24, { prefix: "kiln" });
const [recipient] = await recipientWallet.getAccounts();

const reader = await StargateClient.connect(rpc);
const chainId = await reader.getChainId();
const height = await reader.getHeight();
console.log(`connected to ${chainId} at height ${height}`);

const before = await reader.getBalance(sender.address, "ukiln");
assert.ok(BigInt(before.amount) > 1_000_000n, `sender ${sender.address} must be funded, has ${before.amount}`);
assert.equal((await reader.getBalance(recipient.address, "ukiln")).amount, "0");
assert.equal(await reader.getAccount(recipient.address), null, "unknown accounts read as null");
const account = await reader.getAccount(sender.address);
assert.equal(account.address, sender.address);

const client = await SigningStargateClient.connectWithSigner(rpc, wallet, { gasPrice: GasPrice.fromString("0.025ukiln") });
const result = await client.sendTokens(sender.address, recipient.address, [{ denom: "ukiln", amount: "12345" }], "auto", "cosmjs e2e");
assertIsDeliverTxSuccess(result);
console.log(`sent 12345ukiln in ${result.transactionHash} at height ${result.height}, gas ${result.gasUsed}/${result.gasWanted}`);

const after = await reader.getBalance(recipient.address, "ukiln");
assert.equal(after.amount, "12345");
const tx = await reader.getTx(result.transactionHash);
assert.equal(tx.code, 0);
assert.equal(tx.height, result.height);
const senderAfter = await reader.getBalance(sender.address, "ukiln");
assert.ok(BigInt(senderAfter.amount) < BigInt(before.amount) - 12345n, "the fee was charged");

// Staking with cosmjs's own helpers: the sender (the devnet's host) is named
// by its operator address, kilnvaloper1… over the same bytes.
const valoper = toBech32("kilnvaloper", fromBech32(sender.address).data);
const delegated = await client.delegateTokens(sender.address, valoper, { denom: "ukiln", amount: "5000" }, "auto", "cosmjs delegate");
assertIsDeliverTxSuccess(delegated);
const undelegated = await client.undelegateTokens(sender.address, valoper, { denom: "ukiln", amount: "2000" }, "auto", "cosmjs undelegate");
assertIsDeliverTxSuccess(undelegated);
console.log(`delegated 5000ukiln to ${valoper} and undelegated 2000ukiln (txs ${delegated.transactionHash.slice(0, 8)}, ${undelegated.transactionHash.slice(0, 8)})`);
console.log("cosmjs e2e: OK");
