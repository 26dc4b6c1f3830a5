// The worker's own build script (the libtorch rpath), for this package's test
// binaries: link arguments do not propagate across packages.
include!("../build.rs");
