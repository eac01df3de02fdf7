//! Generators shared by the protocol property tests.
#![allow(dead_code)]

pub mod domain;
pub mod wire;
