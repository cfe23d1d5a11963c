//! Builds the C floor (floor/floor.c) into a loadable module; `lcbench` finds it
//! through `FLOOR_MODULE`.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("libfloor.so");
    let compiler = cc::Build::new().pic(true).opt_level(2).get_compiler();
    let status = compiler.to_command()
        .args(["-shared", "-O2", "-Wall", "-Werror", "-I../include", "-o"])
        .arg(&out)
        .arg("floor/floor.c")
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "floor/floor.c did not compile");
    println!("cargo:rerun-if-changed=floor/floor.c");
    println!("cargo:rerun-if-changed=../include/redismodule.h");
    println!("cargo:rustc-env=FLOOR_MODULE={}", out.display());
}
