// Same rpath as kiln-mlworker's build.rs, for this package's test binaries
// (link args do not propagate across packages), so they find libtorch at run time without LD_LIBRARY_PATH. torch-sys declares
// `links = "tch"` and prints `cargo:libtorch_lib=…`, which cargo exposes to
// direct dependents as DEP_TCH_LIBTORCH_LIB.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    } else {
        println!("cargo:warning=DEP_TCH_LIBTORCH_LIB not set; set LD_LIBRARY_PATH to libtorch's lib dir at run time");
    }
}
