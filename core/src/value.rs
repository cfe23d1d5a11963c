//! Field values: sizes and lengths, storage paths and media types.

use crate::InputError;

/// Longest storage path accepted, in bytes.
pub const MAX_PATH: usize = 4096;
/// Longest media type accepted, in bytes.
pub const MAX_MEDIATYPE: usize = 255;

/// Parses a canonical non-negative decimal int64 (`0`, `42`; not `+1`, `007`, `-3`,
/// `1e3`), the form `HSET` stores, so stored bytes and the number map one to one.
/// `field` names the argument in the error (`length` or `size`).
pub fn parse_size(bytes: &[u8], field: &'static str) -> Result<i64, InputError> {
    let err = |reason| InputError::Size { field, reason };
    match bytes {
        [] => return Err(err("empty")),
        [b'-', ..] => return Err(err("negative")),
        [b'0', _, ..] => return Err(err("not canonical (leading zero)")),
        _ => {}
    }
    if !bytes.iter().all(u8::is_ascii_digit) {
        return Err(err("not a decimal integer"));
    }
    bytes
        .iter()
        .try_fold(0i64, |n, &b| n.checked_mul(10)?.checked_add(i64::from(b - b'0')))
        .ok_or(err("out of range"))
}

/// Checks a storage path: non-empty, at most [`MAX_PATH`] bytes, no NUL.
pub fn check_path(bytes: &[u8]) -> Result<&[u8], InputError> {
    if bytes.is_empty() {
        return Err(InputError::Path("empty"));
    }
    if bytes.len() > MAX_PATH {
        return Err(InputError::Path("longer than 4096 bytes"));
    }
    if bytes.contains(&0) {
        return Err(InputError::Path("contains a NUL byte"));
    }
    Ok(bytes)
}

/// Checks a media type: `type "/" subtype`, each an RFC 6838 restricted-name
/// (`[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}`), at most [`MAX_MEDIATYPE`] bytes.
pub fn check_mediatype(bytes: &[u8]) -> Result<&[u8], InputError> {
    if bytes.is_empty() {
        return Err(InputError::MediaType("empty"));
    }
    if bytes.len() > MAX_MEDIATYPE {
        return Err(InputError::MediaType("longer than 255 bytes"));
    }
    let mut parts = bytes.splitn(2, |&b| b == b'/');
    match (parts.next(), parts.next()) {
        (Some(kind), Some(subtype)) if is_restricted_name(kind) && is_restricted_name(subtype) => Ok(bytes),
        _ => Err(InputError::MediaType("not type/subtype (RFC 6838)")),
    }
}

fn is_restricted_name(s: &[u8]) -> bool {
    let rest_ok = |b: &u8| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(b);
    match s.split_first() {
        Some((first, rest)) => first.is_ascii_alphanumeric() && rest.len() <= 126 && rest.iter().all(rest_ok),
        None => false,
    }
}

/// A repository's own mediatype for a blob it holds, as its scheme stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoMediatype<T> {
    /// None recorded (distribution: no field; blob: `""`).
    Missing,
    /// Recorded empty (distribution only).
    Empty,
    Set(T),
}

impl<T> RepoMediatype<T> {
    /// REPOSTAT's rule, distribution's repository-scoped Stat: without a repository
    /// mediatype the blob is unknown to the repository (`None`); an empty one leaves
    /// the global mediatype (`Some(None)`); any other replaces it (`Some(Some(m))`).
    pub fn resolve(self) -> Option<Option<T>> {
        match self {
            RepoMediatype::Missing => None,
            RepoMediatype::Empty => Some(None),
            RepoMediatype::Set(m) => Some(Some(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repostat_mediatype() {
        let cases = [
            (1, RepoMediatype::Missing, None),
            (2, RepoMediatype::Empty, Some(None)),
            (3, RepoMediatype::Set("application/x"), Some(Some("application/x"))),
        ];
        for (n, stored, want) in cases {
            assert_eq!(stored.resolve(), want, "case {n}");
        }
    }

    #[test]
    fn sizes() {
        let err = |reason| Err(InputError::Size { field: "size", reason });
        let cases: Vec<(usize, &[u8], Result<i64, InputError>)> = vec![
            (1, b"0", Ok(0)),
            (2, b"42", Ok(42)),
            (3, b"9223372036854775807", Ok(i64::MAX)),
            (4, b"9223372036854775808", err("out of range")),
            (5, b"", err("empty")),
            (6, b"-3", err("negative")),
            (7, b"-0", err("negative")),
            (8, b"+1", err("not a decimal integer")),
            (9, b"007", err("not canonical (leading zero)")),
            (10, b"1e3", err("not a decimal integer")),
            (11, b" 1", err("not a decimal integer")),
            (12, b"1\0", err("not a decimal integer")),
            (13, b"99999999999999999999999", err("out of range")),
        ];
        for (n, input, want) in cases {
            assert_eq!(parse_size(input, "size"), want, "case {n}");
        }
    }

    #[test]
    fn paths() {
        assert!(check_path(b"/docker/registry/v2/blobs/sha256/9f/data").is_ok());
        assert_eq!(check_path(b""), Err(InputError::Path("empty")));
        assert_eq!(check_path(b"a\0b"), Err(InputError::Path("contains a NUL byte")));
        assert!(check_path(&[b'a'; MAX_PATH]).is_ok());
        assert_eq!(check_path(&[b'a'; MAX_PATH + 1]), Err(InputError::Path("longer than 4096 bytes")));
    }

    #[test]
    fn mediatypes() {
        let bad = Err(InputError::MediaType("not type/subtype (RFC 6838)"));
        let cases: Vec<(usize, &[u8], Result<&[u8], InputError>)> = vec![
            (1, b"application/vnd.oci.image.layer.v1.tar+gzip", Ok(b"application/vnd.oci.image.layer.v1.tar+gzip")),
            (2, b"application/octet-stream", Ok(b"application/octet-stream")),
            (3, b"", Err(InputError::MediaType("empty"))),
            (4, b"application", bad),
            (5, b"application/", bad),
            (6, b"/json", bad),
            (7, b"application/json; charset=utf-8", bad),
            (8, b"a/b/c", bad),
            (9, b"-app/json", bad),
        ];
        for (n, input, want) in cases {
            assert_eq!(check_mediatype(input), want, "case {n}");
        }
        let long = [b"a/".as_slice(), &[b'b'; MAX_MEDIATYPE]].concat();
        assert_eq!(check_mediatype(&long), Err(InputError::MediaType("longer than 255 bytes")));
    }
}
