//! Compiles identity.c against the ABI header into a driver library beside the server binary,
//! in a folder of its own as Triton keeps its backends: `<target>/<profile>/identity/
//! libferrite_driver_identity.so`, where the server's default `--backend-directory` (the
//! binary's folder, and one level of subfolders) finds it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let source = manifest.join("identity.c");
    let include = manifest.join("../../abi/include");
    println!("cargo:rerun-if-changed={}", source.display());
    println!(
        "cargo:rerun-if-changed={}",
        include.join("ferrite_driver.h").display()
    );
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR lies under the profile's directory");
    let built = out_dir.join("libferrite_driver_identity.so");
    let compiler = cc::Build::new().cargo_metadata(false).get_compiler();
    let mut command: Command = compiler.to_command();
    command
        .args([
            "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-shared",
        ])
        .args(["-fvisibility=hidden", "-I"])
        .arg(&include)
        .arg(&source)
        .arg("-o")
        .arg(&built);
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {command:?}: {e}"));
    if !output.status.success() {
        panic!(
            "compiling {} failed:\n{}{}",
            source.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let folder = profile_dir.join("identity");
    std::fs::create_dir_all(&folder).expect("create the driver's folder");
    // Copy then rename: a server starting meanwhile never sees half a library.
    let dest = folder.join("libferrite_driver_identity.so");
    let partial = folder.join(".libferrite_driver_identity.so.partial");
    std::fs::copy(&built, &partial).expect("copy the driver");
    std::fs::rename(&partial, &dest).expect("move the driver into place");
    println!("cargo:rustc-env=FERRITE_DRIVER_IDENTITY={}", dest.display());
}
