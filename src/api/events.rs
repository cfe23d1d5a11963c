//! Hearing of other clients' writes: keyspace events, a command filter, and work run
//! right after a notification (where nothing may be written inside one).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use redis_module::raw;

use super::ctx::Ctx;
use super::string::bytes_of;
use super::{RedisModuleCtx, RedisModuleString, ERR, OK};

/// Called with each hash or set write's event name (`hset`, `sadd`, ...) and key; it
/// may not write.
pub type OnWrite = fn(&Ctx, &[u8], &[u8]);

static ON_WRITE: OnceLock<OnWrite> = OnceLock::new();

extern "C" fn on_write(ctx: *mut RedisModuleCtx, _type: c_int, event: *const c_char, key: *mut RedisModuleString) -> c_int {
    if let Some(f) = ON_WRITE.get() {
        // SAFETY: Redis passes the event's context, a NUL-terminated event name and a
        // live key string, for this call.
        let (ctx, event) = unsafe { (Ctx::new(ctx), CStr::from_ptr(event)) };
        f(&ctx, event.to_bytes(), bytes_of(key));
    }
    OK
}

/// Subscribes `f` to the keyspace events of hash and set writes (once per module).
pub fn subscribe_to_writes(ctx: &Ctx, f: OnWrite) -> Result<(), String> {
    ON_WRITE.get_or_init(|| f);
    let types = raw::REDISMODULE_NOTIFY_HASH | raw::REDISMODULE_NOTIFY_SET;
    // SAFETY: the load context; a callback of the C signature.
    if unsafe { raw::RedisModule_SubscribeToKeyspaceEvents.unwrap()(ctx.as_ptr(), types, Some(on_write)) } == ERR {
        return Err("cannot subscribe to keyspace events".into());
    }
    Ok(())
}

/// The arguments of a command a filter sees, `arg(0)` being its name.
pub struct FilterArgs(*mut raw::RedisModuleCommandFilterCtx);

impl FilterArgs {
    pub fn len(&self) -> usize {
        // SAFETY: a live filter context.
        let argc = unsafe { raw::RedisModule_CommandFilterArgsCount.unwrap()(self.0) };
        argc.max(0) as usize
    }

    /// The bytes of argument `i` (empty past the end); they live for the filter's call.
    pub fn arg(&self, i: usize) -> &[u8] {
        let Ok(i) = c_int::try_from(i) else { return &[] };
        // SAFETY: a live filter context; NULL past the end.
        let s = unsafe { raw::RedisModule_CommandFilterArgGet.unwrap()(self.0, i) };
        if s.is_null() {
            &[]
        } else {
            bytes_of(s)
        }
    }
}

/// Called with every command a client sends, before it runs; it may only look.
pub type Filter = fn(&FilterArgs);

static FILTER: OnceLock<Filter> = OnceLock::new();

extern "C" fn filter(ctx: *mut raw::RedisModuleCommandFilterCtx) {
    if let Some(f) = FILTER.get() {
        f(&FilterArgs(ctx));
    }
}

/// Registers `f` as a command filter of clients' commands (not of the module's own
/// `RedisModule_Call`s), once per module.
pub fn register_filter(ctx: &Ctx, f: Filter) -> Result<(), String> {
    FILTER.get_or_init(|| f);
    let noself = raw::REDISMODULE_CMDFILTER_NOSELF as c_int;
    // SAFETY: the load context; a callback of the C signature.
    if unsafe { raw::RedisModule_RegisterCommandFilter.unwrap()(ctx.as_ptr(), Some(filter), noself) }.is_null() {
        return Err("cannot register the command filter".into());
    }
    Ok(())
}

/// Work to run after a notification, with a context that may write.
pub type Job = fn(&Ctx);

/// Runs `job` as soon as Redis allows writes after the notification whose context
/// is `ctx`: a post-notification job where the server has them (Redis 7.2+, Valkey:
/// right after the command, in its transaction on the replication stream), else
/// (Redis 7.0) a module timer of 0 ms, which fires once the event loop is done with
/// the commands at hand (a before-sleep hook would cost every iteration a module
/// context, and cannot unsubscribe itself safely). False if it could not be queued.
pub fn after_notification(ctx: &Ctx, job: Job) -> bool {
    extern "C" fn run(ctx: *mut RedisModuleCtx, job: *mut c_void) {
        // SAFETY: `job` is the `Job` queued below, cast to a pointer of the same
        // size; the job's or timer's context is live for this call.
        let (job, ctx) = unsafe { (std::mem::transmute::<*mut c_void, Job>(job), Ctx::new(ctx)) };
        job(&ctx);
    }
    let data = job as *mut c_void;
    // SAFETY: the notification's context; a callback of the C signature, with the
    // job as its data (nothing to free).
    unsafe {
        match raw::RedisModule_AddPostNotificationJob {
            Some(add_job) => add_job(ctx.as_ptr(), Some(run), data, None) == OK,
            None => {
                raw::RedisModule_CreateTimer.unwrap()(ctx.as_ptr(), 0, Some(run), data);
                true
            }
        }
    }
}

/// The channel where the module announces what Redis does not report to tracking
/// clients: `swapdb <a> <b>` after SWAPDB (Redis 7.0 sends tracking clients nothing
/// for it) and `loaded` after the dataset was loaded (an RDB or AOF, or a replica's
/// sync). The Go provider's local tier subscribes to it and empties at each message.
const EVENTS_CHANNEL: &[u8] = b"__layercache__:events";

extern "C" fn on_dataset_event(ctx: *mut RedisModuleCtx, eid: raw::RedisModuleEvent, subevent: u64, data: *mut c_void) {
    let message = if eid.id == raw::REDISMODULE_EVENT_SWAPDB {
        if data.is_null() {
            return;
        }
        // SAFETY: for a SwapDB event Redis passes a RedisModuleSwapDbInfo, live for
        // this call.
        let info = unsafe { &*data.cast::<raw::RedisModuleSwapDbInfo>() };
        format!("swapdb {} {}", info.dbnum_first, info.dbnum_second)
    } else if subevent == raw::REDISMODULE_SUBEVENT_LOADING_ENDED {
        "loaded".to_owned()
    } else {
        return;
    };
    // SAFETY: the event's context, live for this call.
    let ctx = unsafe { Ctx::new(ctx) };
    let (channel, message) = (ctx.string(EVENTS_CHANNEL), ctx.string(message.as_bytes()));
    // SAFETY: the event's context and two strings it owns until they drop.
    unsafe { raw::RedisModule_PublishMessage.unwrap()(ctx.as_ptr(), channel.as_ptr(), message.as_ptr()) };
}

/// Publishes SWAPDB and the end of loading on [`EVENTS_CHANNEL`].
pub fn announce_dataset_events(ctx: &Ctx) -> Result<(), String> {
    // redismodule.h defines the events as static structs, not symbols: the same here.
    let swapdb = raw::RedisModuleEvent { id: raw::REDISMODULE_EVENT_SWAPDB, dataver: 1 };
    let loading = raw::RedisModuleEvent { id: raw::REDISMODULE_EVENT_LOADING, dataver: 1 };
    // SAFETY: the load context; a callback of the C signature.
    let subscribed = unsafe {
        let subscribe = raw::RedisModule_SubscribeToServerEvent.unwrap();
        subscribe(ctx.as_ptr(), swapdb, Some(on_dataset_event)) == OK && subscribe(ctx.as_ptr(), loading, Some(on_dataset_event)) == OK
    };
    if !subscribed {
        return Err("cannot subscribe to the SwapDB and Loading server events".into());
    }
    Ok(())
}
