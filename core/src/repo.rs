//! Repository names in distribution's reference grammar (`reference/regexp.go`):
//! an optional `host[:port]/` domain, then path components
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`, at most 255 bytes in all.

use crate::InputError;

/// Longest repository name distribution accepts (`NameTotalLengthMax`).
pub const MAX_LEN: usize = 255;

const EMPTY: InputError = InputError::Name("repository name must have at least one component");
const TOO_LONG: InputError = InputError::Name("repository name must not be more than 255 characters");
const UPPERCASE: InputError = InputError::Name("repository name must be lowercase");
const FORMAT: InputError = InputError::Name("invalid reference format");

/// A repository name that passed [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repo<'a>(&'a [u8]);

impl<'a> Repo<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, InputError> {
        parse(bytes).map(Repo)
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// Validates `bytes` as a repository name; returns the same bytes on success.
#[inline(never)] // kept out of line, so profiles can name it
pub fn parse(bytes: &[u8]) -> Result<&[u8], InputError> {
    if bytes.is_empty() {
        return Err(EMPTY);
    }
    if bytes.len() > MAX_LEN {
        return Err(TOO_LONG);
    }
    if is_name(bytes) {
        return Ok(bytes);
    }
    // distribution reports "must be lowercase" when that is the only thing wrong.
    if bytes.iter().any(u8::is_ascii_uppercase) && is_name(&bytes.to_ascii_lowercase()) {
        return Err(UPPERCASE);
    }
    Err(FORMAT)
}

fn is_name(s: &[u8]) -> bool {
    if is_path(s) {
        return true;
    }
    // The first component may instead be a domain, if a path follows it.
    match s.iter().position(|&b| b == b'/') {
        Some(i) => is_domain_and_port(&s[..i]) && is_path(&s[i + 1..]),
        None => false,
    }
}

/// Path components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`, in one pass of
/// a table-driven automaton: the state is what the last byte allows next, and a byte
/// costs one table load (this runs on every command that names a repository).
fn is_path(s: &[u8]) -> bool {
    // States are kept shifted into the row index; masked, they index in bounds without a
    // check, and a byte costs a handful of instructions.
    let step = |state: u16, b: &u8| PATH[(state & 0x700) as usize | *b as usize];
    let mut chunks = s.chunks_exact(4);
    let mut state = (SLASH as u16) << 8;
    for chunk in &mut chunks {
        state = chunk.iter().fold(state, step);
    }
    state = chunks.remainder().iter().fold(state, step);
    state == (ALNUM as u16) << 8
}

// The automaton's states. DEAD absorbs: no early exit, so the loop stays branch-free.
/// The start or a `/`: an alphanumeric must come.
const SLASH: u8 = 0;
const ALNUM: u8 = 1;
/// `.`, `__`: an alphanumeric must come.
const SEPARATOR: u8 = 2;
/// One `_`: an alphanumeric or a second `_`.
const UNDERSCORE: u8 = 3;
/// `-`: an alphanumeric or more `-`.
const DASH: u8 = 4;
const DEAD: u8 = 5;

/// `PATH[state << 8 | byte]`: the next state, shifted left by 8. Eight rows of 256, so
/// that a state masked to three bits indexes in bounds without a check.
static PATH: [u16; 8 << 8] = {
    let mut table = [(DEAD as u16) << 8; 8 << 8];
    let mut state = 0;
    while state < 8 {
        let mut b = 0;
        while b < 256 {
            let byte = b as u8;
            let next = match (state as u8, byte) {
                (DEAD, _) => DEAD,
                (_, b'a'..=b'z' | b'0'..=b'9') if state as u8 <= DASH => ALNUM,
                (ALNUM, b'.') | (UNDERSCORE, b'_') => SEPARATOR,
                (ALNUM, b'_') => UNDERSCORE,
                (ALNUM | DASH, b'-') => DASH,
                (ALNUM, b'/') => SLASH,
                _ => DEAD,
            };
            table[state << 8 | b] = (next as u16) << 8;
            b += 1;
        }
        state += 1;
    }
    table
};

/// `(domainName | \[[a-fA-F0-9:]+\]) (:[0-9]+)?`
fn is_domain_and_port(s: &[u8]) -> bool {
    let (host, port) = if s.first() == Some(&b'[') {
        match s.iter().position(|&b| b == b']') {
            Some(end) => (&s[..=end], &s[end + 1..]),
            None => return false,
        }
    } else {
        match s.iter().position(|&b| b == b':') {
            Some(colon) => (&s[..colon], &s[colon..]),
            None => (s, &s[s.len()..]),
        }
    };
    let host_ok = match host {
        [b'[', inner @ .., b']'] => !inner.is_empty() && inner.iter().all(|b| b.is_ascii_hexdigit() || *b == b':'),
        _ => host.split(|&b| b == b'.').all(is_domain_component),
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    host_ok && port_ok
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn is_domain_component(s: &[u8]) -> bool {
    match (s.first(), s.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && s.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8]) -> Result<(), InputError> {
        parse(input).map(|_| ())
    }

    #[test]
    fn table() {
        let long = format!("a/{}", "b".repeat(MAX_LEN - 2));
        let too_long = format!("a/{}", "b".repeat(MAX_LEN - 1));
        let cases: Vec<(usize, &[u8], Result<(), InputError>)> = vec![
            (1, b"foo", Ok(())),
            (2, b"library/ubuntu", Ok(())),
            (3, b"team-a/app", Ok(())),
            (4, b"a.b_c__d---e/f", Ok(())),
            (5, b"localhost:5000/foo/bar", Ok(())),
            (6, b"Docker.IO/library/ubuntu", Ok(())),
            (7, b"[::1]:5000/foo", Ok(())),
            (8, b"[fe80::1]/foo", Ok(())),
            (9, long.as_bytes(), Ok(())),
            (10, b"", Err(EMPTY)),
            (11, too_long.as_bytes(), Err(TOO_LONG)),
            (12, b"Foo", Err(UPPERCASE)),
            (13, b"library/Ubuntu", Err(UPPERCASE)),
            (14, b"foo/", Err(FORMAT)),
            (15, b"/foo", Err(FORMAT)),
            (16, b"foo//bar", Err(FORMAT)),
            (17, b"foo___bar", Err(FORMAT)),
            (18, b"foo._bar", Err(FORMAT)),
            (19, b"-foo", Err(FORMAT)),
            (20, b"foo-", Err(FORMAT)),
            (21, b"foo:5000", Err(FORMAT)),
            (22, b"localhost:/foo", Err(FORMAT)),
            (23, b"-host/foo", Err(FORMAT)),
            (24, b"foo bar", Err(FORMAT)),
            (25, b"foo\0bar", Err(FORMAT)),
            (26, b"\xff\xfe", Err(FORMAT)),
            (27, b"[::1/foo", Err(FORMAT)),
            (28, b"[]/foo", Err(FORMAT)),
            (29, b"host:port/foo", Err(FORMAT)),
            (30, b"foo.", Err(FORMAT)),
        ];
        for (n, input, want) in cases {
            assert_eq!(check(input), want, "case {n}: {:?}", String::from_utf8_lossy(input));
        }
    }

    /// The hand-written grammar agrees with distribution's own regular expression.
    #[test]
    fn agrees_with_distribution_regexp() {
        let path = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";
        let domain = r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?";
        let re = regex::bytes::Regex::new(&format!("^(?:{domain}/)?{path}(?:/{path})*$")).unwrap();
        // Every string of up to 5 bytes over an alphabet that exercises each rule.
        let alphabet = b"aZ0.-_/:[]";
        let mut inputs: Vec<Vec<u8>> = vec![vec![]];
        let mut checked = 0;
        for _ in 0..5 {
            inputs = inputs
                .iter()
                .flat_map(|prefix| alphabet.iter().map(move |&b| [prefix.as_slice(), &[b]].concat()))
                .collect();
            for input in &inputs {
                assert_eq!(is_name(input), re.is_match(input), "{:?}", String::from_utf8_lossy(input));
                checked += 1;
            }
        }
        assert!(checked > 100_000);
    }
}
