//! `lcbench`: layercache against Redis's own commands, end to end, in one run.
//!
//! `lcbench throughput` starts a redis-server with the release module pinned to CPU 0
//! (run the driver itself on CPU 1: `scripts/bench.sh` does), loads 1,000 repositories
//! × 100 sha256 digests through the module (meta and descriptor on each), then measures
//! each module command and its native counterparts alternately, several runs each, and
//! writes the medians into BENCHMARKS.md. `lcbench instructions` counts instructions per
//! operation under callgrind. `lcbench memory` measures bytes per membership/descriptor.
//!
//! Where redis-benchmark can express a workload, it runs it; where it cannot (a hit on a
//! random repository's own digest, multi-command operations) this driver does: N
//! connections in lockstep, each sending one operation (or a pipeline of P) per round.


mod instructions;
mod kit;
mod large;
mod learn;
mod memory;
mod report;
mod throughput;
mod workload;

use std::path::PathBuf;

use instructions::instructions;
use large::large;
use learn::learn_cost;
use memory::{memory, schemes};
use kit::write_section;
use report::criterion_table;
use throughput::throughput;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: u64| -> u64 {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let (runs, seconds) = (opt("--runs", 3), opt("--seconds", 2));
    let out = PathBuf::from("BENCHMARKS.md");
    let result = match args.first().map(String::as_str) {
        Some("throughput") => throughput(runs, seconds).map(|s| write_section(&out, "throughput", &s)),
        Some("memory") => memory().map(|s| write_section(&out, "memory", &s)),
        Some("schemes") => schemes(runs, seconds).map(|s| write_section(&out, "schemes", &s)),
        Some("criterion") => Ok(criterion_table(std::io::read_to_string(std::io::stdin()).unwrap_or_default()))
            .map(|s| write_section(&out, "criterion", &s)),
        Some("instructions") => instructions(opt("--ops", 4000)).map(|s| write_section(&out, "instructions", &s)),
        Some("large") => large(runs).map(|s| write_section(&out, "large", &s)),
        Some("learn") => learn_cost(runs).map(|s| write_section(&out, "learn", &s)),
        _ => Err("usage: lcbench throughput|memory|schemes|instructions|large|learn|criterion [--runs N] [--seconds S] [--ops N]".into()),
    };
    if let Err(e) = result {
        eprintln!("lcbench: {e}");
        std::process::exit(1);
    }
}

