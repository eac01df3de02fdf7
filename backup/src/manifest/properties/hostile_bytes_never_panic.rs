//! Property: no bytes make a manifest reader or checker panic. Arbitrary bytes and mutated valid
//! manifests go through every reader (whole, header-only, streaming), and whatever parses goes
//! through the checks and the incremental view merge; each either works or returns an error.

use std::io::Cursor;

use proptest::prelude::*;

use super::generate;
use crate::manifest::view::build_view;
use crate::manifest::{EntryStream, Manifest, parse_stored, read_header};

fn every_reader(bytes: &[u8]) -> Option<Manifest> {
    let _ = read_header(bytes);
    if let Ok((_, mut stream)) = EntryStream::open(Cursor::new(bytes)) {
        while let Ok(Some(_)) = stream.next_entry() {}
    }
    let _ = serde_json::from_slice::<Manifest>(bytes);
    let m = parse_stored(bytes).ok()?;
    let _ = m.check();
    let _ = m.check_stored();
    Some(m)
}

proptest! {
    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        every_reader(&bytes);
    }

    #[test]
    fn mutated_manifests_and_their_views(
        base in generate::manifest(),
        delta in generate::manifest(),
        spelling in 0usize..3,
        mutations in generate::mutations(),
    ) {
        let bytes = generate::apply(generate::spellings(&delta)[spelling].clone(), &mutations);
        if let Some(delta) = every_reader(&bytes)
            && base.check_stored().is_ok()
            && delta.check_stored().is_ok()
        {
            let (view, _) = build_view(base, vec![delta]);
            let _ = view.check();
        }
    }
}
