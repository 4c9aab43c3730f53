//! The binary encoding of [`HistOp`]s inside the store's write-ahead log.
//!
//! ```text
//! ops    = n:varint op*
//! op     = 1 key n:varint point*                      (Insert; t and rec delta-coded)
//!        | 2 tenant entity n:varint type* opt(scope)  (EntityMeta)
//!        | 3 tenant entity                            (DeleteEntity)
//!        | 4 tenant entity attr sel                   (DeleteAttr; sel 0 all, 1 default, 2 str)
//!        | 5 key rec:ivarint                          (DeleteInstance)
//!        | 6 key point                                (ReplaceInstance)
//! key    = tenant entity attr opt(dataset)
//! point  = dt:ivarint drec:ivarint flags:u8 [unit] value
//! flags  = observed | kind << 1 (0 f64 as 8 bytes LE, 1 ivarint, 2 string) | has_unit << 3
//! str    = len:varint bytes ; opt(x) = 0 | 1 x
//! ```

use std::sync::Arc;

use crate::codec::{put_blob, put_varint, zigzag, Reader};
use crate::point::{DatasetSel, HistOp, Point, SeriesKey, Val};

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_blob(out, s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

fn put_key(out: &mut Vec<u8>, k: &SeriesKey) {
    put_str(out, &k.tenant);
    put_str(out, &k.entity);
    put_str(out, &k.attr);
    put_opt(out, k.dataset.as_deref());
}

pub(crate) fn put_point(out: &mut Vec<u8>, p: &Point, prev: (i64, i64)) {
    put_varint(out, zigzag(p.t.wrapping_sub(prev.0)));
    put_varint(out, zigzag(p.rec.wrapping_sub(prev.1)));
    let kind = match p.v {
        Val::F(_) => 0u8,
        Val::I(_) => 1,
        Val::D(_) => 2,
    };
    out.push(u8::from(p.observed) | (kind << 1) | (u8::from(p.unit.is_some()) << 3));
    if let Some(u) = &p.unit {
        put_str(out, u);
    }
    match &p.v {
        Val::F(f) => out.extend_from_slice(&f.to_le_bytes()),
        Val::I(i) => put_varint(out, zigzag(*i)),
        Val::D(d) => put_str(out, d),
    }
}

/// Appends the encoding of `ops` to `out`.
pub fn encode_ops(ops: &[HistOp], out: &mut Vec<u8>) {
    put_varint(out, ops.len() as u64);
    for op in ops {
        match op {
            HistOp::Insert { key, points } => {
                out.push(1);
                put_key(out, key);
                put_varint(out, points.len() as u64);
                let mut prev = (0, 0);
                for p in points {
                    put_point(out, p, prev);
                    prev = (p.t, p.rec);
                }
            }
            HistOp::EntityMeta {
                tenant,
                entity,
                types,
                scope,
            } => {
                out.push(2);
                put_str(out, tenant);
                put_str(out, entity);
                put_varint(out, types.len() as u64);
                for t in types {
                    put_str(out, t);
                }
                put_opt(out, scope.as_deref());
            }
            HistOp::DeleteEntity { tenant, entity } => {
                out.push(3);
                put_str(out, tenant);
                put_str(out, entity);
            }
            HistOp::DeleteAttr {
                tenant,
                entity,
                attr,
                dataset,
            } => {
                out.push(4);
                put_str(out, tenant);
                put_str(out, entity);
                put_str(out, attr);
                match dataset {
                    DatasetSel::All => out.push(0),
                    DatasetSel::One(None) => out.push(1),
                    DatasetSel::One(Some(d)) => {
                        out.push(2);
                        put_str(out, d);
                    }
                }
            }
            HistOp::DeleteInstance { key, rec } => {
                out.push(5);
                put_key(out, key);
                put_varint(out, zigzag(*rec));
            }
            HistOp::ReplaceInstance { key, point } => {
                out.push(6);
                put_key(out, key);
                put_point(out, point, (0, 0));
            }
        }
    }
}

fn arc(r: &mut Reader<'_>) -> Option<Arc<str>> {
    r.str().map(Arc::from)
}

fn opt(r: &mut Reader<'_>) -> Option<Option<Arc<str>>> {
    match r.u8()? {
        0 => Some(None),
        1 => Some(Some(arc(r)?)),
        _ => None,
    }
}

fn key(r: &mut Reader<'_>) -> Option<SeriesKey> {
    Some(SeriesKey {
        tenant: arc(r)?,
        entity: arc(r)?,
        attr: arc(r)?,
        dataset: opt(r)?,
    })
}

pub(crate) fn point(
    r: &mut Reader<'_>,
    prev: (i64, i64),
    units: &mut Option<Arc<str>>,
) -> Option<Point> {
    let t = prev.0.wrapping_add(r.ivarint()?);
    let rec = prev.1.wrapping_add(r.ivarint()?);
    let flags = r.u8()?;
    let unit = if flags & 8 != 0 {
        let u = r.str()?;
        // Consecutive points share their unit string.
        match units {
            Some(a) if &**a == u => Some(a.clone()),
            _ => {
                let a: Arc<str> = Arc::from(u);
                *units = Some(a.clone());
                Some(a)
            }
        }
    } else {
        None
    };
    let v = match (flags >> 1) & 3 {
        0 => {
            let b = r.bytes(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Val::F(f64::from_le_bytes(a))
        }
        1 => Val::I(r.ivarint()?),
        2 => Val::D(arc(r)?),
        _ => return None,
    };
    Some(Point {
        t,
        rec,
        observed: flags & 1 == 1,
        unit,
        v,
    })
}

/// Decodes what [`encode_ops`] wrote; None on malformed input.
pub fn decode_ops(r: &mut Reader<'_>) -> Option<Vec<HistOp>> {
    let n = usize::try_from(r.varint()?).ok()?;
    if n > r.remaining() {
        return None;
    }
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        let op = match r.u8()? {
            1 => {
                let key = key(r)?;
                let np = usize::try_from(r.varint()?).ok()?;
                if np > r.remaining() {
                    return None;
                }
                let mut points = Vec::with_capacity(np);
                let mut prev = (0, 0);
                let mut units = None;
                for _ in 0..np {
                    let p = point(r, prev, &mut units)?;
                    prev = (p.t, p.rec);
                    points.push(p);
                }
                HistOp::Insert { key, points }
            }
            2 => {
                let tenant = arc(r)?;
                let entity = arc(r)?;
                let nt = usize::try_from(r.varint()?).ok()?;
                if nt > r.remaining() {
                    return None;
                }
                let mut types = Vec::with_capacity(nt);
                for _ in 0..nt {
                    types.push(arc(r)?);
                }
                HistOp::EntityMeta {
                    tenant,
                    entity,
                    types,
                    scope: opt(r)?,
                }
            }
            3 => HistOp::DeleteEntity {
                tenant: arc(r)?,
                entity: arc(r)?,
            },
            4 => HistOp::DeleteAttr {
                tenant: arc(r)?,
                entity: arc(r)?,
                attr: arc(r)?,
                dataset: match r.u8()? {
                    0 => DatasetSel::All,
                    1 => DatasetSel::One(None),
                    2 => DatasetSel::One(Some(arc(r)?)),
                    _ => return None,
                },
            },
            5 => HistOp::DeleteInstance {
                key: key(r)?,
                rec: r.ivarint()?,
            },
            6 => {
                let key = key(r)?;
                let point = point(r, (0, 0), &mut None)?;
                HistOp::ReplaceInstance { key, point }
            }
            _ => return None,
        };
        ops.push(op);
    }
    Some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip() {
        let key = SeriesKey {
            tenant: Arc::from(""),
            entity: Arc::from("urn:a"),
            attr: Arc::from("https://x/speed"),
            dataset: Some(Arc::from("urn:ds")),
        };
        let p = |t: i64, v: Val| Point {
            t,
            rec: t * 1000 + 7,
            observed: t % 2 == 0,
            unit: (t % 3 == 0).then(|| Arc::from("KMH")),
            v,
        };
        let ops = vec![
            HistOp::Insert {
                key: key.clone(),
                points: vec![
                    p(10, Val::F(1.5)),
                    p(9, Val::I(-4)),
                    p(12, Val::D(Arc::from("{\"a\":1}"))),
                ],
            },
            HistOp::EntityMeta {
                tenant: Arc::from("t"),
                entity: Arc::from("urn:a"),
                types: vec![Arc::from("T1"), Arc::from("T2")],
                scope: Some(Arc::from("\"/a\"")),
            },
            HistOp::DeleteEntity {
                tenant: Arc::from("t"),
                entity: Arc::from("urn:a"),
            },
            HistOp::DeleteAttr {
                tenant: Arc::from("t"),
                entity: Arc::from("urn:a"),
                attr: Arc::from("x"),
                dataset: DatasetSel::One(None),
            },
            HistOp::DeleteInstance {
                key: key.clone(),
                rec: 42,
            },
            HistOp::ReplaceInstance {
                key,
                point: p(3, Val::F(2.0)),
            },
        ];
        let mut buf = Vec::new();
        encode_ops(&ops, &mut buf);
        let back = decode_ops(&mut Reader::new(&buf)).unwrap();
        assert_eq!(back, ops);
        // Every truncation fails cleanly.
        for cut in 0..buf.len() {
            assert!(decode_ops(&mut Reader::new(&buf[..cut])).is_none());
        }
    }
}
