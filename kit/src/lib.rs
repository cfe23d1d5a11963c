//! What layercache's integration tests (`tests/`) and benchmarks (`lcbench`) stand on,
//! written once: a real redis-server with the module on a free loopback port
//! ([`Server`]), a seeded generator ([`Rng`]), digests, raw commands with any bytes
//! ([`run`]), `INFO` fields, waits with a bound, and BENCHMARKS.md's sections.

mod data;
mod report;
mod rng;
mod server;

pub use data::{bulk, cmd, digest, info_counter, info_field, run, wait_until};
pub use report::write_section;
pub use rng::Rng;
pub use server::{free_port, memory_dir, module_path, scheme, server_binary, server_version, Options, Scheme, Server, Version};
