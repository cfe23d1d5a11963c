//! Every way a command can fail, and the one place that says what the client's error
//! reply reads (DESIGN.md section 3).

use std::borrow::Cow;

use layercache_core::InputError;

#[derive(Debug)]
pub enum Error {
    /// A rejected argument; counted as `rejected` in `INFO layercache`.
    Input(InputError),
    WrongType,
    /// The user may not access a key the command touches (which one is in `ACL LOG`).
    NoPerm,
    /// A stored number that is not one, at this key.
    Corrupt(String),
    /// A command the module refuses as it stands (a syntax error, a cursor that is not
    /// one, a command of the other key scheme): the whole reply, `ERR ...`; counted as
    /// `rejected` too.
    Refused(Cow<'static, str>),
    /// A bug or a failed internal call: the whole reply, `ERR layercache internal ...`.
    Internal(String),
    /// An error reply from Redis itself, forwarded as it is.
    Redis(String),
}

impl From<InputError> for Error {
    fn from(e: InputError) -> Self {
        Error::Input(e)
    }
}

impl Error {
    /// The client's error reply.
    pub fn reply(&self) -> Cow<'_, str> {
        match self {
            Error::Input(e) => e.to_string().into(),
            Error::WrongType => "WRONGTYPE Operation against a key holding the wrong kind of value".into(),
            Error::NoPerm => "NOPERM this user has no permissions to access one of the keys this command touches".into(),
            Error::Corrupt(key) => format!("ERR corrupt cache entry {key}").into(),
            Error::Refused(message) => message.as_ref().into(),
            Error::Internal(message) | Error::Redis(message) => message.into(),
        }
    }
}
