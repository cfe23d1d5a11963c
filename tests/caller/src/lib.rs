//! The path of the caller module built from `caller.c`: a module whose commands run
//! other commands through `RedisModule_Call`, as triggers and gears-style modules do.

/// `libcaller.so`, to `--loadmodule` beside layercache.
pub const PATH: &str = env!("CALLER_MODULE");
