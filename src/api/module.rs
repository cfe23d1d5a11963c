//! The module as Redis sees it: the load entry point ([`module!`]), the commands
//! registered from the command table with their callbacks, and the `INFO` section.

use std::ffi::{c_int, CString};
use std::sync::OnceLock;

use redis_module::raw;

use super::ctx::Ctx;
use super::string::Args;
use super::{RedisModuleCtx, RedisModuleString, ERR, OK};
use crate::command_info::{ArgKind, Command, Keys};

/// Defines `RedisModule_OnLoad`, which Redis calls on `loadmodule` / `MODULE LOAD`:
/// it initialises the module API as `$name`, then runs `$load(&Ctx, &Args)` (a
/// `Result<(), String>`; an error is logged and the load refused).
macro_rules! module {
    ($name:literal, $load:path) => {
        /// Called by Redis on `loadmodule` / `MODULE LOAD`.
        ///
        /// # Safety
        /// Redis calls it once per load with a valid context and arguments.
        #[no_mangle]
        pub unsafe extern "C" fn RedisModule_OnLoad(
            ctx: *mut redis_module::raw::RedisModuleCtx,
            argv: *mut *mut redis_module::raw::RedisModuleString,
            argc: std::ffi::c_int,
        ) -> std::ffi::c_int {
            // SAFETY: Redis passes the load context and arguments; nothing allocates
            // before the API is initialised (the allocator is Redis's).
            unsafe { $crate::api::on_load(ctx, argv, argc, $name, $load) }
        }
    };
}
pub(crate) use module;

/// The body of `RedisModule_OnLoad` (see [`module!`]).
///
/// # Safety
/// `ctx`, `argv` and `argc` are what Redis passed to `RedisModule_OnLoad`.
#[doc(hidden)]
pub unsafe fn on_load(
    ctx: *mut RedisModuleCtx,
    argv: *mut *mut RedisModuleString,
    argc: c_int,
    name: &std::ffi::CStr,
    load: fn(&Ctx, &Args) -> Result<(), String>,
) -> c_int {
    // SAFETY: the load context; a static name.
    if unsafe { raw::Export_RedisModule_Init(ctx, name.as_ptr(), 1, raw::REDISMODULE_APIVER_1 as c_int) } == ERR {
        return ERR;
    }
    // SAFETY: the load's context and arguments, live for this call.
    let (ctx, args) = unsafe { (Ctx::new(ctx), Args::new(argv, argc)) };
    // Redis 7.0 brought command info, ACL key checks and module configs; older
    // servers lack them, so refuse cleanly rather than fail at the first command.
    // SAFETY: the function table is filled by the init above and never changes.
    let (set_info, check_key) = unsafe { (raw::RedisModule_SetCommandInfo, raw::RedisModule_ACLCheckKeyPermissions) };
    let result = if set_info.is_none() || check_key.is_none() {
        Err("needs Redis 7.0 or newer (this server lacks RedisModule_SetCommandInfo)".into())
    } else {
        load(&ctx, &args)
    };
    match result {
        Ok(()) => OK,
        Err(reason) => {
            super::log(Some(&ctx), c"warning", &format!("{}: not loaded: {reason}", name.to_string_lossy()));
            ERR
        }
    }
}

impl Ctx {
    /// Every write signals the keys it modifies itself (`RedisModule_Call`'s commands
    /// do, and [`super::WriteKey`] does as HSET would), so that a key opened for
    /// writing only to check its type invalidates no WATCH and no client-side cache.
    pub fn signal_modified_keys_explicitly(&self) {
        // SAFETY: the load context.
        unsafe {
            raw::RedisModule_SetModuleOptions.unwrap()(self.as_ptr(), raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED as c_int)
        };
    }
}

/// The module's commands as Redis calls them: `callbacks::<C>()[i]` runs `C::run(i, ..)`.
pub trait Commands {
    /// Runs command `i` of the table; it has replied when this returns.
    fn run(i: usize, ctx: &Ctx, args: &Args);
}

pub type CommandFn = extern "C" fn(*mut RedisModuleCtx, *mut *mut RedisModuleString, c_int) -> c_int;

extern "C" fn callback<C: Commands, const I: usize>(
    ctx: *mut RedisModuleCtx,
    argv: *mut *mut RedisModuleString,
    argc: c_int,
) -> c_int {
    // SAFETY: Redis passes this command's live context and arguments.
    let (ctx, args) = unsafe { (Ctx::new(ctx), Args::new(argv, argc)) };
    C::run(I, &ctx, &args);
    OK
}

/// The most commands a table may hold: one callback each, as `CreateCommand` takes
/// no user data.
pub const MAX_COMMANDS: usize = 24;

/// The callbacks of commands `0..MAX_COMMANDS` of `C`.
pub fn callbacks<C: Commands>() -> [CommandFn; MAX_COMMANDS] {
    macro_rules! each {
        ($($i:literal)*) => { [$(callback::<C, $i> as CommandFn),*] };
    }
    each!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23)
}

/// Registers `command` with its `callback`, flags, key specs (`keys`: none in the
/// `distribution` scheme, where key names are derived), `COMMAND DOCS` text and ACL
/// categories.
pub fn register_command(ctx: &Ctx, command: &Command, keys: &[Keys], callback: CommandFn) -> Result<(), String> {
    let name = command.name;
    let failed = |what: &str| format!("cannot {what} {}", name.to_string_lossy());
    let first = keys.first().map_or(0, |k| k.first);
    let last = if keys.iter().any(|k| k.last < 0) { -1 } else { keys.iter().map(|k| k.last).max().unwrap_or(0) };
    let step = i32::from(first != 0);
    // SAFETY: the load context; static C strings; a callback of the C signature.
    let created = unsafe {
        raw::RedisModule_CreateCommand.unwrap()(ctx.as_ptr(), name.as_ptr(), Some(callback), command.flags.as_ptr(), first, last, step)
    };
    if created == ERR {
        return Err(failed("create"));
    }
    // SAFETY: the load context; a static name.
    let handle = unsafe { raw::RedisModule_GetCommand.unwrap()(ctx.as_ptr(), name.as_ptr()) };
    if handle.is_null() {
        return Err(failed("find"));
    }
    let info = RawInfo::of(command, keys);
    // SAFETY: a live command handle; the info and what it points to live through the
    // call, which copies them.
    if unsafe { raw::RedisModule_SetCommandInfo.unwrap()(handle, &info.info) } == ERR {
        return Err(failed("set command info of"));
    }
    // ACL categories exist from Redis 7.2; on 7.0 the commands simply have none.
    // SAFETY: the function table is filled at load and never changes.
    if let Some(set_categories) = unsafe { raw::RedisModule_SetCommandACLCategories } {
        // SAFETY: a live command handle; a static C string.
        if unsafe { set_categories(handle, command.acl.as_ptr()) } == ERR {
            return Err(failed("set ACL categories of"));
        }
    }
    Ok(())
}

/// `RedisModuleCommandInfo` for one table entry; Redis copies it, so it only needs
/// to live through `SetCommandInfo`.
struct RawInfo {
    info: raw::RedisModuleCommandInfo,
    _args: Vec<raw::RedisModuleCommandArg>,
    _key_specs: Vec<raw::RedisModuleCommandKeySpec>,
}

static INFO_VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
};

impl RawInfo {
    fn of(command: &Command, keys: &[Keys]) -> RawInfo {
        let null = std::ptr::null();
        let mut args: Vec<raw::RedisModuleCommandArg> = command
            .args
            .iter()
            .zip(1..)
            .map(|(arg, position)| {
                let key_spec = keys.iter().position(|k| k.first == position);
                raw::RedisModuleCommandArg {
                    name: arg.name.as_ptr(),
                    type_: match (key_spec, arg.kind) {
                        (Some(_), _) => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
                        (None, ArgKind::String) => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
                        (None, ArgKind::Integer) => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
                        (None, ArgKind::Token) => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN,
                    },
                    key_spec_index: key_spec.map_or(-1, |i| i as c_int),
                    token: if matches!(arg.kind, ArgKind::Token) { arg.name.as_ptr() } else { null },
                    summary: null,
                    since: null,
                    flags: if arg.multiple { raw::REDISMODULE_CMD_ARG_MULTIPLE as c_int } else { 0 }
                        | if arg.optional { raw::REDISMODULE_CMD_ARG_OPTIONAL as c_int } else { 0 },
                    deprecated_since: null,
                    subargs: std::ptr::null_mut(),
                    display_text: null,
                }
            })
            .collect();
        // Both arrays end with a zeroed entry.
        // SAFETY: all-zero is a valid RedisModuleCommandArg (null pointers, zero ints).
        args.push(unsafe { std::mem::zeroed() });
        let mut key_specs: Vec<raw::RedisModuleCommandKeySpec> = keys
            .iter()
            .map(|k| raw::RedisModuleCommandKeySpec {
                notes: null,
                flags: k.flags,
                begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
                bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
                    index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: k.first },
                },
                find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE,
                fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
                    range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
                        // Relative to `first`: 0 is that one key, -1 runs to the last argument.
                        lastkey: if k.last < 0 { -1 } else { k.last - k.first },
                        keystep: 1,
                        limit: 0,
                    },
                },
            })
            .collect();
        // SAFETY: all-zero is a valid RedisModuleCommandKeySpec (the terminator).
        key_specs.push(unsafe { std::mem::zeroed() });
        let info = raw::RedisModuleCommandInfo {
            version: &INFO_VERSION,
            summary: command.summary.as_ptr(),
            complexity: command.complexity.as_ptr(),
            since: command.since.as_ptr(),
            history: std::ptr::null_mut(),
            tips: null,
            arity: command.arity,
            key_specs: if keys.is_empty() { std::ptr::null_mut() } else { key_specs.as_mut_ptr() },
            args: args.as_mut_ptr(),
        };
        RawInfo { info, _args: args, _key_specs: key_specs }
    }
}

/// The context of an `INFO` callback: fields of the module's section.
pub struct InfoCtx(*mut raw::RedisModuleInfoCtx);

impl InfoCtx {
    /// Opens the module's own section (`# layercache`).
    pub fn section(&self) {
        // SAFETY: a live info context; "" names the module's section.
        unsafe { raw::RedisModule_InfoAddSection.unwrap()(self.0, c"".as_ptr()) };
    }

    pub fn field(&self, name: &str, value: u64) {
        let Ok(name) = CString::new(name) else { return };
        // SAFETY: a live info context; a NUL-terminated name.
        unsafe { raw::RedisModule_InfoAddFieldULongLong.unwrap()(self.0, name.as_ptr(), value) };
    }
}

/// What `INFO` (and `INFO layercache`, and crash reports) show of the module.
static INFO: OnceLock<fn(&InfoCtx)> = OnceLock::new();

extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
    if let Some(write) = INFO.get() {
        write(&InfoCtx(ctx));
    }
}

/// Registers `write` as the module's `INFO` section.
pub fn register_info(ctx: &Ctx, write: fn(&InfoCtx)) -> Result<(), String> {
    INFO.get_or_init(|| write);
    // SAFETY: the load context; a callback of the C signature.
    if unsafe { raw::RedisModule_RegisterInfoFunc.unwrap()(ctx.as_ptr(), Some(info)) } == ERR {
        return Err("cannot register the INFO section".into());
    }
    Ok(())
}
