//! Plain-Rust Erlang terms: what RPC answers are turned into, how they are shown to humans,
//! and what callers pass as RPC arguments.
//!
//! The rest of the agent (and the controller, through the report) should not depend on the
//! wire crate's term types, and an operator reading a report wants `{ok,"ready"}` rather than
//! `{'ok', [114,101,97,100,121]}`: the distribution protocol sends strings as lists of integers,
//! so printable integer lists are shown as strings, exactly as the Erlang shell does.

use std::fmt;

use erl_dist::term::{self as wire, Term};
use serde::{Deserialize, Serialize};

/// An Erlang term decoded from an RPC answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErlValue {
    Atom(String),
    Int(i64),
    /// An integer outside `i64`, as decimal text.
    BigInt(String),
    Float(f64),
    /// A list of printable character codes (an Erlang "string").
    Str(String),
    Binary(Vec<u8>),
    List(Vec<ErlValue>),
    ImproperList(Vec<ErlValue>, Box<ErlValue>),
    Tuple(Vec<ErlValue>),
    /// Entries sorted by their rendering so the text is stable across runs.
    Map(Vec<(ErlValue, ErlValue)>),
    /// Pids, ports, references and funs, already rendered.
    Opaque(String),
}

/// An RPC argument, so callers (backup hooks, lag probes) need no Erlang crate of their own.
#[derive(Clone, Debug, PartialEq)]
pub enum ErlArg {
    Atom(String),
    Int(i64),
    Float(f64),
    /// Sent as a char list (what most Erlang APIs mean by "string").
    Str(String),
    Binary(Vec<u8>),
    List(Vec<ErlArg>),
    Tuple(Vec<ErlArg>),
}

impl ErlArg {
    /// Shorthand for the most common argument kind.
    pub fn atom(name: impl Into<String>) -> ErlArg {
        ErlArg::Atom(name.into())
    }

    /// Encodes for the wire; fails only for a non-finite float, which Erlang cannot represent.
    pub(crate) fn to_term(&self) -> Result<Term, String> {
        Ok(match self {
            ErlArg::Atom(a) => wire::Atom::from(a.as_str()).into(),
            ErlArg::Int(i) => match i32::try_from(*i) {
                Ok(small) => wire::FixInteger::from(small).into(),
                Err(_) => wire::BigInteger::from(*i).into(),
            },
            ErlArg::Float(f) => wire::Float::try_from(*f)
                .map_err(|_| format!("float argument {f} is not finite"))?
                .into(),
            ErlArg::Str(s) => char_list(s),
            ErlArg::Binary(b) => wire::Binary::from(b.clone()).into(),
            ErlArg::List(items) => wire::List::from(
                items
                    .iter()
                    .map(ErlArg::to_term)
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .into(),
            ErlArg::Tuple(items) => wire::Tuple::from(
                items
                    .iter()
                    .map(ErlArg::to_term)
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .into(),
        })
    }
}

/// A string as a list of code points (the wire crate's `From<String>` sends UTF-8 bytes, which
/// Erlang would read as Latin-1).
fn char_list(s: &str) -> Term {
    let codes: Vec<Term> = s
        .chars()
        .map(|c| wire::FixInteger::from(c as i32).into())
        .collect();
    wire::List::from(codes).into()
}

fn printable(code: u32) -> bool {
    matches!(code, 0x20..=0x7e | 0x0a | 0x0d | 0x09 | 0x0b | 0x0c | 0x08 | 0x1b | 0xa0..=0x10ffff)
        && char::from_u32(code).is_some()
}

impl From<&Term> for ErlValue {
    fn from(term: &Term) -> ErlValue {
        match term {
            Term::Atom(a) => ErlValue::Atom(a.name.clone()),
            Term::FixInteger(i) => ErlValue::Int(i64::from(i.value)),
            Term::BigInteger(b) => {
                let text = b.value.to_string();
                text.parse().map_or(ErlValue::BigInt(text), ErlValue::Int)
            }
            Term::Float(f) => ErlValue::Float(f.value),
            Term::Binary(b) => ErlValue::Binary(b.bytes.clone()),
            Term::BitBinary(b) => ErlValue::Opaque(b.to_string()),
            Term::ByteList(b) => {
                if b.bytes.iter().all(|&c| printable(u32::from(c))) {
                    ErlValue::Str(b.bytes.iter().map(|&c| char::from(c)).collect())
                } else {
                    ErlValue::List(b.bytes.iter().map(|&c| ErlValue::Int(c.into())).collect())
                }
            }
            Term::List(l) => list_value(&l.elements),
            Term::ImproperList(l) => ErlValue::ImproperList(
                l.elements.iter().map(ErlValue::from).collect(),
                Box::new(ErlValue::from(&*l.last)),
            ),
            Term::Tuple(t) => ErlValue::Tuple(t.elements.iter().map(ErlValue::from).collect()),
            Term::Map(m) => {
                let mut entries: Vec<(ErlValue, ErlValue)> = m
                    .map
                    .iter()
                    .map(|(k, v)| (ErlValue::from(k), ErlValue::from(v)))
                    .collect();
                entries.sort_by_cached_key(|(k, _)| k.to_string());
                ErlValue::Map(entries)
            }
            Term::Pid(p) => ErlValue::Opaque(format!("<{}.{}.{}>", p.node.name, p.id, p.serial)),
            Term::Port(p) => ErlValue::Opaque(p.to_string()),
            Term::Reference(r) => ErlValue::Opaque(r.to_string()),
            Term::ExternalFun(f) => ErlValue::Opaque(f.to_string()),
            Term::InternalFun(_) => ErlValue::Opaque("#Fun<...>".into()),
        }
    }
}

fn list_value(elements: &[Term]) -> ErlValue {
    let codes: Option<String> = if elements.is_empty() {
        None
    } else {
        elements
            .iter()
            .map(|t| match t {
                Term::FixInteger(i) if i.value >= 0 && printable(i.value as u32) => {
                    char::from_u32(i.value as u32)
                }
                _ => None,
            })
            .collect()
    };
    match codes {
        Some(s) => ErlValue::Str(s),
        None => ErlValue::List(elements.iter().map(ErlValue::from).collect()),
    }
}

impl ErlValue {
    /// The value as a number, if it is one (integers, big integers and floats).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ErlValue::Int(i) => Some(*i as f64),
            ErlValue::BigInt(s) => s.parse().ok(),
            ErlValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The text of an atom, string or UTF-8 binary, so map keys match however they were written.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            ErlValue::Atom(s) | ErlValue::Str(s) => Some(s),
            ErlValue::Binary(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Looks a key up in a map or a proplist (`[{Key, Value}]`); keys compare as text.
    pub fn get(&self, key: &str) -> Option<&ErlValue> {
        match self {
            ErlValue::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_text() == Some(key))
                .map(|(_, v)| v),
            ErlValue::List(items) => items.iter().find_map(|item| match item {
                ErlValue::Tuple(kv) if kv.len() == 2 && kv[0].as_text() == Some(key) => {
                    Some(&kv[1])
                }
                _ => None,
            }),
            _ => None,
        }
    }
}

/// Replication lag in milliseconds from a replicator status: a map or proplist with `lag_ms`
/// (preferred) or `lag` (taken as milliseconds), possibly wrapped in `{ok, Status}`. `None` when
/// the status carries no such number: the caller then knows lag is *unknown*, not zero.
pub fn replication_lag_ms(status: &ErlValue) -> Option<f64> {
    if let ErlValue::Tuple(items) = status
        && items.len() == 2
        && items[0] == ErlValue::Atom("ok".into())
    {
        return replication_lag_ms(&items[1]);
    }
    ["lag_ms", "lag"]
        .iter()
        .find_map(|key| status.get(key).and_then(ErlValue::as_f64))
}

fn write_atom(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    let mut chars = name.chars();
    let bare = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@');
    if bare {
        f.write_str(name)
    } else {
        write!(f, "'{}'", name.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

fn write_seq(f: &mut fmt::Formatter<'_>, items: &[ErlValue]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// Renders as the Erlang shell would print the term (close enough for a human reading a report).
impl fmt::Display for ErlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErlValue::Atom(a) => write_atom(f, a),
            ErlValue::Int(i) => write!(f, "{i}"),
            ErlValue::BigInt(s) | ErlValue::Opaque(s) => f.write_str(s),
            ErlValue::Float(x) => write!(f, "{x:?}"),
            ErlValue::Str(s) => write!(f, "{s:?}"),
            ErlValue::Binary(b) => match std::str::from_utf8(b) {
                Ok(s) if s.chars().all(|c| printable(c as u32)) => write!(f, "<<{s:?}>>"),
                _ => {
                    f.write_str("<<")?;
                    for (i, byte) in b.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{byte}")?;
                    }
                    f.write_str(">>")
                }
            },
            ErlValue::List(items) => {
                f.write_str("[")?;
                write_seq(f, items)?;
                f.write_str("]")
            }
            ErlValue::ImproperList(items, tail) => {
                f.write_str("[")?;
                write_seq(f, items)?;
                write!(f, "|{tail}]")
            }
            ErlValue::Tuple(items) => {
                f.write_str("{")?;
                write_seq(f, items)?;
                f.write_str("}")
            }
            ErlValue::Map(entries) => {
                f.write_str("#{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{k} => {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn atom(s: &str) -> Term {
        wire::Atom::from(s).into()
    }
    fn int(i: i32) -> Term {
        wire::FixInteger::from(i).into()
    }

    #[test]
    fn renders_atoms_tuples_lists_and_char_lists_like_the_shell() {
        // The wire crate sends a Rust String as STRING_EXT, as Erlang does for short char lists.
        let ready = Term::from(String::from("ready"));
        let t: Term = wire::Tuple::from(vec![atom("ok"), ready]).into();
        assert_eq!(ErlValue::from(&t).to_string(), r#"{ok,"ready"}"#);

        let unicode = char_list("héllo ✓");
        assert_eq!(ErlValue::from(&unicode).to_string(), r#""héllo ✓""#);

        let numbers: Term = wire::List::from(vec![int(1), int(2), int(300)]).into();
        assert_eq!(ErlValue::from(&numbers).to_string(), "[1,2,300]");
        let nil: Term = wire::List::nil().into();
        assert_eq!(ErlValue::from(&nil).to_string(), "[]");
        assert_eq!(
            ErlValue::from(&atom("Quoted Atom")).to_string(),
            "'Quoted Atom'"
        );
        let bin: Term = wire::Binary::from(b"node2".to_vec()).into();
        assert_eq!(ErlValue::from(&bin).to_string(), r#"<<"node2">>"#);
        let raw: Term = wire::Binary::from(vec![0u8, 255]).into();
        assert_eq!(ErlValue::from(&raw).to_string(), "<<0,255>>");
    }

    #[test]
    fn maps_render_sorted_and_lag_is_found_in_maps_and_proplists() {
        let mut map = HashMap::new();
        map.insert(atom("status"), atom("ok"));
        map.insert(atom("lag_ms"), int(12));
        let m: Term = wire::Map::from(map).into();
        let value = ErlValue::from(&m);
        assert_eq!(value.to_string(), "#{lag_ms => 12,status => ok}");
        assert_eq!(replication_lag_ms(&value), Some(12.0));

        let proplist = ErlValue::List(vec![
            ErlValue::Tuple(vec![
                ErlValue::Atom("mode".into()),
                ErlValue::Atom("a".into()),
            ]),
            ErlValue::Tuple(vec![ErlValue::Atom("lag".into()), ErlValue::Float(1.5)]),
        ]);
        assert_eq!(replication_lag_ms(&proplist), Some(1.5));
        let wrapped = ErlValue::Tuple(vec![ErlValue::Atom("ok".into()), proplist]);
        assert_eq!(replication_lag_ms(&wrapped), Some(1.5));
        assert_eq!(replication_lag_ms(&ErlValue::Atom("ok".into())), None);
    }

    #[test]
    fn args_encode_strings_as_code_points_and_big_ints() {
        let t = ErlArg::Str("é".into()).to_term().unwrap();
        assert_eq!(ErlValue::from(&t), ErlValue::Str("é".into()));
        let big = ErlArg::Int(i64::MAX).to_term().unwrap();
        assert_eq!(ErlValue::from(&big), ErlValue::Int(i64::MAX));
        assert!(ErlArg::Float(f64::NAN).to_term().is_err());
    }
}
