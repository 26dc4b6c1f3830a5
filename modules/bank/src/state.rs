//! Typed access to accounts and balances. Every coin movement in Kiln goes
//! through [`BankExt`], so "no negative balance" and "supply = sum of balances"
//! are enforced here with checked arithmetic.

use cosmos_sdk_proto::cosmos::auth::v1beta1::BaseAccount;
use kiln_framework::{
    Address, Coin, Coins, Event, ExecCtx, StateReadExt, StateWriteExt, TxError, TxResult,
};
use kiln_state::{StateRead, StateWrite};

use crate::keys;
use crate::params::AuthParams;

pub trait AuthExt: StateRead {
    fn auth_params(&self) -> TxResult<AuthParams> {
        Ok(self.get_value(keys::AUTH_PARAMS)?.unwrap_or_default())
    }

    fn account(&self, addr: &Address) -> TxResult<Option<BaseAccount>> {
        self.get_proto(&keys::account(addr))
    }
}

impl<T: StateRead + ?Sized> AuthExt for T {}

pub trait AuthWriteExt: StateWrite {
    fn set_auth_params(&mut self, params: &AuthParams) -> TxResult<()> {
        self.put_value(keys::AUTH_PARAMS.to_vec(), params)
    }

    fn set_account(&mut self, addr: &Address, account: &BaseAccount) {
        self.put_proto(keys::account(addr), account);
    }

    /// Returns the account, creating it with the next account number if new.
    fn ensure_account(&mut self, addr: &Address) -> TxResult<BaseAccount> {
        if let Some(existing) = self.account(addr)? {
            return Ok(existing);
        }
        let number = self.get_u64(keys::NEXT_ACCOUNT_NUMBER)?.unwrap_or(0);
        let next = number
            .checked_add(1)
            .ok_or_else(|| TxError::internal("account numbers exhausted"))?;
        self.put_u64(keys::NEXT_ACCOUNT_NUMBER.to_vec(), next);
        let account = BaseAccount {
            address: addr.to_bech32(),
            pub_key: None,
            account_number: number,
            sequence: 0,
        };
        self.set_account(addr, &account);
        Ok(account)
    }
}

impl<T: StateWrite + ?Sized> AuthWriteExt for T {}

pub trait BankExt: StateWrite {
    fn balance(&self, addr: &Address, denom: &str) -> TxResult<u128> {
        balance_readonly(self, addr, denom)
    }

    fn supply_of(&self, denom: &str) -> TxResult<u128> {
        Ok(self.get_u128(&keys::supply(denom))?.unwrap_or(0))
    }

    fn set_balance(&mut self, addr: &Address, denom: &str, amount: u128) {
        if amount == 0 {
            self.delete_raw(keys::balance(addr, denom));
        } else {
            self.put_u128(keys::balance(addr, denom), amount);
        }
    }

    fn sub_coins(&mut self, addr: &Address, coins: &Coins) -> TxResult<()> {
        for coin in coins.iter() {
            let have = self.balance(addr, &coin.denom)?;
            let left = have.checked_sub(coin.amount).ok_or_else(|| {
                TxError::insufficient_funds(format!(
                    "{addr} has {have}{} but needs {coin}",
                    coin.denom
                ))
            })?;
            self.set_balance(addr, &coin.denom, left);
        }
        Ok(())
    }

    fn add_coins(&mut self, addr: &Address, coins: &Coins) -> TxResult<()> {
        for coin in coins.iter() {
            let have = self.balance(addr, &coin.denom)?;
            let total = have
                .checked_add(coin.amount)
                .ok_or_else(|| TxError::invalid_coins("balance overflow"))?;
            self.set_balance(addr, &coin.denom, total);
        }
        Ok(())
    }

    /// Moves coins between accounts, creating the recipient's account if new,
    /// and emits the SDK's `coin_spent`, `coin_received` and `transfer` events.
    fn transfer(
        &mut self,
        ctx: &mut ExecCtx<'_>,
        from: &Address,
        to: &Address,
        coins: &Coins,
    ) -> TxResult<()> {
        self.sub_coins(from, coins)?;
        crate::state::AuthWriteExt::ensure_account(self, to)?;
        self.add_coins(to, coins)?;
        let amount = coins.to_string();
        ctx.emit(
            Event::new("coin_spent")
                .attr("spender", from)
                .attr("amount", &amount),
        );
        ctx.emit(
            Event::new("coin_received")
                .attr("receiver", to)
                .attr("amount", &amount),
        );
        ctx.emit(
            Event::new("transfer")
                .attr("recipient", to)
                .attr("sender", from)
                .attr("amount", &amount),
        );
        Ok(())
    }

    /// Creates new coins in `to` (genesis and, later, epoch emission).
    fn mint(&mut self, to: &Address, coins: &Coins) -> TxResult<()> {
        for coin in coins.iter() {
            let supply = self.supply_of(&coin.denom)?;
            let next = supply
                .checked_add(coin.amount)
                .ok_or_else(|| TxError::invalid_coins("supply overflow"))?;
            self.put_u128(keys::supply(&coin.denom), next);
        }
        crate::state::AuthWriteExt::ensure_account(self, to)?;
        self.add_coins(to, coins)
    }

    /// Mints new coins after genesis (epoch emission) and adds them to the
    /// minted total, so supply = genesis + minted − burned can be checked.
    fn mint_emission(&mut self, to: &Address, coins: &Coins) -> TxResult<()> {
        self.mint(to, coins)?;
        for coin in coins.iter() {
            let minted = self
                .get_u128(&keys::minted(&coin.denom))?
                .unwrap_or(0)
                .checked_add(coin.amount)
                .ok_or_else(|| TxError::internal("minted total overflows"))?;
            self.put_u128(keys::minted(&coin.denom), minted);
        }
        Ok(())
    }

    /// Destroys coins held by `from` (forfeited sprint bonds; slashing
    /// later) and adds them to the burned total, so supply = genesis +
    /// minted − burned can be checked.
    fn burn(&mut self, from: &Address, coins: &Coins) -> TxResult<()> {
        self.sub_coins(from, coins)?;
        for coin in coins.iter() {
            let supply = self.supply_of(&coin.denom)?;
            let next = supply
                .checked_sub(coin.amount)
                .ok_or_else(|| TxError::internal("supply underflow"))?;
            self.put_u128(keys::supply(&coin.denom), next);
            let burned = self
                .get_u128(&keys::burned(&coin.denom))?
                .unwrap_or(0)
                .checked_add(coin.amount)
                .ok_or_else(|| TxError::internal("burned total overflows"))?;
            self.put_u128(keys::burned(&coin.denom), burned);
        }
        Ok(())
    }

    /// All balances of an account, sorted by denom.
    fn all_balances(&self, addr: &Address) -> TxResult<Vec<Coin>> {
        all_balances_readonly(self, addr)
    }
}

impl<T: StateWrite + ?Sized> BankExt for T {}

/// Read-only balance queries for views that cannot write (query snapshots).
pub fn all_balances_readonly<S: StateRead + ?Sized>(
    state: &S,
    addr: &Address,
) -> TxResult<Vec<Coin>> {
    coins_under(state, &keys::balances_of(addr))
}

/// Every `{prefix}{denom}` → u128 entry as coins, sorted by denom.
fn coins_under<S: StateRead + ?Sized>(state: &S, prefix: &[u8]) -> TxResult<Vec<Coin>> {
    let mut out = Vec::new();
    state.for_each_under(prefix, |suffix, value| {
        let denom = String::from_utf8_lossy(suffix).into_owned();
        let amount = <[u8; 16]>::try_from(value)
            .map(u128::from_be_bytes)
            .map_err(|_| TxError::internal("corrupt coin amount"))?;
        out.push(Coin { denom, amount });
        Ok(())
    })?;
    Ok(out)
}

pub fn balance_readonly<S: StateRead + ?Sized>(
    state: &S,
    addr: &Address,
    denom: &str,
) -> TxResult<u128> {
    Ok(state.get_u128(&keys::balance(addr, denom))?.unwrap_or(0))
}

/// Everything minted after genesis, per denom.
pub fn total_minted_readonly<S: StateRead + ?Sized>(state: &S) -> TxResult<Vec<Coin>> {
    coins_under(state, keys::MINTED_PREFIX)
}

/// Everything ever burned, per denom.
pub fn total_burned_readonly<S: StateRead + ?Sized>(state: &S) -> TxResult<Vec<Coin>> {
    coins_under(state, keys::BURNED_PREFIX)
}

pub fn total_supply_readonly<S: StateRead + ?Sized>(state: &S) -> TxResult<Vec<Coin>> {
    coins_under(state, keys::SUPPLY_PREFIX)
}
