//! layercache: a Redis module that serves a container registry's layer and
//! blob-descriptor cache as atomic `LAYERCACHE.*` commands over the keys CNCF
//! distribution writes (see DESIGN.md).
//!
//! The crate reads from the bottom up: each module uses only those listed before it
//! (`scripts/check-layers.py` checks that no imports go round in a circle):
//! - `layercache-core` (its own crate): validation and key names, without Redis;
//! - `error`: every way a command fails, and its reply text;
//! - `command_info`: the static command table (flags, arity, key specs, docs), plain data;
//! - `api`: the thin layer over the Redis module C API, and every `unsafe` block;
//! - `config`: the `layercache.*` settings;
//! - `store`: where each key scheme keeps the cache's facts (one `Store` per scheme;
//!   the `distribution` scheme also learns what plain-command registries write);
//! - `commands`: the command handlers (what each command does);
//! - `info`: `INFO layercache` counters;
//! - this file: loading, registration and the dispatch every command goes through.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::panic::{self, AssertUnwindSafe};

use redis_module::alloc::RedisAlloc;

mod api;
mod command_info;
mod commands;
mod config;
mod error;
mod info;
mod store;

use api::{Args, Ctx};
use command_info::{COMMANDS, COUNT};
use error::Error;

/// Rust allocations are Redis allocations, so `used_memory` and `maxmemory` see them.
#[global_allocator]
static ALLOCATOR: RedisAlloc = RedisAlloc;

api::module!(c"layercache", load);

fn load(ctx: &Ctx, args: &Args) -> Result<(), String> {
    // A panic (a bug) goes to the Redis log, not to a stderr nobody reads; `Module::run`
    // then answers the command with an error.
    panic::set_hook(Box::new(|info| api::log(None, c"warning", &format!("layercache: panic: {info}"))));

    let load_args: Vec<&[u8]> = (0..args.len()).map(|i| args.bytes(i)).collect();
    config::load(ctx, &load_args)?;
    store::load(ctx)?;
    ctx.signal_modified_keys_explicitly();
    let callbacks = api::callbacks::<Module>();
    for (command, callback) in COMMANDS.iter().zip(callbacks) {
        let keys = if store::store().keys_are_arguments() { command.keys } else { &[] };
        api::register_command(ctx, command, keys, callback)?;
    }
    api::announce_dataset_events(ctx)?;
    api::register_info(ctx, info::write)
}

const _: () = assert!(COUNT <= api::MAX_COMMANDS, "raise api::MAX_COMMANDS for the new commands");

/// The commands as Redis calls them.
struct Module;

impl api::Commands for Module {
    /// Runs command `i` of [`COMMANDS`]: the handler, then counters. Redis has checked
    /// the arity (from the command info) before calling. A panic (a bug; never client
    /// input) is logged and answered with an error instead of unwinding into Redis.
    #[inline(always)] // into each command's callback, where `i` is a constant
    fn run(i: usize, ctx: &Ctx, args: &Args) {
        // i < COUNT: the callbacks registered are the first COUNT.
        let (command, stats) = (&COMMANDS[i], &info::STATS[i]);
        let handler = commands::handler(command.id);
        let result = panic::catch_unwind(AssertUnwindSafe(|| store::command(ctx, command.writes(), || handler(ctx, args))))
            .unwrap_or_else(|_| Err(Error::Internal("ERR layercache internal error, see the server log".into())));
        stats.record(&result);
        if let Err(e) = result {
            ctx.reply_error(&e.reply());
        }
    }
}
