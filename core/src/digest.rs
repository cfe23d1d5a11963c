//! Content digests as distribution (go-digest) accepts them: `algorithm ":" encoded`.
//!
//! The order of checks follows go-digest's `Digest.Validate`, so a registry sees the
//! same error for the same bad digest whether it talks to distribution or to us.

use crate::InputError;

/// Longest digest accepted, in bytes. Longer input is a format error.
pub const MAX_LEN: usize = 1024;

/// Longest digest that parses: `sha512:` and 128 hex digits.
pub const MAX_PARSED_LEN: usize = "sha512:".len() + 128;

/// A digest that passed [`parse`]; it borrows the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest<'a> {
    bytes: &'a [u8],
    colon: usize,
}

impl<'a> Digest<'a> {
    /// The whole digest, `sha256:…`.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The algorithm part, `sha256`.
    pub fn algorithm(&self) -> &'a [u8] {
        &self.bytes[..self.colon]
    }
}

/// The algorithms distribution can verify, with the hex length of their encoded part.
fn hex_len(algorithm: &[u8]) -> Option<usize> {
    match algorithm {
        b"sha256" => Some(64),
        b"sha384" => Some(96),
        b"sha512" => Some(128),
        _ => None,
    }
}

/// Validates `bytes` as a digest of a supported algorithm.
#[inline(never)] // kept out of line, so profiles can name it
pub fn parse(bytes: &[u8]) -> Result<Digest<'_>, InputError> {
    // The common case first: a sha256 digest, well formed.
    if let Some(encoded) = bytes.strip_prefix(b"sha256:") {
        if encoded.len() == 64 && is_lower_hex(encoded) {
            return Ok(Digest { bytes, colon: 6 });
        }
    }
    if bytes.len() > MAX_LEN {
        return Err(InputError::DigestFormat);
    }
    let colon = match bytes.iter().position(|&b| b == b':') {
        Some(i) if i + 1 < bytes.len() => i,
        _ => return Err(InputError::DigestFormat),
    };
    let (algorithm, encoded) = (&bytes[..colon], &bytes[colon + 1..]);
    let Some(expected) = hex_len(algorithm) else {
        // go-digest: an unknown algorithm is "unsupported" only if the digest is
        // otherwise well formed.
        return Err(if is_algorithm(algorithm) && is_encoded(encoded) { InputError::DigestUnsupported } else { InputError::DigestFormat });
    };
    if encoded.len() != expected {
        return Err(InputError::DigestLength);
    }
    if !is_lower_hex(encoded) {
        return Err(InputError::DigestFormat);
    }
    Ok(Digest { bytes, colon })
}

/// `[0-9a-f]*`. No early exit, so the compiler checks many bytes per instruction: this
/// runs on every command.
fn is_lower_hex(s: &[u8]) -> bool {
    s.iter().fold(true, |ok, &b| ok & ((b.wrapping_sub(b'0') < 10) | (b.wrapping_sub(b'a') < 6)))
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*`
fn is_algorithm(s: &[u8]) -> bool {
    let is_component = |c: &[u8]| !c.is_empty() && c.iter().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9'));
    s.split(|b| matches!(b, b'+' | b'.' | b'_' | b'-')).all(is_component)
}

/// REPOSETDESCRIPTOR's alias rule: a blob is written under every algorithm it is known
/// by (a sha384 key for a sha256 blob writes both), so the descriptor's own digest
/// `canonical` is a second key when its algorithm differs from `key`'s; the same
/// digest is no alias; two values of one algorithm cannot name one blob.
pub fn alias<'a>(key: Digest<'a>, canonical: Digest<'a>) -> Result<Option<Digest<'a>>, InputError> {
    if canonical == key {
        Ok(None)
    } else if canonical.algorithm() == key.algorithm() {
        Err(InputError::DigestMismatch)
    } else {
        Ok(Some(canonical))
    }
}

/// Whether `content` hashes to `digest` (SETDATA: the cache holds a blob's bytes only
/// under their own digest).
pub fn matches(digest: Digest, content: &[u8]) -> bool {
    use sha2::Digest as _;
    fn hex(sum: &[u8]) -> Vec<u8> {
        sum.iter().flat_map(|b| [b"0123456789abcdef"[usize::from(b >> 4)], b"0123456789abcdef"[usize::from(b & 15)]]).collect()
    }
    let sum = match digest.algorithm() {
        b"sha256" => hex(&sha2::Sha256::digest(content)),
        b"sha384" => hex(&sha2::Sha384::digest(content)),
        b"sha512" => hex(&sha2::Sha512::digest(content)),
        _ => return false,
    };
    digest.as_bytes()[digest.colon + 1..] == sum[..]
}

/// `[a-zA-Z0-9=_-]+`
fn is_encoded(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use InputError::*;

    const HEX64: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn table() {
        let sha384 = format!("sha384:{}", "a".repeat(96));
        let sha512 = format!("sha512:{}", "0".repeat(128));
        let long = format!("sha256:{}", "a".repeat(MAX_LEN));
        let cases: Vec<(usize, String, Result<(), InputError>)> = vec![
            (1, format!("sha256:{HEX64}"), Ok(())),
            (2, sha384, Ok(())),
            (3, sha512, Ok(())),
            (4, String::new(), Err(DigestFormat)),
            (5, HEX64.to_string(), Err(DigestFormat)),
            (6, "sha256:".to_string(), Err(DigestFormat)),
            (7, format!(":{HEX64}"), Err(DigestFormat)),
            (8, "sha256:abc".to_string(), Err(DigestLength)),
            (9, format!("sha256:{}", HEX64.to_uppercase()), Err(DigestFormat)),
            (10, format!("sha256:{}g", &HEX64[1..]), Err(DigestFormat)),
            (11, format!("md5:{}", "a".repeat(32)), Err(DigestUnsupported)),
            (12, "foo+bar.baz:Zm9v=".to_string(), Err(DigestUnsupported)),
            (13, "Sha256:abc".to_string(), Err(DigestFormat)),
            (14, "md5:a b".to_string(), Err(DigestFormat)),
            (15, "sha256+:abc".to_string(), Err(DigestFormat)),
            (16, long, Err(DigestFormat)),
            (17, format!("sha256:{HEX64}\0"), Err(DigestLength)),
        ];
        for (n, input, want) in cases {
            assert_eq!(parse(input.as_bytes()).map(|_| ()), want, "case {n}: {input:?}");
        }
    }

    #[test]
    fn parts() {
        let s = format!("sha256:{HEX64}");
        let d = parse(s.as_bytes()).unwrap();
        assert_eq!(d.algorithm(), b"sha256");
        assert_eq!(d.as_bytes(), s.as_bytes());
    }

    #[test]
    fn aliases() {
        let (a, b) = (format!("sha256:{HEX64}"), format!("sha256:{}", "0".repeat(64)));
        let c = format!("sha512:{}", "0".repeat(128));
        let [a, b, c] = [&a, &b, &c].map(|s| parse(s.as_bytes()).unwrap());
        let cases = [(1, a, a, Ok(None)), (2, a, b, Err(DigestMismatch)), (3, a, c, Ok(Some(c))), (4, c, a, Ok(Some(a)))];
        for (n, key, canonical, want) in cases {
            assert_eq!(alias(key, canonical), want, "case {n}");
        }
    }

    #[test]
    fn content() {
        // sha256("test"), as in go-digest's FromString.
        let d = format!("sha256:{HEX64}");
        let d = parse(d.as_bytes()).unwrap();
        assert!(matches(d, b"test"), "case 1");
        assert!(!matches(d, b"test\n"), "case 2");
        let sha512 = format!("sha512:{}", "0".repeat(128));
        assert!(!matches(parse(sha512.as_bytes()).unwrap(), b"test"), "case 3");
    }

    #[test]
    fn non_utf8_is_format_error() {
        assert_eq!(parse(b"sha256:\xff\xfe"), Err(DigestLength));
        assert_eq!(parse(b"\xff:abc"), Err(DigestFormat));
    }
}
