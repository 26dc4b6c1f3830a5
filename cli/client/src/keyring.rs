//! Kiln keyring: BIP-39 mnemonics, HD path `m/44'/118'/0'/0/0`, secp256k1,
//! bech32 `kiln` addresses, stored one JSON file per key.
//!
//! Two backends, one directory each under the home:
//!
//! * `file` (default) — `<home>/keyring-file/<name>.json`. The secret (the
//!   mnemonic) is encrypted with XChaCha20-Poly1305 under a key derived from
//!   the passphrase with Argon2id; the KDF parameters, salt and nonce are
//!   stored in the file. The name, address and public key are stored in clear
//!   text next to the ciphertext and bound to it as AEAD associated data, so
//!   `list`/`show` never need the passphrase (this is the address index) and a
//!   tampered index entry makes decryption fail.
//! * `test` — `<home>/keyring-test/<name>.json`, the mnemonic in clear text,
//!   labelled `"UNENCRYPTED — for devnets only"`. `kilnd devnet` writes its
//!   `dev` key here through [`write_test_key`].
//!
//! Files are written atomically (temp file + no-clobber hard link) with mode
//! 0600 inside a 0700 directory.
//!
//! Addresses are [`kiln_framework::Address`] (the chain's own bech32
//! implementation); the functions here only adapt it to strings.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use k256::ecdsa::SigningKey;
use kiln_framework::Address;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Bech32 prefix of account addresses.
pub const ADDRESS_PREFIX: &str = kiln_framework::ADDRESS_PREFIX;
/// Bech32 prefix of (legacy amino) account public keys.
pub const PUBKEY_PREFIX: &str = "kilnpub";
/// HD derivation path (Cosmos coin type 118).
pub const HD_PATH: &str = "m/44'/118'/0'/0/0";
/// Type URL of a secp256k1 public key in Cosmos.
pub const SECP256K1_PUBKEY_TYPE_URL: &str = crate::sign::SECP256K1_PUBKEY_TYPE_URL;
/// Label written into every test-backend key file and shown by `keys list`.
pub const TEST_KEYRING_WARNING: &str = "UNENCRYPTED — for devnets only";
/// Minimum passphrase length for the `file` backend.
pub const MIN_PASSPHRASE_LEN: usize = 8;

const FILE_VERSION: u32 = 1;
const AAD_DOMAIN: &str = "kiln-keyring/v1";

/// Errors of the keyring. Messages are meant to be shown to the user as is.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("key '{0}' already exists (delete it first with `kiln keys delete {0}` or choose another name)")]
    AlreadyExists(String),
    #[error("key '{0}' not found in the {1} keyring (see `kiln keys list`)")]
    NotFound(String, Backend),
    #[error("invalid key name '{0}': {1}")]
    InvalidName(String, &'static str),
    #[error("invalid mnemonic: {0}")]
    InvalidMnemonic(String),
    #[error("wrong passphrase for key '{0}'")]
    WrongPassphrase(String),
    #[error("a passphrase is required to use key '{0}' of the file keyring")]
    PassphraseRequired(String),
    #[error("passphrase too short: use at least {MIN_PASSPHRASE_LEN} characters")]
    PassphraseTooShort,
    #[error("invalid address '{0}': {1}")]
    InvalidAddress(String, String),
    #[error("key file {0} is corrupt: {1}")]
    Corrupt(PathBuf, String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = KeyringError> = std::result::Result<T, E>;

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> KeyringError {
    let context = context.into();
    move |source| KeyringError::Io { context, source }
}

/// Keyring backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Encrypted with a passphrase (Argon2id + XChaCha20-Poly1305).
    File,
    /// Unencrypted, for devnets only.
    Test,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::Test => "test",
        }
    }
    /// Directory name under the home.
    pub fn dir_name(self) -> &'static str {
        match self {
            Backend::File => "keyring-file",
            Backend::Test => "keyring-test",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "file" => Ok(Backend::File),
            "test" => Ok(Backend::Test),
            other => Err(format!(
                "unknown keyring backend '{other}' (expected file or test)"
            )),
        }
    }
}

/// Public information about a key (never contains secrets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub name: String,
    /// `kiln1…` address.
    pub address: String,
    /// Compressed secp256k1 public key (33 bytes).
    #[serde(skip)]
    pub pubkey: Vec<u8>,
    pub backend: Backend,
    pub hd_path: String,
}

impl KeyInfo {
    /// Base64 of the compressed public key.
    pub fn pubkey_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.pubkey)
    }
    /// The public key as Cosmos JSON: `{"@type":"/cosmos.crypto.secp256k1.PubKey","key":"A…"}`.
    pub fn pubkey_json(&self) -> serde_json::Value {
        serde_json::json!({"@type": SECP256K1_PUBKEY_TYPE_URL, "key": self.pubkey_base64()})
    }
    /// Legacy amino bech32 public key (`kilnpub1…`).
    pub fn pubkey_bech32(&self) -> String {
        pubkey_bech32(&self.pubkey)
    }
    /// Raw 20-byte account address.
    pub fn address_bytes(&self) -> Vec<u8> {
        address_bytes_from_pubkey(&self.pubkey).to_vec()
    }
    /// Whether this key lives in the unencrypted test keyring.
    pub fn is_unencrypted(&self) -> bool {
        self.backend == Backend::Test
    }
}

// ---------------------------------------------------------------------------
// Key material
// ---------------------------------------------------------------------------

/// The default Kiln home holding the keyrings: `~/.kiln` (`$HOME/.kiln`),
/// shared by `kiln`, `kilnd` and `kiln-mlworker`.
pub fn default_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".kiln")
}

/// Generates a fresh 24-word English BIP-39 mnemonic from the OS RNG.
pub fn generate_mnemonic() -> Zeroizing<String> {
    let mut entropy = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(entropy.as_mut());
    let m = bip39::Mnemonic::from_entropy(entropy.as_ref()).expect("32 bytes is valid entropy");
    Zeroizing::new(m.to_string())
}

/// Parses and normalises a mnemonic (whitespace collapsed, lowercase) and checks
/// its word list and checksum. 12, 15, 18, 21 or 24 words are accepted.
pub fn parse_mnemonic(s: &str) -> Result<Zeroizing<String>> {
    let normalized: Zeroizing<String> = Zeroizing::new(
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase(),
    );
    if normalized.is_empty() {
        return Err(KeyringError::InvalidMnemonic("it is empty".into()));
    }
    let words = normalized.split(' ').count();
    if ![12, 15, 18, 21, 24].contains(&words) {
        return Err(KeyringError::InvalidMnemonic(format!(
            "expected 12, 15, 18, 21 or 24 words, got {words}"
        )));
    }
    let m = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &normalized).map_err(
        |e| {
            KeyringError::InvalidMnemonic(match e {
                bip39::Error::UnknownWord(i) => format!(
                    "word #{} ('{}') is not in the BIP-39 English word list",
                    i + 1,
                    normalized.split(' ').nth(i).unwrap_or("?")
                ),
                bip39::Error::InvalidChecksum => {
                    "checksum mismatch (a word is wrong or the order is wrong)".into()
                }
                other => other.to_string(),
            })
        },
    )?;
    Ok(Zeroizing::new(m.to_string()))
}

/// Derives the account signing key at [`HD_PATH`] from a mnemonic (empty BIP-39 passphrase).
pub fn derive_signing_key(mnemonic: &str) -> Result<SigningKey> {
    let normalized = parse_mnemonic(mnemonic)?;
    let m = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &normalized)
        .map_err(|e| KeyringError::InvalidMnemonic(e.to_string()))?;
    let seed = Zeroizing::new(m.to_seed(""));
    let path: bip32::DerivationPath = HD_PATH.parse().expect("valid HD path");
    let xprv = bip32::XPrv::derive_from_path(seed.as_ref(), &path)
        .map_err(|e| KeyringError::InvalidMnemonic(format!("key derivation failed: {e}")))?;
    Ok(xprv.private_key().clone())
}

/// Compressed SEC1 public key (33 bytes) of a signing key.
pub fn compressed_pubkey(key: &SigningKey) -> Vec<u8> {
    key.verifying_key()
        .to_encoded_point(true)
        .as_bytes()
        .to_vec()
}

/// RIPEMD160(SHA256(pubkey)) ([`Address::from_pubkey`]).
pub fn address_bytes_from_pubkey(pubkey: &[u8]) -> [u8; 20] {
    Address::from_pubkey(pubkey).0
}

/// Bech32-encodes bytes with a prefix.
pub fn bech32_encode(prefix: &str, data: &[u8]) -> String {
    let hrp = bech32::Hrp::parse(prefix).expect("valid bech32 prefix");
    bech32::encode::<bech32::Bech32>(hrp, data).expect("bech32 data within length limits")
}

/// `kiln1…` address of a compressed public key.
pub fn address_from_pubkey(pubkey: &[u8]) -> String {
    Address::from_pubkey(pubkey).to_bech32()
}

/// Legacy amino bech32 public key (`kilnpub1…`): amino prefix `eb5ae987 21` + 33 bytes.
pub fn pubkey_bech32(pubkey: &[u8]) -> String {
    let mut data = vec![0xeb, 0x5a, 0xe9, 0x87, 0x21];
    data.extend_from_slice(pubkey);
    bech32_encode(PUBKEY_PREFIX, &data)
}

/// Decodes a bech32 address and returns `(prefix, bytes)`.
pub fn bech32_decode(s: &str) -> Result<(String, Vec<u8>)> {
    let (hrp, data) = bech32::decode(s)
        .map_err(|e| KeyringError::InvalidAddress(s.to_string(), e.to_string()))?;
    Ok((hrp.to_string(), data))
}

/// Validates a `kiln1…` account address ([`Address::parse`]: prefix, checksum,
/// lower case, 20 bytes) and returns its bytes.
pub fn parse_address(s: &str) -> Result<Vec<u8>> {
    parse_account(s).map(|a| a.0.to_vec())
}

/// Parses a `kiln1…` account address into an [`Address`].
pub fn parse_account(s: &str) -> Result<Address> {
    Address::parse(s).map_err(|kiln_framework::address::AddressError::Invalid(_, why)| {
        KeyringError::InvalidAddress(s.to_string(), why)
    })
}

/// Checks a key name: 1–64 characters from `[A-Za-z0-9_.-]`, not starting with
/// `.` or `-`, and not itself a `kiln1…` address (so FROM is never ambiguous).
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why| Err(KeyringError::InvalidName(name.to_string(), why));
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 64 {
        return bad("longer than 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return bad("use only letters, digits, '_', '-' and '.'");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return bad("must not start with '.' or '-'");
    }
    if parse_address(name).is_ok() {
        return bad("a key name must not be an address");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// File format
// ---------------------------------------------------------------------------

/// Argon2id parameters (stored in each encrypted key file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane (OWASP-style interactive setting).
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Cheap parameters, for tests only.
    pub fn insecure_fast() -> Self {
        KdfParams {
            m_cost_kib: 256,
            t_cost: 1,
            p_cost: 1,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CryptoBox {
    kdf: String,
    kdf_params: KdfParams,
    /// hex
    salt: String,
    cipher: String,
    /// hex, 24 bytes
    nonce: String,
    /// hex
    ciphertext: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct KeyFile {
    #[serde(rename = "WARNING", default, skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
    version: u32,
    name: String,
    backend: Backend,
    #[serde(rename = "type")]
    key_type: String,
    algo: String,
    hd_path: String,
    address: String,
    /// base64 compressed secp256k1 public key
    pubkey: String,
    /// test backend only
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mnemonic: Option<String>,
    /// file backend only
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crypto: Option<CryptoBox>,
}

/// Encrypted payload.
#[derive(Serialize, Deserialize)]
struct Secret {
    mnemonic: String,
}

fn aad(name: &str, address: &str, pubkey_b64: &str) -> Vec<u8> {
    format!("{AAD_DOMAIN}\n{name}\n{address}\n{pubkey_b64}").into_bytes()
}

fn derive_kek(passphrase: &str, salt: &[u8], p: KdfParams) -> Result<Zeroizing<[u8; 32]>> {
    let params = Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(32))
        .map_err(|e| KeyringError::Corrupt(PathBuf::new(), format!("bad KDF parameters: {e}")))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, out.as_mut())
        .map_err(|e| KeyringError::Corrupt(PathBuf::new(), format!("KDF failed: {e}")))?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Keyring
// ---------------------------------------------------------------------------

/// A keyring directory of one backend.
#[derive(Clone, Debug)]
pub struct Keyring {
    dir: PathBuf,
    backend: Backend,
    kdf: KdfParams,
}

impl Keyring {
    /// Opens (without creating) the keyring of `backend` under `home`.
    pub fn open(home: &Path, backend: Backend) -> Self {
        Keyring {
            dir: home.join(backend.dir_name()),
            backend,
            kdf: KdfParams::default(),
        }
    }

    /// Uses other Argon2id parameters for keys added from now on.
    pub fn with_kdf_params(mut self, kdf: KdfParams) -> Self {
        self.kdf = kdf;
        self
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a key's file.
    pub fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn read_file(&self, path: &Path) -> Result<KeyFile> {
        let data = fs::read(path).map_err(io_err(format!("cannot read {}", path.display())))?;
        let kf: KeyFile = serde_json::from_slice(&data)
            .map_err(|e| KeyringError::Corrupt(path.to_path_buf(), e.to_string()))?;
        if kf.version != FILE_VERSION {
            return Err(KeyringError::Corrupt(
                path.to_path_buf(),
                format!("unsupported version {}", kf.version),
            ));
        }
        if kf.backend != self.backend {
            return Err(KeyringError::Corrupt(
                path.to_path_buf(),
                format!("belongs to the {} backend", kf.backend),
            ));
        }
        Ok(kf)
    }

    fn info_of(&self, path: &Path, kf: &KeyFile) -> Result<KeyInfo> {
        let pubkey = base64::engine::general_purpose::STANDARD
            .decode(&kf.pubkey)
            .map_err(|e| KeyringError::Corrupt(path.to_path_buf(), format!("pubkey: {e}")))?;
        if pubkey.len() != 33 {
            return Err(KeyringError::Corrupt(
                path.to_path_buf(),
                "pubkey is not 33 bytes".into(),
            ));
        }
        if address_from_pubkey(&pubkey) != kf.address {
            return Err(KeyringError::Corrupt(
                path.to_path_buf(),
                "address does not match the public key".into(),
            ));
        }
        Ok(KeyInfo {
            name: kf.name.clone(),
            address: kf.address.clone(),
            pubkey,
            backend: self.backend,
            hd_path: kf.hd_path.clone(),
        })
    }

    /// All keys, sorted by name. A missing keyring directory is an empty list.
    pub fn list(&self) -> Result<Vec<KeyInfo>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io_err(format!("cannot read {}", self.dir.display()))(e)),
        };
        let mut out = vec![];
        for entry in rd {
            let entry = entry.map_err(io_err(format!("cannot read {}", self.dir.display())))?;
            let path = entry.path();
            let Some(fname) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            let Some(stem) = fname.strip_suffix(".json") else {
                continue;
            };
            if validate_name(stem).is_err() {
                continue; // temp files and foreign files
            }
            let kf = self.read_file(&path)?;
            out.push(self.info_of(&path, &kf)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Public info of key `name`.
    pub fn get(&self, name: &str) -> Result<KeyInfo> {
        validate_name(name)?;
        let path = self.key_path(name);
        if !path.exists() {
            return Err(KeyringError::NotFound(name.to_string(), self.backend));
        }
        let kf = self.read_file(&path)?;
        if kf.name != name {
            return Err(KeyringError::Corrupt(
                path,
                format!("holds key '{}'", kf.name),
            ));
        }
        self.info_of(&path, &kf)
    }

    /// Finds a key by name, or by its `kiln1…` address.
    pub fn find(&self, name_or_address: &str) -> Result<KeyInfo> {
        if parse_address(name_or_address).is_ok() {
            return self
                .list()?
                .into_iter()
                .find(|k| k.address == name_or_address)
                .ok_or_else(|| KeyringError::NotFound(name_or_address.to_string(), self.backend));
        }
        self.get(name_or_address)
    }

    /// Whether key `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        self.key_path(name).exists()
    }

    /// Stores a key derived from `mnemonic`. The file backend requires a
    /// passphrase of at least [`MIN_PASSPHRASE_LEN`] characters; the test
    /// backend ignores it.
    pub fn add(&self, name: &str, mnemonic: &str, passphrase: Option<&str>) -> Result<KeyInfo> {
        validate_name(name)?;
        let mnemonic = parse_mnemonic(mnemonic)?;
        if self.exists(name) {
            return Err(KeyringError::AlreadyExists(name.to_string()));
        }
        let sk = derive_signing_key(&mnemonic)?;
        let pubkey = compressed_pubkey(&sk);
        let address = address_from_pubkey(&pubkey);
        let pubkey_b64 = base64::engine::general_purpose::STANDARD.encode(&pubkey);
        let mut kf = KeyFile {
            warning: None,
            version: FILE_VERSION,
            name: name.to_string(),
            backend: self.backend,
            key_type: "local".into(),
            algo: "secp256k1".into(),
            hd_path: HD_PATH.into(),
            address: address.clone(),
            pubkey: pubkey_b64.clone(),
            mnemonic: None,
            crypto: None,
        };
        match self.backend {
            Backend::Test => {
                kf.warning = Some(TEST_KEYRING_WARNING.into());
                kf.mnemonic = Some(mnemonic.to_string());
            }
            Backend::File => {
                let pass =
                    passphrase.ok_or_else(|| KeyringError::PassphraseRequired(name.into()))?;
                if pass.chars().count() < MIN_PASSPHRASE_LEN {
                    return Err(KeyringError::PassphraseTooShort);
                }
                let mut salt = [0u8; 16];
                OsRng.fill_bytes(&mut salt);
                let mut nonce = [0u8; 24];
                OsRng.fill_bytes(&mut nonce);
                let kek = derive_kek(pass, &salt, self.kdf)?;
                let plaintext = Zeroizing::new(
                    serde_json::to_vec(&Secret {
                        mnemonic: mnemonic.to_string(),
                    })
                    .expect("serializable"),
                );
                let cipher =
                    XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(kek.as_ref()));
                let ct = cipher
                    .encrypt(
                        XNonce::from_slice(&nonce),
                        Payload {
                            msg: &plaintext,
                            aad: &aad(name, &address, &pubkey_b64),
                        },
                    )
                    .map_err(|_| {
                        KeyringError::Corrupt(PathBuf::new(), "encryption failed".into())
                    })?;
                kf.crypto = Some(CryptoBox {
                    kdf: "argon2id".into(),
                    kdf_params: self.kdf,
                    salt: hex::encode(salt),
                    cipher: "xchacha20-poly1305".into(),
                    nonce: hex::encode(nonce),
                    ciphertext: hex::encode(ct),
                });
            }
        }
        let json = Zeroizing::new(serde_json::to_vec_pretty(&kf).expect("serializable"));
        self.write_new(name, &json)?;
        Ok(KeyInfo {
            name: name.to_string(),
            address,
            pubkey,
            backend: self.backend,
            hd_path: HD_PATH.into(),
        })
    }

    /// Atomically creates `<dir>/<name>.json` with mode 0600; fails if it exists.
    fn write_new(&self, name: &str, data: &[u8]) -> Result<()> {
        create_private_dir(&self.dir)?;
        let final_path = self.key_path(name);
        let mut rnd = [0u8; 8];
        OsRng.fill_bytes(&mut rnd);
        let tmp = self.dir.join(format!(".{name}.{}.tmp", hex::encode(rnd)));
        let result = (|| {
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts
                .open(&tmp)
                .map_err(io_err(format!("cannot create {}", tmp.display())))?;
            f.write_all(data)
                .map_err(io_err(format!("cannot write {}", tmp.display())))?;
            f.sync_all()
                .map_err(io_err(format!("cannot sync {}", tmp.display())))?;
            drop(f);
            match fs::hard_link(&tmp, &final_path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(KeyringError::AlreadyExists(name.to_string()))
                }
                Err(e) => Err(io_err(format!("cannot create {}", final_path.display()))(e)),
            }
        })();
        let _ = fs::remove_file(&tmp);
        result
    }

    /// Deletes key `name`.
    pub fn delete(&self, name: &str) -> Result<KeyInfo> {
        let info = self.get(name)?;
        let path = self.key_path(name);
        fs::remove_file(&path).map_err(io_err(format!("cannot delete {}", path.display())))?;
        Ok(info)
    }

    /// Returns the mnemonic of key `name`. The file backend needs the passphrase
    /// and fails with [`KeyringError::WrongPassphrase`] if it does not decrypt.
    pub fn mnemonic(&self, name: &str, passphrase: Option<&str>) -> Result<Zeroizing<String>> {
        validate_name(name)?;
        let path = self.key_path(name);
        if !path.exists() {
            return Err(KeyringError::NotFound(name.to_string(), self.backend));
        }
        let kf = self.read_file(&path)?;
        let info = self.info_of(&path, &kf)?;
        let corrupt = |why: &str| KeyringError::Corrupt(path.clone(), why.to_string());
        let mnemonic = match self.backend {
            Backend::Test => {
                Zeroizing::new(kf.mnemonic.clone().ok_or_else(|| corrupt("no mnemonic"))?)
            }
            Backend::File => {
                let cb = kf
                    .crypto
                    .as_ref()
                    .ok_or_else(|| corrupt("no crypto section"))?;
                if cb.kdf != "argon2id" || cb.cipher != "xchacha20-poly1305" {
                    return Err(corrupt("unsupported kdf or cipher"));
                }
                let pass =
                    passphrase.ok_or_else(|| KeyringError::PassphraseRequired(name.to_string()))?;
                let salt = hex::decode(&cb.salt).map_err(|_| corrupt("salt is not hex"))?;
                let nonce = hex::decode(&cb.nonce).map_err(|_| corrupt("nonce is not hex"))?;
                if nonce.len() != 24 {
                    return Err(corrupt("nonce is not 24 bytes"));
                }
                let ct =
                    hex::decode(&cb.ciphertext).map_err(|_| corrupt("ciphertext is not hex"))?;
                let kek =
                    derive_kek(pass, &salt, cb.kdf_params).map_err(|e| corrupt(&e.to_string()))?;
                let cipher =
                    XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(kek.as_ref()));
                let pt = Zeroizing::new(
                    cipher
                        .decrypt(
                            XNonce::from_slice(&nonce),
                            Payload {
                                msg: &ct,
                                aad: &aad(&kf.name, &kf.address, &kf.pubkey),
                            },
                        )
                        .map_err(|_| KeyringError::WrongPassphrase(name.to_string()))?,
                );
                let secret: Secret =
                    serde_json::from_slice(&pt).map_err(|_| corrupt("secret is not valid JSON"))?;
                Zeroizing::new(secret.mnemonic)
            }
        };
        // Defence in depth: the stored public key must be the mnemonic's.
        let sk = derive_signing_key(&mnemonic)?;
        if compressed_pubkey(&sk) != info.pubkey {
            return Err(corrupt("mnemonic does not match the stored public key"));
        }
        Ok(mnemonic)
    }

    /// Returns the signing key of key `name` (see [`Keyring::mnemonic`]).
    pub fn signing_key(&self, name: &str, passphrase: Option<&str>) -> Result<SigningKey> {
        let m = self.mnemonic(name, passphrase)?;
        derive_signing_key(&m)
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(dir)
            .map_err(io_err(format!("cannot create {}", dir.display())))?;
    }
    Ok(())
}

/// Writes key `name` with `mnemonic` into the unencrypted **test** keyring at
/// `<home>/keyring-test/<name>.json` (the format `kiln --keyring-backend test`
/// reads). Used by `kilnd devnet` for its `dev` key. Fails if the key exists.
pub fn write_test_key(home: &Path, name: &str, mnemonic: &str) -> Result<KeyInfo> {
    Keyring::open(home, Backend::Test).add(name, mnemonic, None)
}

/// Derives the address of a mnemonic without storing anything.
pub fn address_from_mnemonic(mnemonic: &str) -> Result<String> {
    Ok(address_from_pubkey(&compressed_pubkey(
        &derive_signing_key(mnemonic)?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const COSMJS_12: &str =
        "special sign fit simple patrol salute grocery chicken wheat radar tonight ceiling";
    pub const COSMJS_24: &str = "economy stock theory fatal elder harbor betray wasp final emotion task crumble siren bottom lizard educate guess current outdoor pair theory focus wife stone";

    fn data_part(addr: &str) -> Vec<u8> {
        bech32_decode(addr).unwrap().1
    }

    #[test]
    fn cosmjs_vectors() {
        // cosmjs DirectSecp256k1HdWallet default test wallet.
        let sk = derive_signing_key(COSMJS_12).unwrap();
        assert_eq!(
            hex::encode(compressed_pubkey(&sk)),
            "02baa4ef93f2ce84592a49b1d729c074eab640112522a7a89f7d03ebab21ded7b6"
        );
        let a = address_from_mnemonic(COSMJS_12).unwrap();
        assert!(a.starts_with("kiln1"));
        assert_eq!(
            data_part(&a),
            data_part("cosmos1jhg0e7s6gn44tfc5k37kr04sznyhedtc9rzys5")
        );
        // cosmjs simapp faucet (24 words).
        let sk = derive_signing_key(COSMJS_24).unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(compressed_pubkey(&sk)),
            "A08EGB7ro1ORuFhjOnZcSgwYlpe0DSFjVNUIkNNQxwKQ"
        );
        let a = address_from_mnemonic(COSMJS_24).unwrap();
        assert_eq!(
            data_part(&a),
            data_part("cosmos1pkptre7fdkl6gfrzlesjjvhxhlc3r4gmmk8rs6")
        );
        assert_eq!(
            bech32_encode("cosmos", &data_part(&a)),
            "cosmos1pkptre7fdkl6gfrzlesjjvhxhlc3r4gmmk8rs6"
        );
    }

    #[test]
    fn mnemonic_normalisation_and_errors() {
        let messy = format!("  {}  ", COSMJS_12.to_uppercase().replace(' ', "   "));
        assert_eq!(*parse_mnemonic(&messy).unwrap(), COSMJS_12);
        assert!(matches!(
            parse_mnemonic(""),
            Err(KeyringError::InvalidMnemonic(_))
        ));
        let wrong_word = COSMJS_12.replace("patrol", "patrolx");
        let e = parse_mnemonic(&wrong_word).unwrap_err().to_string();
        assert!(e.contains("word #5"), "{e}");
        let swapped = COSMJS_12.replace("special sign", "sign special");
        assert!(parse_mnemonic(&swapped)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        let short = "special sign fit";
        assert!(parse_mnemonic(short)
            .unwrap_err()
            .to_string()
            .contains("got 3"));
        let g = generate_mnemonic();
        assert_eq!(g.split(' ').count(), 24);
        parse_mnemonic(&g).unwrap();
        assert_ne!(*g, *generate_mnemonic());
    }

    #[test]
    fn names() {
        for ok in ["dev", "a", "hot-key_1.x", "Alice"] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "../x",
            "sp ace",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(validate_name(bad), Err(KeyringError::InvalidName(..))),
                "{bad}"
            );
        }
        let addr = address_from_mnemonic(COSMJS_12).unwrap();
        assert!(validate_name(&addr).is_err());
    }

    #[test]
    fn pubkey_bech32_matches_cosmos_format() {
        // gaia docs: faucet key pubkey cosmospub1addwnpepqd8sg… (amino prefix eb5ae98721).
        let sk = derive_signing_key(COSMJS_24).unwrap();
        let pk = compressed_pubkey(&sk);
        let kp = pubkey_bech32(&pk);
        assert!(kp.starts_with("kilnpub1addwnpepqd8sg"), "{kp}");
    }
}
