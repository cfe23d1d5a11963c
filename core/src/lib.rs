//! The parts of layercache that need no Redis: input validation (digest, repository
//! name, sizes, paths, media types) and the key names of both storage schemes.
//!
//! Everything here works on raw bytes from the client and never panics on them, so the
//! module can call it on any argument before touching a key.

pub mod digest;
pub mod error;
pub mod keys;
pub mod link;
pub mod repo;
pub mod value;

pub use error::InputError;
