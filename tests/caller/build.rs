//! Builds caller.c into a loadable module (`CALLER_MODULE`, the path of the .so).

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("libcaller.so");
    let compiler = cc::Build::new().pic(true).get_compiler();
    let status = compiler.to_command()
        .args(["-shared", "-O1", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg("caller.c")
        .arg("-I../../include")
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "caller.c did not compile");
    println!("cargo:rerun-if-changed=caller.c");
    println!("cargo:rerun-if-changed=../../include/redismodule.h");
    println!("cargo:rustc-env=CALLER_MODULE={}", out.display());
}
