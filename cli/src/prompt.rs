//! Interactive input: passphrases, mnemonics and confirmations.
//!
//! * A passphrase comes from `KILN_KEYRING_PASSPHRASE` if set, else from a
//!   hidden prompt on the terminal when stdin is a TTY, else from the next line
//!   of stdin.
//! * A mnemonic (`keys recover`) comes from a hidden prompt on a TTY, else from
//!   the next line of stdin.
//! * A confirmation is `y`/`yes` typed at the prompt (or on the next line of
//!   stdin); anything else, or end of input, is "no".
//!
//! When several values are read from stdin they come one per line in the order
//! mnemonic, passphrase, confirmation.

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};
use kiln_client::passphrase;
use zeroize::Zeroizing;

pub use kiln_client::passphrase::PASSPHRASE_ENV;

pub struct Prompter {
    tty: bool,
}

impl Default for Prompter {
    fn default() -> Self {
        Self::new()
    }
}

impl Prompter {
    pub fn new() -> Self {
        Prompter {
            tty: passphrase::stdin_is_tty(),
        }
    }

    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// Next line of stdin, without the line ending; `None` at end of input.
    fn stdin_line(&self) -> Result<Option<Zeroizing<String>>> {
        passphrase::stdin_line()
    }

    fn hidden(&self, prompt: &str) -> Result<Zeroizing<String>> {
        passphrase::hidden_prompt(prompt)
    }

    /// Passphrase to unlock an existing key ([`passphrase::read_passphrase`]).
    pub fn passphrase(&self, key_name: &str) -> Result<Zeroizing<String>> {
        passphrase::read_passphrase(key_name)
    }

    /// Passphrase for a new key (asked twice on a terminal).
    pub fn new_passphrase(&self, key_name: &str) -> Result<Zeroizing<String>> {
        if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
            return Ok(Zeroizing::new(p));
        }
        if self.tty {
            let a = self.hidden(&format!(
                "Enter a passphrase to encrypt key '{key_name}' (at least {} characters): ",
                kiln_client::keyring::MIN_PASSPHRASE_LEN
            ))?;
            let b = self.hidden("Repeat the passphrase: ")?;
            if *a != *b {
                bail!("the passphrases do not match; nothing was written");
            }
            return Ok(a);
        }
        match self.stdin_line()? {
            Some(p) => Ok(p),
            None => bail!(
                "a passphrase is needed to encrypt key '{key_name}': type it at the prompt, pipe it on stdin or set {PASSPHRASE_ENV}"
            ),
        }
    }

    /// Mnemonic for `keys recover`.
    pub fn mnemonic(&self) -> Result<Zeroizing<String>> {
        if self.tty {
            return self.hidden("Enter your BIP-39 mnemonic (input hidden): ");
        }
        match self.stdin_line()? {
            Some(m) => Ok(m),
            None => bail!("no mnemonic given: type it at the prompt or pipe it on stdin"),
        }
    }

    /// Asks a yes/no question (default no).
    pub fn confirm(&self, question: &str) -> Result<bool> {
        eprint!("{question} [y/N]: ");
        std::io::stderr().flush().ok();
        let answer = if self.tty {
            let mut s = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut s)
                .context("cannot read stdin")?;
            s
        } else {
            match self.stdin_line()? {
                Some(s) => s.to_string(),
                None => {
                    eprintln!();
                    return Ok(false);
                }
            }
        };
        let a = answer.trim().to_ascii_lowercase();
        Ok(a == "y" || a == "yes")
    }
}
