//! The devnet genesis registers SmolLM2-135M-Instruct by the hashes of the
//! file `scripts/setup.sh` installs: the GGUF's SHA-256 and its tokenizer's
//! fingerprint (`kiln_llm::tokenizer::tokenizer_sha256`), as
//! `kiln-mlworker models list` prints them. A new package version would
//! change them; this test says so instead of a worker refusing to serve.

#[test]
fn the_devnet_model_hashes_are_the_installed_files() {
    let known = kiln_llm::registry::KNOWN_MODELS
        .iter()
        .find(|m| m.name == "smollm2-135m")
        .expect("smollm2-135m is a known model");
    let path = known
        .locate()
        .expect("the model is installed (scripts/setup.sh)");
    let identity = kiln_llm::registry::file_identity(&path).unwrap();
    let gguf = kiln_llm::gguf::GgufFile::open(&path).unwrap();
    let tokenizer = kiln_llm::tokenizer::tokenizer_sha256(&gguf).unwrap();
    let registered = kiln_genesis::devnet_model();
    assert_eq!(registered.id, known.name);
    assert_eq!(
        registered.gguf_sha256,
        identity.sha256,
        "{}",
        path.display()
    );
    assert_eq!(registered.tokenizer_sha256, tokenizer, "{}", path.display());
}
