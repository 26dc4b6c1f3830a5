// The worker's build script (the libtorch rpath), so this crate's test
// binaries find libtorch without LD_LIBRARY_PATH: link arguments do not
// propagate across packages.
include!("../build.rs");
