//! Path rules shared by the manifest check and the archive reader: what a relative path inside a
//! backup may look like, how entries are ordered, and whether a symlink stays inside the tree.
//! Restore refuses a whole archive when any of these fail.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};

/// Longest path we accept (Linux PATH_MAX).
const MAX_PATH: usize = 4096;
/// Longest single component (NAME_MAX).
const MAX_COMPONENT: usize = 255;
/// Symlink hops followed before giving up, like the kernel's 40.
const MAX_SYMLINK_HOPS: usize = 40;

/// Checks a relative path from a manifest or tar header: non-empty, UTF-8, no NUL, not absolute,
/// no `.`/`..`/empty components. Returns the path as `&str` or a sentence saying what is wrong.
pub(crate) fn check_rel_path(bytes: &[u8]) -> Result<&str, String> {
    if bytes.is_empty() {
        return Err("empty path".to_owned());
    }
    if bytes.contains(&0) {
        return Err("path contains a NUL byte".to_owned());
    }
    if bytes.len() > MAX_PATH {
        return Err(format!(
            "path is {} bytes long (at most {MAX_PATH})",
            bytes.len()
        ));
    }
    let Ok(s) = std::str::from_utf8(bytes) else {
        return Err("path is not UTF-8".to_owned());
    };
    if s.starts_with('/') {
        return Err("absolute path".to_owned());
    }
    for comp in s.split('/') {
        match comp {
            "" => return Err("empty path component (`//` or trailing `/`)".to_owned()),
            "." => return Err("`.` path component".to_owned()),
            ".." => return Err("`..` path component (escapes the target)".to_owned()),
            c if c.len() > MAX_COMPONENT => {
                return Err(format!("path component {} bytes long", c.len()));
            }
            _ => {}
        }
    }
    Ok(s)
}

/// Orders paths component by component: the order of a depth-first walk with sorted names, so a
/// directory comes right before its contents. Manifests and archives are in this order.
pub(crate) fn walk_order(a: &str, b: &str) -> Ordering {
    // Component-wise comparison is byte-wise comparison with `/` sorting before every other
    // byte (names hold no NUL): compare at the first differing byte.
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let rank = |c: Option<&u8>| match c {
        None => 0u16,
        Some(b'/') => 1,
        Some(&c) => u16::from(c) + 2,
    };
    rank(a.get(common)).cmp(&rank(b.get(common)))
}

/// Parent directory of a relative path, or `None` at the top level.
pub(crate) fn parent_of(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(p, _)| p)
}

/// What the symlink resolver needs to know about an entry.
pub(crate) trait LinkLookup {
    /// The target if `path` is a symlink in the tree being checked.
    fn symlink_target(&self, path: &str) -> Option<&str>;
}

impl LinkLookup for HashMap<&str, &str> {
    fn symlink_target(&self, path: &str) -> Option<&str> {
        self.get(path).copied()
    }
}

/// A tree without symlinks: the check degenerates to a lexical one.
pub(crate) struct NoLinks;

impl LinkLookup for NoLinks {
    fn symlink_target(&self, _path: &str) -> Option<&str> {
        None
    }
}

/// Resolves `target` as the kernel would from the symlink at `link_path`, following other
/// symlinks of the same tree, and fails if resolution would leave the tree. Paths that do not
/// exist in the tree are treated as plain directories (a dangling link must not escape either).
pub(crate) fn check_link_target(
    link_path: &str,
    target: &str,
    tree: &impl LinkLookup,
) -> Result<(), String> {
    if target.is_empty() {
        return Err("empty symlink target".to_owned());
    }
    if target.contains('\0') {
        return Err("symlink target contains a NUL byte".to_owned());
    }
    if target.starts_with('/') {
        return Err(format!(
            "symlink target {target:?} is absolute (points outside the target)"
        ));
    }
    let mut stack: Vec<String> = parent_of(link_path)
        .map(|p| p.split('/').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut pending: VecDeque<String> = target.split('/').map(str::to_owned).collect();
    let mut hops = 0;
    while let Some(comp) = pending.pop_front() {
        match comp.as_str() {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(format!(
                        "symlink target {target:?} points outside the target"
                    ));
                }
            }
            name => {
                stack.push(name.to_owned());
                let here = stack.join("/");
                if let Some(next) = tree.symlink_target(&here) {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(format!(
                            "symlink target {target:?}: too many levels of links"
                        ));
                    }
                    if next.starts_with('/') {
                        return Err(format!(
                            "symlink target {target:?} goes through {here:?}, which is absolute"
                        ));
                    }
                    stack.pop();
                    for c in next.split('/').rev() {
                        pending.push_front(c.to_owned());
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_paths() {
        assert!(check_rel_path(b"a/b.json").is_ok());
        for bad in [
            &b""[..],
            b"/etc/passwd",
            b"a/../../x",
            b"..",
            b"a//b",
            b"a/./b",
            b"a/",
            b"a\0b",
        ] {
            assert!(check_rel_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn order_puts_directories_before_contents() {
        let mut v = vec!["a.txt", "a/b", "a", "b", "a/b/c", "a-b", "a/!", "ab"];
        v.sort_by(|x, y| walk_order(x, y));
        assert_eq!(v, ["a", "a/!", "a/b", "a/b/c", "a-b", "a.txt", "ab", "b"]);
        for x in &v {
            for y in &v {
                assert_eq!(
                    walk_order(x, y),
                    x.split('/').cmp(y.split('/')),
                    "{x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn symlink_resolution() {
        let none = NoLinks;
        assert!(check_link_target("a/l", "../b", &none).is_ok());
        assert!(check_link_target("a/l", "../../b", &none).is_err());
        assert!(check_link_target("l", "/etc", &none).is_err());
        // `s -> .` then `t -> s/../x` is inside lexically but outside for the kernel.
        let mut tree: HashMap<&str, &str> = HashMap::new();
        tree.insert("s", ".");
        assert!(check_link_target("t", "s/../x", &tree).is_err());
        tree.insert("d/s", "..");
        assert!(check_link_target("d/t", "s/x", &tree).is_ok());
        assert!(check_link_target("d/t", "s/../x", &tree).is_err());
        tree.insert("loop", "loop");
        assert!(check_link_target("x", "loop", &tree).is_err());
    }
}
