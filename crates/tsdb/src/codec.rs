//! Column codecs for segments.
//!
//! - integers: blocks of 128 values, each block stored as frame-of-reference
//!   (`min` as a zig-zag varint, a bit width, then `value - min` bit-packed);
//! - timestamps: delta-of-delta (Gorilla, Pelkonen et al., VLDB 2015), the first value and
//!   the first delta as varints, the rest through the integer codec;
//! - floats: decimal encoding in the spirit of ALP (Afroozeh et al., SIGMOD 2024): when
//!   every value of the column is `m / 10^e` for an integer `m` (checked bit-exactly), the
//!   integers are delta-encoded through the integer codec; otherwise Gorilla XOR coding;
//! - strings: a dictionary of distinct values and bit-packed indices.
//!
//! Decoders never trust their input: every read is bounds-checked and returns `None` on
//! malformed bytes (segments are also checksummed one level up).

const BLOCK: usize = 128;

/// Appends `v` as an LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A bounds-checked reader over a byte slice.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        let mut shift = 0u32;
        loop {
            let b = *self.data.get(self.pos)?;
            self.pos += 1;
            if shift >= 64 {
                return None;
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
            shift += 7;
        }
    }

    pub fn ivarint(&mut self) -> Option<i64> {
        self.varint().map(unzigzag)
    }

    pub fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// A length-prefixed byte string.
    pub fn blob(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.bytes(n)
    }

    pub fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.blob()?).ok()
    }
}

pub fn put_blob(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Writes bits least-significant first.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u128,
    n: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, acc: 0, n: 0 }
    }

    fn write(&mut self, v: u64, bits: u32) {
        if bits == 0 {
            return;
        }
        let v = if bits == 64 {
            v
        } else {
            v & ((1u64 << bits) - 1)
        };
        self.acc |= u128::from(v) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    fn finish(self) {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u128,
    n: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            acc: 0,
            n: 0,
        }
    }

    fn read(&mut self, bits: u32) -> Option<u64> {
        if bits == 0 {
            return Some(0);
        }
        while self.n < bits {
            let b = *self.data.get(self.pos)?;
            self.pos += 1;
            self.acc |= u128::from(b) << self.n;
            self.n += 8;
        }
        let v = if bits == 64 {
            self.acc as u64
        } else {
            (self.acc as u64) & ((1u64 << bits) - 1)
        };
        self.acc >>= bits;
        self.n -= bits;
        Some(v)
    }
}

fn width(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// Encodes signed integers: blocks of 128, frame of reference, bit-packed.
pub fn put_ints(out: &mut Vec<u8>, values: &[i64]) {
    for block in values.chunks(BLOCK) {
        let min = block.iter().copied().min().unwrap_or(0);
        let max = block.iter().copied().max().unwrap_or(0);
        let w = width(max.wrapping_sub(min) as u64);
        put_varint(out, zigzag(min));
        out.push(w as u8);
        let mut bw = BitWriter::new(out);
        for &v in block {
            bw.write(v.wrapping_sub(min) as u64, w);
        }
        bw.finish();
    }
}

/// Decodes `n` integers written by [`put_ints`].
pub fn get_ints(r: &mut Reader<'_>, n: usize, out: &mut Vec<i64>) -> Option<()> {
    out.reserve(n);
    let mut left = n;
    while left > 0 {
        let take = left.min(BLOCK);
        let min = r.ivarint()?;
        let w = u32::from(r.u8()?);
        if w > 64 {
            return None;
        }
        let nbytes = (take * w as usize).div_ceil(8);
        let mut br = BitReader::new(r.bytes(nbytes)?);
        for _ in 0..take {
            out.push(min.wrapping_add(br.read(w)? as i64));
        }
        left -= take;
    }
    Some(())
}

/// Encodes sorted-ish timestamps with delta-of-delta.
pub fn put_times(out: &mut Vec<u8>, ts: &[i64]) {
    let Some(&first) = ts.first() else {
        return;
    };
    put_varint(out, zigzag(first));
    if ts.len() == 1 {
        return;
    }
    let d1 = ts[1].wrapping_sub(ts[0]);
    put_varint(out, zigzag(d1));
    let mut dods = Vec::with_capacity(ts.len().saturating_sub(2));
    let mut prev = d1;
    for w in ts[1..].windows(2) {
        let d = w[1].wrapping_sub(w[0]);
        dods.push(d.wrapping_sub(prev));
        prev = d;
    }
    put_ints(out, &dods);
}

pub fn get_times(r: &mut Reader<'_>, n: usize, out: &mut Vec<i64>) -> Option<()> {
    if n == 0 {
        return Some(());
    }
    let first = r.ivarint()?;
    out.reserve(n);
    out.push(first);
    if n == 1 {
        return Some(());
    }
    let mut d = r.ivarint()?;
    let mut t = first.wrapping_add(d);
    out.push(t);
    let mut dods = Vec::with_capacity(n - 2);
    get_ints(r, n - 2, &mut dods)?;
    for dod in dods {
        d = d.wrapping_add(dod);
        t = t.wrapping_add(d);
        out.push(t);
    }
    Some(())
}

const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];
const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

/// The smallest exponent that represents every value exactly as `m / 10^e`.
fn decimal_exponent(values: &[f64]) -> Option<usize> {
    let mut e = 0usize;
    'values: for &v in values {
        while e < POW10.len() {
            if exact_at(v, e) {
                continue 'values;
            }
            e += 1;
        }
        return None;
    }
    // Values accepted at a smaller exponent stay exact at a larger one; check anyway.
    values.iter().all(|&v| exact_at(v, e)).then_some(e)
}

/// True when `v` is exactly the integer `round(v * 10^e)` divided by `10^e`, decoded the
/// way the decoder will (through the integer, so `-0.0` is refused: it would come back
/// as `+0.0`).
fn exact_at(v: f64, e: usize) -> bool {
    let m = (v * POW10[e]).round();
    m.abs() < MAX_EXACT && ((m as i64) as f64 / POW10[e]).to_bits() == v.to_bits()
}

const FLOAT_DECIMAL: u8 = 1;
const FLOAT_XOR: u8 = 2;

/// Encodes floats: exact decimal + delta + integer codec when possible, else Gorilla XOR.
pub fn put_floats(out: &mut Vec<u8>, values: &[f64]) {
    if values.is_empty() {
        return;
    }
    if let Some(e) = decimal_exponent(values) {
        out.push(FLOAT_DECIMAL);
        out.push(e as u8);
        let ints: Vec<i64> = values
            .iter()
            .map(|v| (v * POW10[e]).round() as i64)
            .collect();
        let mut deltas = Vec::with_capacity(ints.len());
        let mut prev = 0i64;
        for &m in &ints {
            deltas.push(m.wrapping_sub(prev));
            prev = m;
        }
        put_varint(out, zigzag(deltas[0]));
        put_ints(out, &deltas[1..]);
        return;
    }
    out.push(FLOAT_XOR);
    let mut bw = BitWriter::new(out);
    let mut prev = values[0].to_bits();
    bw.write(prev, 64);
    let (mut lead, mut trail) = (u32::MAX, 0u32);
    for v in &values[1..] {
        let bits = v.to_bits();
        let x = bits ^ prev;
        prev = bits;
        if x == 0 {
            bw.write(0, 1);
            continue;
        }
        let l = x.leading_zeros().min(31);
        let t = x.trailing_zeros();
        if lead != u32::MAX && l >= lead && t >= trail {
            bw.write(0b01, 2);
            bw.write(x >> trail, 64 - lead - trail);
        } else {
            lead = l;
            trail = t;
            let meaningful = 64 - l - t;
            bw.write(0b11, 2);
            bw.write(u64::from(l), 5);
            bw.write(u64::from(meaningful - 1), 6);
            bw.write(x >> t, meaningful);
        }
    }
    bw.finish();
}

pub fn get_floats(r: &mut Reader<'_>, n: usize, out: &mut Vec<f64>) -> Option<()> {
    if n == 0 {
        return Some(());
    }
    out.reserve(n);
    match r.u8()? {
        FLOAT_DECIMAL => {
            let e = usize::from(r.u8()?);
            let p = *POW10.get(e)?;
            let mut m = r.ivarint()?;
            out.push(m as f64 / p);
            let mut deltas = Vec::with_capacity(n - 1);
            get_ints(r, n - 1, &mut deltas)?;
            for d in deltas {
                m = m.wrapping_add(d);
                out.push(m as f64 / p);
            }
            Some(())
        }
        FLOAT_XOR => {
            let rest = r.bytes(r.remaining())?;
            let mut br = BitReader::new(rest);
            let mut prev = br.read(64)?;
            out.push(f64::from_bits(prev));
            let (mut lead, mut trail) = (0u32, 0u32);
            for _ in 1..n {
                if br.read(1)? == 0 {
                    out.push(f64::from_bits(prev));
                    continue;
                }
                if br.read(1)? == 1 {
                    lead = br.read(5)? as u32;
                    let meaningful = br.read(6)? as u32 + 1;
                    if lead + meaningful > 64 {
                        return None;
                    }
                    trail = 64 - lead - meaningful;
                }
                let x = br.read(64 - lead - trail)? << trail;
                prev ^= x;
                out.push(f64::from_bits(prev));
            }
            // The XOR stream is the column's last bytes; rewind to what it used.
            let used = br.pos;
            let total = rest.len();
            r.pos -= total - used;
            Some(())
        }
        _ => None,
    }
}

/// Encodes strings as a dictionary and bit-packed indices.
pub fn put_strings(out: &mut Vec<u8>, values: &[&str]) {
    let mut dict: Vec<&str> = Vec::new();
    let mut index: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    let mut ids = Vec::with_capacity(values.len());
    for &v in values {
        let id = *index.entry(v).or_insert_with(|| {
            dict.push(v);
            (dict.len() - 1) as i64
        });
        ids.push(id);
    }
    put_varint(out, dict.len() as u64);
    for d in &dict {
        put_blob(out, d.as_bytes());
    }
    put_ints(out, &ids);
}

pub fn get_strings<'a>(r: &mut Reader<'a>, n: usize) -> Option<Vec<&'a str>> {
    let nd = usize::try_from(r.varint()?).ok()?;
    if nd > r.remaining() {
        return None;
    }
    let mut dict = Vec::with_capacity(nd);
    for _ in 0..nd {
        dict.push(r.str()?);
    }
    let mut ids = Vec::with_capacity(n);
    get_ints(r, n, &mut ids)?;
    ids.into_iter()
        .map(|i| usize::try_from(i).ok().and_then(|i| dict.get(i).copied()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rt_floats(v: &[f64]) -> Vec<f64> {
        let mut buf = Vec::new();
        put_floats(&mut buf, v);
        buf.push(0xAA); // a following column must stay readable
        let mut r = Reader::new(&buf);
        let mut out = Vec::new();
        get_floats(&mut r, v.len(), &mut out).unwrap();
        assert_eq!(r.u8(), Some(0xAA));
        out
    }

    #[test]
    fn decimal_floats_are_compact_and_exact() {
        let v: Vec<f64> = (0..1000).map(|i| 20.0 + f64::from(i % 17) * 0.1).collect();
        let mut buf = Vec::new();
        put_floats(&mut buf, &v);
        assert!(buf.len() < 1000, "{} bytes", buf.len());
        let back = rt_floats(&v);
        for (a, b) in v.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }

    #[test]
    fn negative_zero_survives() {
        let back = rt_floats(&[-0.0, 1.5]);
        assert_eq!(back[0].to_bits(), (-0.0f64).to_bits());
        assert_eq!(back[1], 1.5);
    }

    #[test]
    fn regular_timestamps_cost_almost_nothing() {
        let ts: Vec<i64> = (0..10_000)
            .map(|i| 1_700_000_000_000 + i * 60_000)
            .collect();
        let mut buf = Vec::new();
        put_times(&mut buf, &ts);
        assert!(buf.len() < 300, "{} bytes", buf.len());
        let mut out = Vec::new();
        get_times(&mut Reader::new(&buf), ts.len(), &mut out).unwrap();
        assert_eq!(out, ts);
    }

    proptest! {
        #[test]
        fn ints_round_trip(v in proptest::collection::vec(any::<i64>(), 0..600)) {
            let mut buf = Vec::new();
            put_ints(&mut buf, &v);
            let mut out = Vec::new();
            get_ints(&mut Reader::new(&buf), v.len(), &mut out).unwrap();
            prop_assert_eq!(out, v);
        }

        #[test]
        fn times_round_trip(v in proptest::collection::vec(any::<i64>(), 0..600)) {
            let mut buf = Vec::new();
            put_times(&mut buf, &v);
            let mut out = Vec::new();
            get_times(&mut Reader::new(&buf), v.len(), &mut out).unwrap();
            prop_assert_eq!(out, v);
        }

        #[test]
        fn floats_round_trip_bit_exactly(v in proptest::collection::vec(any::<f64>(), 0..300)) {
            let back = if v.is_empty() { Vec::new() } else { rt_floats(&v) };
            prop_assert_eq!(back.len(), v.len());
            for (a, b) in v.iter().zip(&back) {
                prop_assert_eq!(a.to_bits(), b.to_bits());
            }
        }

        #[test]
        fn strings_round_trip(v in proptest::collection::vec("[a-c]{0,3}", 0..300)) {
            let refs: Vec<&str> = v.iter().map(String::as_str).collect();
            let mut buf = Vec::new();
            put_strings(&mut buf, &refs);
            let out = get_strings(&mut Reader::new(&buf), v.len()).unwrap();
            prop_assert_eq!(out, refs);
        }

        #[test]
        fn decoders_survive_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200), n in 0usize..300) {
            let mut out = Vec::new();
            let _ = get_ints(&mut Reader::new(&bytes), n, &mut out);
            let mut f = Vec::new();
            let _ = get_floats(&mut Reader::new(&bytes), n, &mut f);
            let mut t = Vec::new();
            let _ = get_times(&mut Reader::new(&bytes), n, &mut t);
            let _ = get_strings(&mut Reader::new(&bytes), n);
        }
    }
}
