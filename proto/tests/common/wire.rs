//! Protobuf input as a hostile peer could send it: raw field records (any field number, any wire
//! type, nested to any depth), valid messages with bytes flipped, inserted, removed or cut off,
//! and arbitrary bytes. Built on the wire format itself, so one generator reaches every message.

use proptest::prelude::*;

/// One value as it travels on the wire.
#[derive(Debug, Clone)]
pub enum Value {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// Length-delimited: strings, bytes, packed repeated fields.
    Bytes(Vec<u8>),
    /// Length-delimited holding a nested message.
    Message(Vec<Field>),
}

#[derive(Debug, Clone)]
pub struct Field {
    pub number: u32,
    pub value: Value,
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The records in wire order (a field repeated is merged or appended by the decoder, last wins
/// for scalars, which is itself worth exercising).
pub fn encode(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        let (wire_type, body): (u64, Vec<u8>) = match &f.value {
            Value::Varint(v) => {
                let mut b = Vec::new();
                varint(*v, &mut b);
                (0, b)
            }
            Value::Fixed64(v) => (1, v.to_le_bytes().to_vec()),
            Value::Fixed32(v) => (5, v.to_le_bytes().to_vec()),
            Value::Bytes(b) => {
                let mut l = Vec::new();
                varint(b.len() as u64, &mut l);
                l.extend_from_slice(b);
                (2, l)
            }
            Value::Message(m) => {
                let inner = encode(m);
                let mut l = Vec::new();
                varint(inner.len() as u64, &mut l);
                l.extend_from_slice(&inner);
                (2, l)
            }
        };
        varint((u64::from(f.number) << 3) | wire_type, &mut out);
        out.extend_from_slice(&body);
    }
    out
}

/// Integers where validators draw lines: zero, one, the edges of every width, negative enums.
fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..8,
        1 => Just(99u64),
        1 => Just(100u64),
        1 => Just(599u64),
        1 => Just(600u64),
        1 => Just(u64::from(u16::MAX)),
        1 => Just(u64::from(u16::MAX) + 1),
        1 => Just(u64::from(u32::MAX)),
        1 => Just(u64::MAX),
        1 => Just((-1i64) as u64),
        2 => any::<u64>(),
    ]
}

/// Byte strings: readable words and names (so name validators sometimes pass), backup ids,
/// incident enum words, raw bytes, invalid UTF-8, and long ones around the length limits.
fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[a-z0-9][a-z0-9._-]{0,12}".prop_map(String::into_bytes),
        1 => Just(b"full-2026-01-27T13:45:30Z".to_vec()),
        1 => Just(b"process_crash".to_vec()),
        1 => Just(b"open".to_vec()),
        1 => Just(b"failover".to_vec()),
        1 => Just(b"detected".to_vec()),
        2 => proptest::collection::vec(any::<u8>(), 0..24),
        1 => Just(vec![0xff, 0xfe, b'a']),
        1 => (60usize..70).prop_map(|n| vec![b'a'; n]),
        1 => prop_oneof![Just(128usize), Just(129), Just(4096), Just(4097), Just(262_145)]
            .prop_map(|n| vec![b'x'; n]),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => interesting_u64().prop_map(Value::Varint),
        1 => any::<u64>().prop_map(Value::Fixed64),
        1 => prop_oneof![
            Just(f64::NAN.to_bits()),
            Just(f64::INFINITY.to_bits()),
            Just((-1.0f64).to_bits()),
            Just(1.5f64.to_bits()),
        ]
        .prop_map(Value::Fixed64),
        1 => any::<u32>().prop_map(Value::Fixed32),
        4 => interesting_bytes().prop_map(Value::Bytes),
    ]
}

/// Field numbers in use by our messages are 1..=21; a few beyond are unknown fields.
fn field_number() -> impl Strategy<Value = u32> {
    prop_oneof![10 => 1u32..=21, 1 => 22u32..1000, 1 => Just((1u32 << 29) - 1)]
}

/// A list of field records, nested up to a few levels.
pub fn fields() -> impl Strategy<Value = Vec<Field>> {
    let value = leaf().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            3 => inner,
            2 => proptest::collection::vec((field_number(), leaf()), 0..8).prop_map(|fs| {
                Value::Message(
                    fs.into_iter()
                        .map(|(number, value)| Field { number, value })
                        .collect(),
                )
            }),
        ]
    });
    proptest::collection::vec((field_number(), value), 0..12).prop_map(|fs| {
        fs.into_iter()
            .map(|(number, value)| Field { number, value })
            .collect()
    })
}

/// One change to an encoded message.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    /// Appends raw records: overrides scalars, merges into sub-messages, adds repeated items.
    Append(Vec<u8>),
}

pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        2 => (any::<usize>(), prop_oneof![Just(0u8), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()])
            .prop_map(|(at, byte)| Mutation::Set { at, byte }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<usize>(), 1usize..8).prop_map(|(at, len)| Mutation::Remove { at, len }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        2 => fields().prop_map(|f| Mutation::Append(encode(&f))),
    ];
    proptest::collection::vec(one, 1..6)
}

pub fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = bytes.len();
        match m {
            Mutation::Flip { at, bit } if n > 0 => bytes[at % n] ^= 1 << bit,
            Mutation::Set { at, byte } if n > 0 => bytes[at % n] = *byte,
            Mutation::Insert { at, bytes: b } => {
                let at = at % (n + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Remove { at, len } if n > 0 => {
                let at = at % n;
                bytes.drain(at..(at + len).min(n));
            }
            Mutation::Truncate { at } => bytes.truncate(at % (n + 1)),
            Mutation::Append(b) => bytes.extend_from_slice(b),
            _ => {}
        }
    }
    bytes
}
