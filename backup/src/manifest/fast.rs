//! A fast reader for the `entries` array exactly as [`super::json::EntriesWriter`] writes it
//! (no escapes, known keys, `dir` before `e`). Anything else — escaped strings, control
//! characters, unknown or repeated keys, other layouts, invalid values — makes it give up, and
//! the caller parses the array with serde, which accepts every valid spelling and reports errors
//! properly. An incremental backup reads its parent's whole tree this way, several times faster
//! than through serde.

use std::str::FromStr;

use super::{EntryKind, ManifestEntry};
use crate::hashing::Sha256Digest;
use crate::naming::BackupId;

struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string without escapes or control characters.
    fn str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let rest = self.b.get(start..)?;
        let len = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        // `"` is ASCII, so both ends are character boundaries.
        self.s.get(start..start + len)
    }

    fn digits(&mut self) -> Option<(bool, u64)> {
        self.ws();
        let neg = self.b.get(self.i) == Some(&b'-');
        if neg {
            self.i += 1;
        }
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(&c) = self.b.get(self.i) {
            if !c.is_ascii_digit() {
                break;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        if self.i == start || matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        // JSON has no leading zeros, and serde reads `-0` as a float, which no integer field
        // takes: leave both to serde, which refuses them.
        if (self.b[start] == b'0' && self.i - start > 1) || (neg && v == 0) {
            return None;
        }
        Some((neg, v))
    }

    fn u64(&mut self) -> Option<u64> {
        match self.digits()? {
            (false, v) => Some(v),
            (true, _) => None,
        }
    }

    fn i64(&mut self) -> Option<i64> {
        let (neg, v) = self.digits()?;
        if neg {
            0i64.checked_sub_unsigned(v)
        } else {
            i64::try_from(v).ok()
        }
    }

    fn sha256(&mut self) -> Option<Sha256Digest> {
        self.eat(b'"')?;
        let hex = self.s.get(self.i..self.i + 64)?;
        if self.b.get(self.i + 64) != Some(&b'"') {
            return None;
        }
        self.i += 65;
        Sha256Digest::from_hex(hex)
    }

    fn bool(&mut self) -> Option<bool> {
        self.ws();
        let rest = self.b.get(self.i..)?;
        if rest.starts_with(b"true") {
            self.i += 4;
            Some(true)
        } else if rest.starts_with(b"false") {
            self.i += 5;
            Some(false)
        } else {
            None
        }
    }

    /// `,` (true) or the closing `close` (false).
    fn next(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.i += 1;
                Some(true)
            }
            c if c == close => {
                self.i += 1;
                Some(false)
            }
            _ => None,
        }
    }
}

/// Parses the raw `entries` array; `None` if it is not in the writer's plain form.
pub(super) fn parse_entries(raw: &str, owner: (u32, u32)) -> Option<Vec<ManifestEntry>> {
    let mut c = Cursor {
        s: raw,
        b: raw.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    c.eat(b'[')?;
    if c.peek()? == b']' {
        c.i += 1;
    } else {
        loop {
            group(&mut c, owner, &mut out)?;
            if !c.next(b']')? {
                break;
            }
        }
    }
    c.ws();
    (c.i == c.b.len()).then_some(out)
}

/// Parses one `{"dir":…,"e":[…]}` group (a line of our layout, without its leading comma),
/// appending its entries to `out`; `None` (and `out` as it was) if it is not in the plain form.
pub(super) fn parse_group(
    raw: &str,
    owner: (u32, u32),
    out: &mut Vec<ManifestEntry>,
) -> Option<()> {
    let mut c = Cursor {
        s: raw,
        b: raw.as_bytes(),
        i: 0,
    };
    let before = out.len();
    let parsed = group(&mut c, owner, out).and_then(|()| {
        c.ws();
        (c.i == c.b.len()).then_some(())
    });
    if parsed.is_none() {
        out.truncate(before);
    }
    parsed
}

fn group(c: &mut Cursor<'_>, owner: (u32, u32), out: &mut Vec<ManifestEntry>) -> Option<()> {
    c.eat(b'{')?;
    if c.str()? != "dir" {
        return None;
    }
    c.eat(b':')?;
    let dir = c.str()?;
    c.eat(b',')?;
    if c.str()? != "e" {
        return None;
    }
    c.eat(b':')?;
    c.eat(b'[')?;
    if c.peek()? == b']' {
        c.i += 1;
    } else {
        loop {
            out.push(entry(c, dir, owner)?);
            if !c.next(b']')? {
                break;
            }
        }
    }
    c.eat(b'}')
}

fn entry(c: &mut Cursor<'_>, dir: &str, owner: (u32, u32)) -> Option<ManifestEntry> {
    c.eat(b'{')?;
    let mut seen = 0u16;
    let mut name = None;
    let mut kind = EntryKind::File;
    let (mut size, mut mtime, mut mode, mut inode) = (0, None, None, 0);
    let (mut uid, mut gid) = owner;
    let (mut sha256, mut target, mut origin, mut changed) = (None, None, None, false);
    if c.peek()? != b'}' {
        loop {
            let key = c.str()?;
            c.eat(b':')?;
            let bit = match key {
                "n" => {
                    name = Some(c.str()?);
                    1
                }
                "k" => {
                    kind = match c.str()? {
                        "d" => EntryKind::Dir,
                        "l" => EntryKind::Symlink,
                        _ => return None,
                    };
                    2
                }
                "s" => {
                    size = c.u64()?;
                    4
                }
                "t" => {
                    mtime = Some(c.i64()?);
                    8
                }
                "m" => {
                    mode = Some(u32::from_str_radix(c.str()?, 8).ok()?);
                    16
                }
                "u" => {
                    uid = u32::try_from(c.u64()?).ok()?;
                    32
                }
                "g" => {
                    gid = u32::try_from(c.u64()?).ok()?;
                    64
                }
                "i" => {
                    inode = c.u64()?;
                    128
                }
                "h" => {
                    sha256 = Some(c.sha256()?);
                    256
                }
                "l" => {
                    target = Some(c.str()?.to_owned());
                    512
                }
                "o" => {
                    origin = Some(BackupId::from_str(c.str()?).ok()?);
                    1024
                }
                "c" => {
                    changed = c.bool()?;
                    2048
                }
                _ => return None,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            if !c.next(b'}')? {
                break;
            }
        }
    } else {
        c.i += 1;
    }
    let name = name?;
    let path = if dir.is_empty() {
        name.to_owned()
    } else {
        let mut p = String::with_capacity(dir.len() + 1 + name.len());
        p.push_str(dir);
        p.push('/');
        p.push_str(name);
        p
    };
    Some(ManifestEntry {
        path,
        kind,
        size,
        mtime_ns: mtime?,
        mode: mode?,
        uid,
        gid,
        inode,
        sha256,
        target,
        origin,
        changed_while_reading: changed,
    })
}
