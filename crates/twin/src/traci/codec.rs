//! The TraCI wire format (SUMO's "TraCI protocol" documentation): big-endian, a message
//! is a 4-byte length (itself included) followed by commands; a command is
//! `[len: u8][id: u8][content]`, or `[0][len: i32][id][content]` when longer than 255
//! bytes, the length counting itself. Values are typed: a type byte, then the value.
//!
//! Decoding never trusts a length: every read is bounds-checked and a bad message is a
//! [`CodecError`], never a panic (fuzzed by `fuzz/fuzz_targets/traci_codec.rs`).

use std::fmt;

pub const TYPE_POSITION_2D: u8 = 0x01;
pub const TYPE_POSITION_LON_LAT: u8 = 0x00;
pub const TYPE_POSITION_3D: u8 = 0x03;
pub const TYPE_ROAD_MAP_POSITION: u8 = 0x04;
pub const TYPE_POLYGON: u8 = 0x06;
pub const TYPE_UBYTE: u8 = 0x07;
pub const TYPE_BYTE: u8 = 0x08;
pub const TYPE_INTEGER: u8 = 0x09;
pub const TYPE_DOUBLE: u8 = 0x0B;
pub const TYPE_STRING: u8 = 0x0C;
pub const TYPE_STRINGLIST: u8 = 0x0E;
pub const TYPE_COMPOUND: u8 = 0x0F;
pub const TYPE_DOUBLELIST: u8 = 0x10;
pub const TYPE_COLOR: u8 = 0x11;

/// Largest message accepted from the simulator (a complete network's worth of
/// subscription results is a few MB; this bounds a corrupt length).
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;
/// Largest element count of one list, so a corrupt count cannot reserve gigabytes.
const MAX_ITEMS: usize = 16 * 1024 * 1024;
/// Compounds nest (a traffic light's logics hold phases hold successor lists); deeper
/// than this is not TraCI.
const MAX_DEPTH: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("message truncated: needed {needed} more bytes at offset {at}")]
    Truncated { at: usize, needed: usize },
    #[error("unknown value type 0x{0:02x}")]
    UnknownType(u8),
    #[error("expected {expected}, found type 0x{found:02x}")]
    Unexpected { expected: &'static str, found: u8 },
    #[error("bad length {0}")]
    BadLength(i64),
    #[error("string is not UTF-8")]
    NotUtf8,
    #[error("compound nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// A typed TraCI value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    UByte(u8),
    Byte(i8),
    Int(i32),
    Double(f64),
    Str(String),
    StrList(Vec<String>),
    DoubleList(Vec<f64>),
    Compound(Vec<Value>),
    Pos2D(f64, f64),
    Pos3D(f64, f64, f64),
    LonLat(f64, f64),
    RoadMap(String, f64, u8),
    Polygon(Vec<(f64, f64)>),
    Color([u8; 4]),
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Double(v) => Some(*v),
            Value::Int(v) => Some(f64::from(*v)),
            Value::UByte(v) => Some(f64::from(*v)),
            Value::Byte(v) => Some(f64::from(*v)),
            _ => None,
        }
    }
    pub fn as_i32(&self) -> Option<i32> {
        match self {
            Value::Int(v) => Some(*v),
            Value::UByte(v) => Some(i32::from(*v)),
            Value::Byte(v) => Some(i32::from(*v)),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_list(&self) -> Option<&[String]> {
        match self {
            Value::StrList(l) => Some(l),
            _ => None,
        }
    }
    pub fn as_compound(&self) -> Option<&[Value]> {
        match self {
            Value::Compound(items) => Some(items),
            _ => None,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Value::UByte(_) => "ubyte",
            Value::Byte(_) => "byte",
            Value::Int(_) => "integer",
            Value::Double(_) => "double",
            Value::Str(_) => "string",
            Value::StrList(_) => "string list",
            Value::DoubleList(_) => "double list",
            Value::Compound(_) => "compound",
            Value::Pos2D(..) => "2D position",
            Value::Pos3D(..) => "3D position",
            Value::LonLat(..) => "lon/lat position",
            Value::RoadMap(..) => "road map position",
            Value::Polygon(_) => "polygon",
            Value::Color(_) => "color",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.kind(), self)
    }
}

/// Bounds-checked reader over one message.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn position(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.remaining() < n {
            return Err(CodecError::Truncated {
                at: self.pos,
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    pub fn f64(&mut self) -> Result<f64, CodecError> {
        Ok(f64::from_be_bytes(self.array()?))
    }
    /// A count or length: non-negative and not absurd.
    fn count(&mut self) -> Result<usize, CodecError> {
        let n = self.i32()?;
        let n = usize::try_from(n).map_err(|_| CodecError::BadLength(i64::from(n)))?;
        if n > MAX_ITEMS {
            return Err(CodecError::BadLength(n as i64));
        }
        Ok(n)
    }
    pub fn string(&mut self) -> Result<String, CodecError> {
        let n = self.count()?;
        let raw = self.bytes(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| CodecError::NotUtf8)
    }
    pub fn string_list(&mut self) -> Result<Vec<String>, CodecError> {
        let n = self.count()?;
        // Each string needs at least its 4-byte length.
        let mut out = Vec::with_capacity(n.min(self.remaining() / 4));
        for _ in 0..n {
            out.push(self.string()?);
        }
        Ok(out)
    }
    /// A typed value: the type byte, then the value.
    pub fn value(&mut self) -> Result<Value, CodecError> {
        self.value_at(0)
    }
    fn value_at(&mut self, depth: usize) -> Result<Value, CodecError> {
        let ty = self.u8()?;
        self.untyped(ty, depth)
    }
    fn untyped(&mut self, ty: u8, depth: usize) -> Result<Value, CodecError> {
        Ok(match ty {
            TYPE_UBYTE => Value::UByte(self.u8()?),
            TYPE_BYTE => Value::Byte(i8::from_be_bytes([self.u8()?])),
            TYPE_INTEGER => Value::Int(self.i32()?),
            TYPE_DOUBLE => Value::Double(self.f64()?),
            TYPE_STRING => Value::Str(self.string()?),
            TYPE_STRINGLIST => Value::StrList(self.string_list()?),
            TYPE_DOUBLELIST => {
                let n = self.count()?;
                let mut out = Vec::with_capacity(n.min(self.remaining() / 8));
                for _ in 0..n {
                    out.push(self.f64()?);
                }
                Value::DoubleList(out)
            }
            TYPE_COMPOUND => {
                if depth >= MAX_DEPTH {
                    return Err(CodecError::TooDeep);
                }
                let n = self.count()?;
                let mut out = Vec::with_capacity(n.min(self.remaining()));
                for _ in 0..n {
                    out.push(self.value_at(depth + 1)?);
                }
                Value::Compound(out)
            }
            TYPE_POSITION_2D => Value::Pos2D(self.f64()?, self.f64()?),
            TYPE_POSITION_LON_LAT => Value::LonLat(self.f64()?, self.f64()?),
            TYPE_POSITION_3D => Value::Pos3D(self.f64()?, self.f64()?, self.f64()?),
            TYPE_ROAD_MAP_POSITION => Value::RoadMap(self.string()?, self.f64()?, self.u8()?),
            TYPE_POLYGON => {
                let mut n = usize::from(self.u8()?);
                if n == 0 {
                    n = self.count()?;
                }
                let mut out = Vec::with_capacity(n.min(self.remaining() / 16));
                for _ in 0..n {
                    out.push((self.f64()?, self.f64()?));
                }
                Value::Polygon(out)
            }
            TYPE_COLOR => Value::Color(self.array()?),
            other => return Err(CodecError::UnknownType(other)),
        })
    }
    /// One command: its id and a reader over its content.
    pub fn command(&mut self) -> Result<(u8, Reader<'a>), CodecError> {
        let start = self.pos;
        let short = self.u8()?;
        let (len, header) = if short > 0 {
            (usize::from(short), 1)
        } else {
            let long = self.i32()?;
            let len = usize::try_from(long).map_err(|_| CodecError::BadLength(i64::from(long)))?;
            (len, 5)
        };
        // The length counts its own bytes and the id.
        if len < header + 1 {
            return Err(CodecError::BadLength(len as i64));
        }
        let id = self.u8()?;
        let content = self.bytes(len - header - 1).map_err(|e| match e {
            CodecError::Truncated { needed, .. } => CodecError::Truncated { at: start, needed },
            other => other,
        })?;
        Ok((id, Reader::new(content)))
    }
}

/// Builds one outgoing message.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }
    /// Appends one command with its length prefix.
    pub fn command(&mut self, id: u8, content: &Content) {
        let len = content.0.len() + 2;
        if len <= 255 {
            self.buf.push(len as u8);
        } else {
            self.buf.push(0);
            self.buf
                .extend_from_slice(&((len + 4) as i32).to_be_bytes());
        }
        self.buf.push(id);
        self.buf.extend_from_slice(&content.0);
    }
    /// The framed message: total length (4 bytes, itself included), then the commands.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len() + 4);
        out.extend_from_slice(&((self.buf.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(&self.buf);
        out
    }
}

/// A command's content, built field by field.
#[derive(Default, Clone)]
pub struct Content(pub Vec<u8>);

impl Content {
    pub fn new() -> Self {
        Content::default()
    }
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn f64(mut self, v: f64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn string(mut self, s: &str) -> Self {
        self.0.extend_from_slice(&(s.len() as i32).to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// A typed value.
    pub fn value(mut self, v: &Value) -> Self {
        match v {
            Value::UByte(b) => self.u8(TYPE_UBYTE).u8(*b),
            Value::Byte(b) => self.u8(TYPE_BYTE).u8(b.to_be_bytes()[0]),
            Value::Int(i) => self.u8(TYPE_INTEGER).i32(*i),
            Value::Double(d) => self.u8(TYPE_DOUBLE).f64(*d),
            Value::Str(s) => self.u8(TYPE_STRING).string(s),
            Value::StrList(l) => {
                self = self.u8(TYPE_STRINGLIST).i32(l.len() as i32);
                for s in l {
                    self = self.string(s);
                }
                self
            }
            Value::DoubleList(l) => {
                self = self.u8(TYPE_DOUBLELIST).i32(l.len() as i32);
                for d in l {
                    self = self.f64(*d);
                }
                self
            }
            Value::Compound(items) => {
                self = self.u8(TYPE_COMPOUND).i32(items.len() as i32);
                for item in items {
                    self = self.value(item);
                }
                self
            }
            Value::Pos2D(x, y) => self.u8(TYPE_POSITION_2D).f64(*x).f64(*y),
            Value::LonLat(x, y) => self.u8(TYPE_POSITION_LON_LAT).f64(*x).f64(*y),
            Value::Pos3D(x, y, z) => self.u8(TYPE_POSITION_3D).f64(*x).f64(*y).f64(*z),
            Value::RoadMap(r, p, l) => self.u8(TYPE_ROAD_MAP_POSITION).string(r).f64(*p).u8(*l),
            Value::Polygon(points) => {
                self = self.u8(TYPE_POLYGON);
                // A count byte of 0 announces the long form, so an empty polygon
                // takes the long form too.
                if (1..=255).contains(&points.len()) {
                    self = self.u8(points.len() as u8);
                } else {
                    self = self.u8(0).i32(points.len() as i32);
                }
                for (x, y) in points {
                    self = self.f64(*x).f64(*y);
                }
                self
            }
            Value::Color(c) => {
                self.0.push(TYPE_COLOR);
                self.0.extend_from_slice(c);
                self
            }
        }
    }
}

/// The status part of a response: every command is answered by one.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub command: u8,
    pub result: u8,
    pub description: String,
}

pub const RTYPE_OK: u8 = 0x00;

/// Reads one status command.
pub fn status(r: &mut Reader<'_>) -> Result<Status, CodecError> {
    let (command, mut content) = r.command()?;
    let result = content.u8()?;
    let description = content.string()?;
    Ok(Status {
        command,
        result,
        description,
    })
}

/// One variable subscription result: an object's values of the subscribed variables.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionResult {
    /// The response id (0xe0 + domain).
    pub response: u8,
    pub object: String,
    /// (variable, value); a variable SUMO could not read comes as `Err(message)`.
    pub values: Vec<(u8, Result<Value, String>)>,
}

/// Reads one variable-subscription response command (0xe0..0xef, 0xf0..).
pub fn subscription_result(r: &mut Reader<'_>) -> Result<SubscriptionResult, CodecError> {
    let (response, mut c) = r.command()?;
    let object = c.string()?;
    let n = usize::from(c.u8()?);
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        let var = c.u8()?;
        let status = c.u8()?;
        if status == RTYPE_OK {
            values.push((var, Ok(c.value()?)));
        } else {
            let message = match c.value()? {
                Value::Str(s) => s,
                other => other.to_string(),
            };
            values.push((var, Err(message)));
        }
    }
    Ok(SubscriptionResult {
        response,
        object,
        values,
    })
}

/// The body of a simulationStep answer after its status: the subscription results.
pub fn step_results(r: &mut Reader<'_>) -> Result<Vec<SubscriptionResult>, CodecError> {
    let n = r.count()?;
    let mut out = Vec::with_capacity(n.min(r.remaining() / 8));
    for _ in 0..n {
        out.push(subscription_result(r)?);
    }
    Ok(out)
}

/// A get command's answer after its status: `[response id][variable][object][value]`.
pub fn get_result(r: &mut Reader<'_>) -> Result<(u8, u8, String, Value), CodecError> {
    let (response, mut c) = r.command()?;
    let var = c.u8()?;
    let object = c.string()?;
    let value = c.value()?;
    Ok((response, var, object, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(v: Value) {
        let c = Content::new().value(&v);
        let mut r = Reader::new(&c.0);
        assert_eq!(r.value().unwrap(), v);
        assert!(r.is_empty());
    }

    #[test]
    fn values_roundtrip() {
        roundtrip(Value::Int(-7));
        roundtrip(Value::Double(12.5));
        roundtrip(Value::Str("lane_0".into()));
        roundtrip(Value::StrList(vec!["a".into(), String::new(), "ü".into()]));
        roundtrip(Value::Compound(vec![
            Value::Int(1),
            Value::Compound(vec![Value::Str("x".into()), Value::Double(1.0)]),
        ]));
        roundtrip(Value::Polygon(vec![(0.0, 1.0); 300]));
        roundtrip(Value::Polygon(vec![(0.0, 1.0), (2.0, 3.0)]));
        roundtrip(Value::Polygon(Vec::new()));
        roundtrip(Value::Color([1, 2, 3, 4]));
        roundtrip(Value::Byte(-3));
        roundtrip(Value::DoubleList(vec![1.0, -2.0]));
    }

    #[test]
    fn long_commands_use_the_extended_length() {
        let content = Content::new().string(&"x".repeat(300));
        let mut w = Writer::new();
        w.command(0xa2, &content);
        w.command(0x02, &Content::new().f64(0.0));
        let msg = w.finish();
        assert_eq!(
            i32::from_be_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize,
            msg.len()
        );
        let mut r = Reader::new(&msg[4..]);
        let (id, mut c) = r.command().unwrap();
        assert_eq!(id, 0xa2);
        assert_eq!(c.string().unwrap().len(), 300);
        let (id, mut c) = r.command().unwrap();
        assert_eq!(id, 0x02);
        assert_eq!(c.f64().unwrap(), 0.0);
        assert!(r.is_empty());
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        assert!(matches!(
            Reader::new(&[TYPE_STRING, 0, 0, 0, 9, b'a']).value(),
            Err(CodecError::Truncated { .. })
        ));
        assert!(matches!(
            Reader::new(&[TYPE_STRINGLIST, 0xff, 0xff, 0xff, 0xff]).value(),
            Err(CodecError::BadLength(_))
        ));
        assert!(matches!(
            Reader::new(&[0x42]).value(),
            Err(CodecError::UnknownType(0x42))
        ));
        assert!(Reader::new(&[1]).command().is_err());
        assert!(Reader::new(&[0, 0, 0, 0, 2, 9]).command().is_err());
        let deep: Vec<u8> = (0..40).flat_map(|_| [TYPE_COMPOUND, 0, 0, 0, 1]).collect();
        assert_eq!(Reader::new(&deep).value(), Err(CodecError::TooDeep));
    }

    #[test]
    fn step_answer_with_subscriptions() {
        // status, then one induction loop result with two variables.
        let mut w = Writer::new();
        w.command(0x02, &Content::new().u8(0).string(""));
        let msg = w.finish();
        let mut body = msg[4..].to_vec();
        body.extend_from_slice(&1i32.to_be_bytes());
        let sub = Content::new()
            .string("det_0")
            .u8(2)
            .u8(0x10)
            .u8(0)
            .value(&Value::Int(3))
            .u8(0x11)
            .u8(0xff)
            .value(&Value::Str("no such".into()));
        let mut w = Writer::new();
        w.command(0xe0, &sub);
        body.extend_from_slice(&w.finish()[4..]);
        let mut r = Reader::new(&body);
        let st = status(&mut r).unwrap();
        assert_eq!((st.command, st.result), (0x02, 0));
        let subs = step_results(&mut r).unwrap();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].object, "det_0");
        assert_eq!(subs[0].values[0], (0x10, Ok(Value::Int(3))));
        assert_eq!(subs[0].values[1], (0x11, Err("no such".into())));
    }
}
