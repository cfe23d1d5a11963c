//! Link paths of the metadata cache (DESIGN.md section 7): where distribution keeps a
//! repository's links, relative to the repository's directory, as LINK, LINKSET and
//! LINKDROP take them.
//!
//! | path | distribution's link |
//! |---|---|
//! | `_manifests/tags/<tag>/current/link` | the tag's manifest |
//! | `_manifests/tags/<tag>/index/<alg>/<hex>/link` | a manifest the tag has pointed to |
//! | `_manifests/revisions/<alg>/<hex>/link` | the repository holds the manifest |
//! | `_layers/<alg>/<hex>/link` | the repository holds the blob |
//!
//! A path is components of `[A-Za-z0-9_.-]` (no `.` or `..`) joined by `/`, the first
//! `_manifests` or `_layers`. A link ends in `/link`; LINKDROP also takes a directory
//! above links (`_manifests/tags/latest`), or `""` for every link of the repository.

use crate::InputError;

/// Longest link path accepted, in bytes (a tag's index link is under 120).
pub const MAX_LEN: usize = 512;

/// Checks a link path (`LINK`, `LINKSET`): a file `.../link`.
pub fn check(bytes: &[u8]) -> Result<&[u8], InputError> {
    check_prefix(bytes)?;
    if bytes.is_empty() || !bytes.ends_with(b"/link") {
        return Err(InputError::Path("not a link (.../link)"));
    }
    Ok(bytes)
}

/// Checks what `LINKDROP` takes: a link, a directory above links, or `""` (all).
pub fn check_prefix(bytes: &[u8]) -> Result<&[u8], InputError> {
    if bytes.is_empty() {
        return Ok(bytes);
    }
    if bytes.len() > MAX_LEN {
        return Err(InputError::Path("longer than 512 bytes"));
    }
    let mut components = bytes.split(|&b| b == b'/');
    if !matches!(components.next(), Some(b"_manifests" | b"_layers")) {
        return Err(InputError::Path("not under _manifests/ or _layers/"));
    }
    let is_component = |c: &[u8]| {
        !c.is_empty() && c != b"." && c != b".." && c.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    };
    if !components.all(is_component) {
        return Err(InputError::Path("not components of [A-Za-z0-9_.-] joined by /"));
    }
    Ok(bytes)
}

/// Whether the link `path` is `prefix` or lies under it (`""` holds every link).
pub fn is_under(path: &[u8], prefix: &[u8]) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.is_empty() || rest.is_empty() || rest.starts_with(b"/"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &[u8] = b"_manifests/tags/latest/current/link";

    #[test]
    fn table() {
        let long = format!("_layers/{}/link", "a".repeat(MAX_LEN));
        let cases: Vec<(usize, &[u8], Result<(), &str>, Result<(), &str>)> = vec![
            (1, TAG, Ok(()), Ok(())),
            (2, b"_layers/sha256/abc/link", Ok(()), Ok(())),
            (3, b"_manifests/tags/latest", Err("not a link (.../link)"), Ok(())),
            (4, b"", Err("not a link (.../link)"), Ok(())),
            (5, b"_uploads/x/link", Err("not under _manifests/ or _layers/"), Err("not under _manifests/ or _layers/")),
            (
                6,
                b"_layers/../x/link",
                Err("not components of [A-Za-z0-9_.-] joined by /"),
                Err("not components of [A-Za-z0-9_.-] joined by /"),
            ),
            (7, b"_layers//link", Err("not components of [A-Za-z0-9_.-] joined by /"), Err("not components of [A-Za-z0-9_.-] joined by /")),
            (
                8,
                b"_layers/a b/link",
                Err("not components of [A-Za-z0-9_.-] joined by /"),
                Err("not components of [A-Za-z0-9_.-] joined by /"),
            ),
            (9, b"_layers/", Err("not components of [A-Za-z0-9_.-] joined by /"), Err("not components of [A-Za-z0-9_.-] joined by /")),
            (10, long.as_bytes(), Err("longer than 512 bytes"), Err("longer than 512 bytes")),
            (11, b"_layers\0/link", Err("not under _manifests/ or _layers/"), Err("not under _manifests/ or _layers/")),
        ];
        for (n, input, link, prefix) in cases {
            assert_eq!(check(input).map(|_| ()), link.map_err(InputError::Path), "case {n} link");
            assert_eq!(check_prefix(input).map(|_| ()), prefix.map_err(InputError::Path), "case {n} prefix");
        }
    }

    #[test]
    fn under() {
        let cases: [(usize, &[u8], &[u8], bool); 6] = [
            (1, TAG, b"", true),
            (2, TAG, TAG, true),
            (3, TAG, b"_manifests/tags/latest", true),
            (4, TAG, b"_manifests/tags/lat", false),
            (5, b"_manifests/tags/latest2/current/link", b"_manifests/tags/latest", false),
            (6, b"_layers/sha256/a/link", b"_manifests", false),
        ];
        for (n, path, prefix, want) in cases {
            assert_eq!(is_under(path, prefix), want, "case {n}");
        }
    }
}
