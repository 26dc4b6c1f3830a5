//! Reading the passphrase of an encrypted (`file` backend) key, shared by
//! `kiln` and `kiln-mlworker`: from `KILN_KEYRING_PASSPHRASE` if set, else a
//! hidden prompt on the terminal when stdin is a TTY, else the next line of
//! stdin.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context, Result};
use zeroize::Zeroizing;

pub const PASSPHRASE_ENV: &str = "KILN_KEYRING_PASSPHRASE";

/// Whether stdin is a terminal (prompts are hidden there).
pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// Next line of stdin, without the line ending; `None` at end of input.
pub fn stdin_line() -> Result<Option<Zeroizing<String>>> {
    let mut line = Zeroizing::new(String::new());
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read stdin")?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(Zeroizing::new(
        line.trim_end_matches(['\r', '\n']).to_string(),
    )))
}

/// A hidden prompt on the terminal.
pub fn hidden_prompt(prompt: &str) -> Result<Zeroizing<String>> {
    Ok(Zeroizing::new(
        rpassword::prompt_password(prompt).context("cannot read from the terminal")?,
    ))
}

/// Passphrase to unlock the existing key `key_name`.
pub fn read_passphrase(key_name: &str) -> Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(Zeroizing::new(p));
    }
    if stdin_is_tty() {
        return hidden_prompt(&format!("Enter keyring passphrase for key '{key_name}': "));
    }
    match stdin_line()? {
        Some(p) => Ok(p),
        None => bail!(
            "a passphrase is needed for key '{key_name}': type it at the prompt, pipe it on stdin or set {PASSPHRASE_ENV}"
        ),
    }
}
