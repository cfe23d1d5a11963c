//! Every way a command can fail, and the one place that turns a failure into the
//! client's error reply (DESIGN.md section 3).

use layercache_core::InputError;

use crate::api::Ctx;

#[derive(Debug)]
pub enum Error {
    /// A rejected argument; counted as `rejected` in `INFO layercache`.
    Input(InputError),
    WrongType,
    /// The user may not access a key the command touches (which one is in `ACL LOG`).
    NoPerm,
    /// A stored number that is not one, at this key.
    Corrupt(String),
    /// An error reply from Redis itself, forwarded as it is.
    Redis(String),
}

impl From<InputError> for Error {
    fn from(e: InputError) -> Self {
        Error::Input(e)
    }
}

impl Error {
    pub fn reply(&self, ctx: &Ctx) {
        match self {
            Error::Input(e) => ctx.reply_error(&e.to_string()),
            Error::WrongType => ctx.reply_error("WRONGTYPE Operation against a key holding the wrong kind of value"),
            Error::NoPerm => ctx.reply_error("NOPERM this user has no permissions to access one of the keys this command touches"),
            Error::Corrupt(key) => ctx.reply_error(&format!("ERR corrupt cache entry {key}")),
            Error::Redis(message) => ctx.reply_error(message),
        }
    }
}
