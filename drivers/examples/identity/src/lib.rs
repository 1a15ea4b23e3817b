//! `identity`: the example driver written in C (`identity.c`, against
//! `drivers/abi/include/ferrite_driver.h` alone). This crate only builds it: `build.rs` compiles
//! the C file with the system's C compiler into `<target>/<profile>/identity/
//! libferrite_driver_identity.so`. Nothing here is Rust but the path of the result.

/// Where the build put the driver library.
pub const LIBRARY: &str = env!("FERRITE_DRIVER_IDENTITY");
