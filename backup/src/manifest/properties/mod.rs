//! Property tests of the manifest readers (inside the crate: the fast reader is private).
//! `PROPTEST_CASES` sets the number of cases per property (default 256; see tests/README.md).

mod fast_reader_agrees_with_serde;
mod generate;
mod hostile_bytes_never_panic;
