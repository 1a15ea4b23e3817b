//! `include/ferrite_driver.h` is the C view of this crate: regenerated here with cbindgen and
//! compared with the checked-in copy (`FERRITE_BLESS=1 cargo test -p ferrite-driver-abi --test
//! header` rewrites it), then compiled by the system C compiler with a small program that
//! uses it, so a C driver author gets a header that matches the Rust ABI byte for byte.

use std::path::PathBuf;
use std::process::Command;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    crate_dir().join("include/ferrite_driver.h")
}

fn generate() -> String {
    let config = cbindgen::Config::from_file(crate_dir().join("cbindgen.toml"))
        .expect("drivers/abi/cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_src(crate_dir().join("src/lib.rs"))
        .with_src(crate_dir().join("src/types.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen reads the ABI")
        .write(&mut out);
    String::from_utf8(out).expect("UTF-8 header")
}

#[test]
fn the_c_header_matches_the_rust_abi() {
    let fresh = generate();
    let path = header_path();
    if std::env::var_os("FERRITE_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write the header");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "{} does not match drivers/abi/src; run FERRITE_BLESS=1 cargo test -p ferrite-driver-abi --test header and commit it",
        path.display()
    );
}

/// A C program that uses the header as a driver would, checked against the Rust layout.
#[test]
fn the_c_header_compiles_and_agrees_on_layout() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    if Command::new(&cc).arg("--version").output().is_err() {
        assert!(
            std::env::var_os("FERRITE_REQUIRE_DRIVERS").is_none(),
            "no C compiler ({cc})"
        );
        eprintln!("SKIPPED: no C compiler ({cc})");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let program = dir.path().join("layout.c");
    std::fs::write(
        &program,
        r#"#include <stdio.h>
#include "ferrite_driver.h"
int main(void) {
  printf("%zu %zu %zu %zu %zu %zu %u %u\n", sizeof(FerriteStr), sizeof(FerriteTensor),
         sizeof(FerriteRequest), sizeof(FerriteHostApi), sizeof(FerriteDriverApi),
         offsetof(FerriteDriverApi, execute), (unsigned)FERRITE_ABI_MAJOR,
         (unsigned)FERRITE_ABI_MINOR);
  return 0;
}
"#,
    )
    .expect("write the program");
    let exe = dir.path().join("layout");
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(crate_dir().join("include"))
        .arg(&program)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "the header does not compile as C11");
    let out = Command::new(&exe).output().expect("run the program");
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    use ferrite_driver_abi as abi;
    let want = format!(
        "{} {} {} {} {} {} {} {}",
        size_of::<abi::Str>(),
        size_of::<abi::Tensor>(),
        size_of::<abi::Request>(),
        size_of::<abi::HostApi>(),
        size_of::<abi::DriverApi>(),
        std::mem::offset_of!(abi::DriverApi, execute),
        abi::ABI_MAJOR,
        abi::ABI_MINOR
    );
    assert_eq!(printed, want, "C and Rust disagree on the ABI's layout");
}
