//! Keyring library tests (both backends, in temp homes).

use std::os::unix::fs::PermissionsExt;

use kiln_client::keyring::{
    self, address_from_mnemonic, bech32_decode, write_test_key, Backend, KdfParams, Keyring,
    KeyringError, TEST_KEYRING_WARNING,
};

const COSMJS_24: &str = "economy stock theory fatal elder harbor betray wasp final emotion task crumble siren bottom lizard educate guess current outdoor pair theory focus wife stone";
const COSMJS_24_ADDR: &str = "cosmos1pkptre7fdkl6gfrzlesjjvhxhlc3r4gmmk8rs6";
const COSMJS_12: &str =
    "special sign fit simple patrol salute grocery chicken wheat radar tonight ceiling";
const COSMJS_12_ADDR: &str = "cosmos1jhg0e7s6gn44tfc5k37kr04sznyhedtc9rzys5";
const PASS: &str = "correct horse battery";

fn file_kr(home: &std::path::Path) -> Keyring {
    Keyring::open(home, Backend::File).with_kdf_params(KdfParams::insecure_fast())
}

#[test]
fn known_vectors_reencode_with_kiln_prefix() {
    for (m, cosmos) in [(COSMJS_24, COSMJS_24_ADDR), (COSMJS_12, COSMJS_12_ADDR)] {
        let kiln = address_from_mnemonic(m).unwrap();
        let (hrp, data) = bech32_decode(&kiln).unwrap();
        assert_eq!(hrp, "kiln");
        assert_eq!(data, bech32_decode(cosmos).unwrap().1, "{m}");
    }
}

fn round_trip(kr: &Keyring, pass: Option<&str>) {
    assert!(kr.list().unwrap().is_empty());
    let a = kr.add("alice", COSMJS_24, pass).unwrap();
    let m2 = keyring::generate_mnemonic();
    let b = kr.add("bob", &m2, pass).unwrap();
    assert_eq!(a.address, address_from_mnemonic(COSMJS_24).unwrap());
    assert_ne!(a.address, b.address);
    assert_eq!(
        a.pubkey_base64(),
        "A08EGB7ro1ORuFhjOnZcSgwYlpe0DSFjVNUIkNNQxwKQ"
    );

    let names: Vec<_> = kr.list().unwrap().into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(kr.get("alice").unwrap(), a);
    assert_eq!(kr.find(&b.address).unwrap(), b);

    // Secrets come back.
    assert_eq!(kr.mnemonic("alice", pass).unwrap().as_str(), COSMJS_24);
    assert_eq!(kr.mnemonic("bob", pass).unwrap().as_str(), m2.as_str());
    let sk = kr.signing_key("alice", pass).unwrap();
    assert_eq!(keyring::compressed_pubkey(&sk), a.pubkey);

    // Duplicates, bad names and bad mnemonics are clear errors and write nothing.
    assert!(matches!(
        kr.add("alice", COSMJS_12, pass),
        Err(KeyringError::AlreadyExists(_))
    ));
    assert!(matches!(
        kr.add("../evil", COSMJS_12, pass),
        Err(KeyringError::InvalidName(..))
    ));
    let bad = COSMJS_12.replace("ceiling", "ceilings");
    let e = kr.add("carol", &bad, pass).unwrap_err();
    assert!(matches!(e, KeyringError::InvalidMnemonic(_)), "{e}");
    assert!(!kr.exists("carol"));
    assert_eq!(kr.list().unwrap().len(), 2);

    // File mode 0600, dir 0700.
    let mode = std::fs::metadata(kr.key_path("alice"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode);
    let dmode = std::fs::metadata(kr.dir()).unwrap().permissions().mode();
    assert_eq!(dmode & 0o777, 0o700);

    // Delete.
    kr.delete("alice").unwrap();
    assert!(matches!(kr.get("alice"), Err(KeyringError::NotFound(..))));
    assert!(matches!(
        kr.delete("alice"),
        Err(KeyringError::NotFound(..))
    ));
    assert_eq!(kr.list().unwrap().len(), 1);
    // No temp files left behind.
    let n = std::fs::read_dir(kr.dir()).unwrap().count();
    assert_eq!(n, 1);
}

#[test]
fn file_backend_round_trip() {
    let home = tempfile::tempdir().unwrap();
    let kr = file_kr(home.path());
    round_trip(&kr, Some(PASS));
    assert!(home.path().join("keyring-file").is_dir());
    assert!(!home.path().join("keyring-test").exists());
}

#[test]
fn test_backend_round_trip() {
    let home = tempfile::tempdir().unwrap();
    let kr = Keyring::open(home.path(), Backend::Test);
    round_trip(&kr, None);
}

#[test]
fn file_backend_encrypts_and_stores_kdf_params() {
    let home = tempfile::tempdir().unwrap();
    let kr = file_kr(home.path());
    let info = kr.add("alice", COSMJS_24, Some(PASS)).unwrap();
    let text = std::fs::read_to_string(kr.key_path("alice")).unwrap();
    assert!(
        !text.contains("economy"),
        "mnemonic must not be stored in clear text"
    );
    assert!(!text.contains("UNENCRYPTED"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["crypto"]["kdf"], "argon2id");
    assert_eq!(v["crypto"]["cipher"], "xchacha20-poly1305");
    assert_eq!(v["crypto"]["kdf_params"]["m_cost_kib"], 256);
    assert_eq!(v["address"], info.address.as_str()); // the clear-text index
                                                     // Default KDF is memory-hard.
    let d = KdfParams::default();
    assert!(d.m_cost_kib >= 64 * 1024 && d.t_cost >= 2);
    // Missing or short passphrase.
    assert!(matches!(
        kr.add("bob", COSMJS_12, None),
        Err(KeyringError::PassphraseRequired(_))
    ));
    assert!(matches!(
        kr.add("bob", COSMJS_12, Some("short")),
        Err(KeyringError::PassphraseTooShort)
    ));
    assert!(matches!(
        kr.mnemonic("alice", None),
        Err(KeyringError::PassphraseRequired(_))
    ));
}

#[test]
fn wrong_passphrase_is_a_clear_error_and_changes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let kr = file_kr(home.path());
    kr.add("alice", COSMJS_24, Some(PASS)).unwrap();
    let before = std::fs::read(kr.key_path("alice")).unwrap();
    let e = kr
        .mnemonic("alice", Some("not the passphrase"))
        .unwrap_err();
    assert!(matches!(e, KeyringError::WrongPassphrase(_)));
    assert_eq!(e.to_string(), "wrong passphrase for key 'alice'");
    assert!(kr.signing_key("alice", Some("nope nope nope")).is_err());
    assert_eq!(std::fs::read(kr.key_path("alice")).unwrap(), before);
    assert_eq!(
        kr.mnemonic("alice", Some(PASS)).unwrap().as_str(),
        COSMJS_24
    );
}

#[test]
fn tampered_index_is_detected() {
    let home = tempfile::tempdir().unwrap();
    let kr = file_kr(home.path());
    kr.add("alice", COSMJS_24, Some(PASS)).unwrap();
    let other = Keyring::open(home.path(), Backend::Test);
    let bob = other.add("bob", COSMJS_12, None).unwrap();
    // Swap alice's address and pubkey for bob's: list still parses, decryption must fail.
    let path = kr.key_path("alice");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["address"] = bob.address.clone().into();
    v["pubkey"] = bob.pubkey_base64().into();
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(kr.get("alice").unwrap().address, bob.address);
    assert!(kr.mnemonic("alice", Some(PASS)).is_err());
}

#[test]
fn write_test_key_writes_the_cli_format() {
    let home = tempfile::tempdir().unwrap();
    let info = write_test_key(home.path(), "dev", COSMJS_24).unwrap();
    let path = home.path().join("keyring-test").join("dev.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(TEST_KEYRING_WARNING));
    assert!(text.contains("economy stock"));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let kr = Keyring::open(home.path(), Backend::Test);
    assert_eq!(kr.get("dev").unwrap(), info);
    assert_eq!(kr.mnemonic("dev", None).unwrap().as_str(), COSMJS_24);
    assert!(matches!(
        write_test_key(home.path(), "dev", COSMJS_24),
        Err(KeyringError::AlreadyExists(_))
    ));
    // The file keyring of the same home does not see it.
    assert!(Keyring::open(home.path(), Backend::File)
        .list()
        .unwrap()
        .is_empty());
}
