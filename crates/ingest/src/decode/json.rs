//! Streaming JSON: walks the document with serde, descending only along the record
//! selector and skipping everything else, so a file of millions of records never sits
//! in memory whole; each record is materialised on its own.

use std::fmt;
use std::io::BufRead;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer as _;

use super::{Item, Owned};
use crate::record::{node, Node, Seg};
use crate::reject::{Reason, Reject};

/// Streams a reader (files: constant memory).
pub(super) fn stream<R: BufRead>(
    input: R,
    segs: &[Seg],
    f: &mut dyn FnMut(Item),
) -> Result<(), Reject> {
    walk(serde_json::Deserializer::from_reader(input), segs, f)
}

/// The same over a payload already in memory (MQTT, HTTP): serde_json reads a slice
/// several times faster than a reader.
pub(super) fn stream_slice(
    input: &[u8],
    segs: &[Seg],
    f: &mut dyn FnMut(Item),
) -> Result<(), Reject> {
    walk(serde_json::Deserializer::from_slice(input), segs, f)
}

fn walk<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
    segs: &[Seg],
    f: &mut dyn FnMut(Item),
) -> Result<(), Reject> {
    let nav = Nav { segs, f };
    let res = (&mut de).deserialize_any(nav).and_then(|_| de.end());
    res.map_err(|e| {
        let reason = if e.to_string().contains("unicode") || e.to_string().contains("UTF-8") {
            Reason::Encoding
        } else {
            Reason::Decode
        };
        Reject::new(reason, format!("JSON: {e}"))
    })
}

struct Nav<'a, 'f> {
    segs: &'a [Seg],
    f: &'a mut (dyn FnMut(Item) + 'f),
}

impl<'de> DeserializeSeed<'de> for Nav<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Nav<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.segs.split_first() {
            None => {
                // The selector ends on an object: it is one record.
                let v = node::object(map)?;
                (self.f)(Item::Record(Owned::Json(v)));
                Ok(())
            }
            Some((seg, rest)) => {
                while let Some(k) = map.next_key::<String>()? {
                    let hit = match seg {
                        Seg::Key(want) => *want == k,
                        Seg::Any => true,
                        Seg::Index(i) => k.parse::<usize>().ok() == Some(*i),
                    };
                    if hit {
                        map.next_value_seed(Nav {
                            segs: rest,
                            f: &mut *self.f,
                        })?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(())
            }
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        match self.segs.split_first() {
            None => {
                // An array where the selector ends: each element is a record.
                while let Some(v) = seq.next_element::<Node>()? {
                    (self.f)(Item::Record(Owned::Json(v)));
                }
                Ok(())
            }
            Some((seg, rest)) => {
                let mut i = 0usize;
                loop {
                    let hit = match seg {
                        Seg::Any => true,
                        Seg::Index(want) => *want == i,
                        Seg::Key(k) => k.parse::<usize>().ok() == Some(i),
                    };
                    let more = if hit {
                        seq.next_element_seed(Nav {
                            segs: rest,
                            f: &mut *self.f,
                        })?
                        .is_some()
                    } else {
                        seq.next_element::<IgnoredAny>()?.is_some()
                    };
                    if !more {
                        return Ok(());
                    }
                    i += 1;
                }
            }
        }
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.scalar(Node::Bool(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.scalar(Node::Number(v.into()));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.scalar(Node::Number(v.into()));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.scalar(serde_json::Number::from_f64(v).map_or(Node::Null, Node::Number));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.scalar(Node::String(v.to_string()));
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

impl Nav<'_, '_> {
    /// A scalar where the selector ends is a (degenerate) record; the mapping will
    /// reject it for its missing fields, which is the useful message.
    fn scalar(self, v: Node) {
        if self.segs.is_empty() {
            (self.f)(Item::Record(Owned::Json(v)));
        }
    }
}
