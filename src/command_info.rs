//! Command metadata in one static table, plain data as RedisBloom's `cmd_info`: name,
//! flags, arity, key specs, and the docs that `COMMAND DOCS` and redis-cli hints show.
//! Registration reads this table only; `commands::handler` gives each entry's handler.

use std::ffi::CStr;

/// One argument as `COMMAND DOCS` lists it.
pub struct Arg {
    pub name: &'static CStr,
    pub kind: ArgKind,
    pub multiple: bool,
    pub optional: bool,
}

#[derive(Clone, Copy)]
pub enum ArgKind {
    String,
    Integer,
    /// A word given as it is (`WITHTTL`): its name is the token.
    Token,
}

const fn string(name: &'static CStr) -> Arg {
    Arg { name, kind: ArgKind::String, multiple: false, optional: false }
}

const fn integer(name: &'static CStr) -> Arg {
    Arg { name, kind: ArgKind::Integer, multiple: false, optional: false }
}

const fn strings(name: &'static CStr) -> Arg {
    Arg { name, kind: ArgKind::String, multiple: true, optional: false }
}

const fn optional_integer(name: &'static CStr) -> Arg {
    Arg { name, kind: ArgKind::Integer, multiple: false, optional: true }
}

const fn optional_string(name: &'static CStr) -> Arg {
    Arg { name, kind: ArgKind::String, multiple: false, optional: true }
}

const fn optional_token(name: &'static CStr) -> Arg {
    Arg { name, kind: ArgKind::Token, multiple: false, optional: true }
}

/// Which arguments are keys in the `blob` scheme (where keys are digests), and how the
/// command uses them: Redis routes, redirects and checks ACL with these. The
/// `distribution` scheme declares no keys (its key names are derived).
pub struct Keys {
    /// First key argument, 0 for none.
    pub first: i32,
    /// Last key argument; -1: the last argument.
    pub last: i32,
    /// `REDISMODULE_CMD_KEY_*` flags.
    pub flags: u64,
}

const fn keys(first: i32, last: i32, flags: u32) -> Keys {
    Keys { first, last, flags: flags as u64 }
}

use redis_module::raw::{
    REDISMODULE_CMD_KEY_ACCESS as ACCESS, REDISMODULE_CMD_KEY_DELETE as DELETE_KEY, REDISMODULE_CMD_KEY_INSERT as INSERT,
    REDISMODULE_CMD_KEY_RM as RM, REDISMODULE_CMD_KEY_RO as RO, REDISMODULE_CMD_KEY_RW as RW, REDISMODULE_CMD_KEY_UPDATE as UPDATE,
};

const NO_KEYS: &[Keys] = &[];

/// Which handler runs a command (`commands::handler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Add,
    Contains,
    MContains,
    SetMeta,
    Meta,
    Lookup,
    Stat,
    SetDescriptor,
    Clear,
    RepoStat,
    RepoSetDescriptor,
    RepoClear,
    Purge,
    DropRepo,
    Index,
    Link,
    LinkSet,
    LinkDrop,
    LinkDone,
    Data,
    SetData,
}

pub struct Command {
    pub name: &'static CStr,
    pub id: Id,
    /// `CreateCommand` flags (DESIGN.md section 2).
    pub flags: &'static CStr,
    /// ACL categories, set on servers that support them (Redis 7.2+).
    pub acl: &'static CStr,
    /// Redis convention: `n` exactly, `-n` at least.
    pub arity: i32,
    pub summary: &'static CStr,
    pub complexity: &'static CStr,
    pub since: &'static CStr,
    pub args: &'static [Arg],
    /// Key arguments in the `blob` scheme.
    pub keys: &'static [Keys],
}

const READ: &CStr = c"readonly fast";
const WRITE: &CStr = c"write deny-oom fast";
const ACL_READ: &CStr = c"read fast";
const ACL_WRITE: &CStr = c"write fast";
/// Removals free memory, so like DEL, HDEL and SREM they run at maxmemory too.
const DELETE: &CStr = c"write fast";

/// How many commands [`COMMANDS`] holds.
pub const COUNT: usize = COMMANDS.len();

impl Command {
    /// Whether the command writes (its flags start with `write`).
    pub fn writes(&self) -> bool {
        self.flags.to_bytes().starts_with(b"write")
    }
}

/// Every command, in one place: registration, dispatch, INFO and the docs read this.
pub const COMMANDS: &[Command] = &[
    Command {
        name: c"layercache.add",
        id: Id::Add,
        flags: WRITE,
        acl: ACL_WRITE,
        arity: 3,
        summary: c"Records that a repository holds a blob. Returns 1 if newly added, 0 if already present.",
        complexity: c"O(1)",
        since: c"0.1.0",
        args: &[string(c"repo"), string(c"digest")],
        keys: &[keys(2, 2, RW | INSERT)],
    },
    Command {
        name: c"layercache.contains",
        id: Id::Contains,
        flags: READ,
        acl: ACL_READ,
        arity: 3,
        summary: c"Returns 1 if the repository holds the blob, 0 otherwise.",
        complexity: c"O(1)",
        since: c"0.1.0",
        args: &[string(c"repo"), string(c"digest")],
        keys: &[keys(2, 2, RO | ACCESS)],
    },
    Command {
        name: c"layercache.mcontains",
        id: Id::MContains,
        flags: c"readonly",
        acl: c"read",
        arity: -3,
        summary: c"Returns 1 or 0 for each digest: whether the repository holds it, in argument order.",
        complexity: c"O(N) where N is the number of digests",
        since: c"0.1.0",
        args: &[string(c"repo"), strings(c"digest")],
        keys: &[keys(2, -1, RO | ACCESS)],
    },
    Command {
        name: c"layercache.setmeta",
        id: Id::SetMeta,
        flags: WRITE,
        acl: ACL_WRITE,
        arity: 4,
        summary: c"Stores a blob's storage path and length.",
        complexity: c"O(1)",
        since: c"0.1.0",
        args: &[string(c"digest"), string(c"path"), integer(c"length")],
        keys: &[keys(1, 1, RW | UPDATE)],
    },
    Command {
        name: c"layercache.meta",
        id: Id::Meta,
        flags: READ,
        acl: ACL_READ,
        arity: 2,
        summary: c"Returns a blob's [path, length], or null when either is missing.",
        complexity: c"O(1)",
        since: c"0.1.0",
        args: &[string(c"digest")],
        keys: &[keys(1, 1, RO | ACCESS)],
    },
    Command {
        name: c"layercache.lookup",
        id: Id::Lookup,
        flags: READ,
        acl: ACL_READ,
        arity: 3,
        summary: c"Returns a blob's [path, length] when the repository holds it and its meta is present, else null.",
        complexity: c"O(1)",
        since: c"0.1.0",
        args: &[string(c"repo"), string(c"digest")],
        keys: &[keys(2, 2, RO | ACCESS)],
    },
    Command {
        name: c"layercache.stat",
        id: Id::Stat,
        flags: READ,
        acl: ACL_READ,
        arity: -2,
        summary: c"Returns a blob's descriptor [digest, size, mediatype], or null when its digest or size is missing. WITHTTL adds the milliseconds until the first key read expires (-1: none expires).",
        complexity: c"O(1)",
        since: c"0.1.0",
        args: &[string(c"digest"), optional_token(c"WITHTTL")],
        keys: &[keys(1, 1, RO | ACCESS)],
    },
    Command {
        name: c"layercache.setdescriptor",
        id: Id::SetDescriptor,
        flags: WRITE,
        acl: ACL_WRITE,
        arity: 5,
        summary: c"Stores a blob's descriptor: digest and size overwritten, mediatype only if absent.",
        complexity: c"O(1)",
        since: c"0.1.0",
        args: &[string(c"digest"), string(c"desc-digest"), integer(c"size"), string(c"mediatype")],
        keys: &[keys(1, 1, RW | UPDATE)],
    },
    Command {
        name: c"layercache.clear",
        id: Id::Clear,
        flags: DELETE,
        acl: ACL_WRITE,
        arity: 2,
        summary: c"Removes a blob's descriptor. Returns 1 if there was one, 0 otherwise.",
        complexity: c"O(1)",
        since: c"0.1.0",
        args: &[string(c"digest")],
        keys: &[keys(1, 1, RW | DELETE_KEY)],
    },
    Command {
        name: c"layercache.repostat",
        id: Id::RepoStat,
        flags: READ,
        acl: ACL_READ,
        arity: -3,
        summary: c"Returns the blob's descriptor as the repository sees it (its own mediatype), or null unless the repository holds it. WITHTTL adds the milliseconds until the first key read expires (-1: none expires); WITHGLOBAL then adds the global descriptor's own mediatype (the reply answers LAYERCACHE.STAT too). The options go in any order.",
        complexity: c"O(1)",
        since: c"0.1.0",
        args: &[string(c"repo"), string(c"digest"), optional_token(c"WITHTTL"), optional_token(c"WITHGLOBAL")],
        keys: &[keys(2, 2, RO | ACCESS)],
    },
    Command {
        name: c"layercache.reposetdescriptor",
        id: Id::RepoSetDescriptor,
        flags: WRITE,
        acl: ACL_WRITE,
        arity: 6,
        summary: c"Records that the repository holds the blob, its descriptor and the repository's mediatype, under both digests when they differ by algorithm.",
        complexity: c"O(1)",
        since: c"0.1.0",
        args: &[string(c"repo"), string(c"digest"), string(c"desc-digest"), integer(c"size"), string(c"mediatype")],
        keys: &[keys(2, 2, RW | UPDATE), keys(3, 3, RW | UPDATE)],
    },
    Command {
        name: c"layercache.repoclear",
        id: Id::RepoClear,
        flags: DELETE,
        acl: ACL_WRITE,
        arity: 3,
        summary: c"Removes the repository's membership, its repository hash and the blob's descriptor in one step. Returns 1 if the repository held the blob.",
        complexity: c"O(1)",
        since: c"0.1.0",
        args: &[string(c"repo"), string(c"digest")],
        keys: &[keys(2, 2, RW | ACCESS | DELETE_KEY)],
    },
    Command {
        name: c"layercache.purge",
        id: Id::Purge,
        flags: c"write",
        acl: c"write",
        arity: -2,
        summary: c"Removes every cache key of each digest (after garbage collection). Returns how many had any.",
        complexity: c"O(N+R) where N is the number of digests and R the repositories holding them",
        since: c"0.1.0",
        args: &[strings(c"digest")],
        keys: &[keys(1, -1, RM | DELETE_KEY)],
    },
    Command {
        name: c"layercache.droprepo",
        id: Id::DropRepo,
        flags: c"write",
        acl: c"write",
        arity: 2,
        summary: c"Removes a deleted repository from the cache: its memberships, repository hashes and cached links. Returns how many digests it held.",
        complexity: c"O(N) where N is the number of digests the repository held",
        since: c"0.1.0",
        args: &[string(c"repo")],
        keys: NO_KEYS,
    },
    Command {
        name: c"layercache.index",
        id: Id::Index,
        flags: c"write",
        acl: c"write",
        arity: -2,
        summary: c"Indexes the memberships that plain commands wrote before the module learned them, one SCAN page per call. Returns [next-cursor, newly indexed]; start at 0, stop when the cursor is 0 again.",
        complexity: c"O(N+M) where N is the count of keys scanned (default 100) and M the members of the repository sets among them",
        since: c"0.2.0",
        args: &[integer(c"cursor"), optional_integer(c"count")],
        keys: NO_KEYS,
    },
    Command {
        name: c"layercache.link",
        id: Id::Link,
        flags: READ,
        acl: ACL_READ,
        arity: -3,
        summary: c"Metadata cache: returns [gen, entry] for a link of the repository (entry null: not cached; empty: cached as absent). WITHTTL adds the milliseconds until the key expires (-1: never).",
        complexity: c"O(1)",
        since: c"0.3.0",
        args: &[string(c"repo"), string(c"path"), optional_token(c"WITHTTL")],
        keys: &[keys(1, 1, RO | ACCESS)],
    },
    Command {
        name: c"layercache.linkset",
        id: Id::LinkSet,
        flags: WRITE,
        acl: ACL_WRITE,
        arity: 5,
        summary: c"Metadata cache: stores a link read from storage (a digest, or empty for absent) if the repository's generation is still gen and no hold runs. Returns 1 if stored, 0 if refused.",
        complexity: c"O(1)",
        since: c"0.3.0",
        args: &[string(c"repo"), integer(c"gen"), string(c"path"), string(c"value")],
        keys: &[keys(1, 1, RW | UPDATE)],
    },
    Command {
        name: c"layercache.linkdrop",
        id: Id::LinkDrop,
        flags: c"write",
        acl: c"write",
        arity: -4,
        summary: c"Metadata cache: removes the repository's links at or under each path (empty: all) and bumps its generation; hold-ms > 0 begins a write, and no fill is stored until LINKDONE or hold-ms. Returns how many links it removed.",
        complexity: c"O(1) per link path; O(N) for a directory, N the repository's cached links",
        since: c"0.3.0",
        args: &[string(c"repo"), integer(c"hold-ms"), strings(c"path")],
        keys: &[keys(1, 1, RW | UPDATE)],
    },
    Command {
        name: c"layercache.linkdone",
        id: Id::LinkDone,
        flags: c"write",
        acl: c"write",
        arity: -3,
        summary: c"Metadata cache: ends a write LINKDROP began; removes the links at or under path again and, with a value, stores it when no other write is in flight. Returns 1 if stored.",
        complexity: c"O(1) for a link; O(N) for a directory, N the repository's cached links",
        since: c"0.3.0",
        args: &[string(c"repo"), string(c"path"), optional_string(c"value")],
        keys: &[keys(1, 1, RW | UPDATE)],
    },
    Command {
        name: c"layercache.data",
        id: Id::Data,
        flags: READ,
        acl: ACL_READ,
        arity: -2,
        summary: c"Metadata cache: returns a blob's cached bytes (a manifest), or null. WITHTTL returns [bytes, milliseconds until the key expires].",
        complexity: c"O(1)",
        since: c"0.3.0",
        args: &[string(c"digest"), optional_token(c"WITHTTL")],
        keys: &[keys(1, 1, RO | ACCESS)],
    },
    Command {
        name: c"layercache.setdata",
        id: Id::SetData,
        flags: WRITE,
        acl: ACL_WRITE,
        arity: 3,
        summary: c"Metadata cache: keeps a blob's bytes (at most 4 MiB), which must hash to its digest.",
        complexity: c"O(N) where N is the size of the bytes (they are hashed)",
        since: c"0.3.0",
        args: &[string(c"digest"), string(c"bytes")],
        keys: &[keys(1, 1, RW | UPDATE)],
    },
];
