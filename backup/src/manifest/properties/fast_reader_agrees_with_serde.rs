//! Property: the fast reader is only a shortcut. For any bytes — valid manifests in every
//! spelling, and mutations of them — `parse_stored` (fast reader where the layout allows, serde
//! otherwise) accepts exactly what the plain serde reader accepts and reads the same manifest;
//! the header-only reader and the streaming reader used by incrementals read the same header and
//! entries whenever the whole manifest parses, and the streaming reader never yields a whole
//! tree from bytes the whole-manifest reader refuses.

use std::io::Cursor;

use proptest::prelude::*;

use super::generate;
use crate::manifest::{EntryStream, Manifest, parse_stored, read_header};

fn same(a: &Manifest, b: &Manifest) -> Result<(), TestCaseError> {
    prop_assert_eq!(&a.backup, &b.backup);
    prop_assert_eq!(&a.entries, &b.entries);
    prop_assert_eq!(&a.deleted, &b.deleted);
    prop_assert_eq!(&a.vanished, &b.vanished);
    prop_assert_eq!(&a.root, &b.root);
    prop_assert_eq!(&a.skipped, &b.skipped);
    Ok(())
}

/// Streams the whole tree; `None` if the stream refuses the layout or fails on the way.
fn streamed(bytes: &[u8]) -> Option<Manifest> {
    let (mut head, mut stream) = EntryStream::open(Cursor::new(bytes)).ok()?;
    while let Some(e) = stream.next_entry().ok()? {
        head.entries.push(e);
    }
    Some(head)
}

pub(super) fn readers_agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    let ours = parse_stored(bytes);
    let serde = serde_json::from_slice::<Manifest>(bytes);
    let whole = match (ours, serde) {
        (Ok(a), Ok(b)) => {
            same(&a, &b)?;
            Some(a)
        }
        (Err(_), Err(_)) => None,
        (Ok(_), Err(e)) => {
            return Err(TestCaseError::fail(format!(
                "parse_stored accepted what serde refuses ({e}): {:?}",
                String::from_utf8_lossy(bytes)
            )));
        }
        (Err(e), Ok(_)) => {
            return Err(TestCaseError::fail(format!(
                "parse_stored refused what serde accepts ({e}): {:?}",
                String::from_utf8_lossy(bytes)
            )));
        }
    };
    let streamed = streamed(bytes);
    match (&whole, &streamed) {
        (Some(m), Some(s)) => same(m, s)?,
        (None, Some(_)) => {
            return Err(TestCaseError::fail(format!(
                "the stream read a whole tree from a manifest that does not parse: {:?}",
                String::from_utf8_lossy(bytes)
            )));
        }
        _ => {}
    }
    if let Some(m) = &whole {
        let header = read_header(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&header, &m.backup);
    }
    Ok(())
}

proptest! {
    #[test]
    fn valid_manifests_read_the_same_in_every_spelling(m in generate::manifest()) {
        prop_assert!(m.check_stored().is_ok(), "generator made an invalid manifest: {:?}", m.check_stored());
        for bytes in generate::spellings(&m) {
            readers_agree(&bytes)?;
            let back = parse_stored(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            same(&back, &m)?;
        }
    }

    #[test]
    fn mutated_manifests_read_the_same_or_fail_in_both(
        m in generate::manifest(),
        spelling in 0usize..3,
        mutations in generate::mutations(),
    ) {
        let bytes = generate::apply(generate::spellings(&m)[spelling].clone(), &mutations);
        readers_agree(&bytes)?;
    }
}
