//! Aggregation of points into periods (the NGSI-LD aggregated temporal representation).

use std::collections::HashSet;
use std::sync::Arc;

use crate::point::{Point, Val};

/// The NGSI-LD aggregation methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggMethod {
    TotalCount,
    DistinctCount,
    Sum,
    Avg,
    Min,
    Max,
    Stddev,
    Sumsq,
}

impl AggMethod {
    pub const ALL: [AggMethod; 8] = [
        AggMethod::TotalCount,
        AggMethod::DistinctCount,
        AggMethod::Sum,
        AggMethod::Avg,
        AggMethod::Min,
        AggMethod::Max,
        AggMethod::Stddev,
        AggMethod::Sumsq,
    ];

    pub fn parse(s: &str) -> Option<AggMethod> {
        AggMethod::ALL.into_iter().find(|m| m.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            AggMethod::TotalCount => "totalCount",
            AggMethod::DistinctCount => "distinctCount",
            AggMethod::Sum => "sum",
            AggMethod::Avg => "avg",
            AggMethod::Min => "min",
            AggMethod::Max => "max",
            AggMethod::Stddev => "stddev",
            AggMethod::Sumsq => "sumsq",
        }
    }
}

/// The result of one method over one period.
#[derive(Debug, Clone, PartialEq)]
pub enum AggValue {
    Count(u64),
    Num(f64),
    /// min/max of non-numeric values (compared as JSON text).
    Doc(Arc<str>),
    Null,
}

/// One period `[start, end)` with one value per requested method.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub start: i64,
    pub end: i64,
    pub values: Vec<AggValue>,
}

#[derive(Default)]
struct Acc<'a> {
    count: u64,
    nums: u64,
    sum: f64,
    sumsq: f64,
    min: Option<f64>,
    max: Option<f64>,
    min_doc: Option<&'a Arc<str>>,
    max_doc: Option<&'a Arc<str>>,
    distinct: Option<HashSet<u64>>,
}

impl<'a> Acc<'a> {
    fn add(&mut self, v: &'a Val, distinct: bool) {
        self.count += 1;
        if distinct {
            let h = match v {
                Val::F(f) => f.to_bits(),
                Val::I(i) => (*i as f64).to_bits(),
                Val::D(d) => {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    d.hash(&mut h);
                    h.finish()
                }
            };
            self.distinct.get_or_insert_with(HashSet::new).insert(h);
        }
        match v.as_f64() {
            Some(x) => {
                self.nums += 1;
                self.sum += x;
                self.sumsq += x * x;
                self.min = Some(self.min.map_or(x, |m| m.min(x)));
                self.max = Some(self.max.map_or(x, |m| m.max(x)));
            }
            None => {
                if let Val::D(d) = v {
                    if self.min_doc.is_none_or(|m| d < m) {
                        self.min_doc = Some(d);
                    }
                    if self.max_doc.is_none_or(|m| d > m) {
                        self.max_doc = Some(d);
                    }
                }
            }
        }
    }

    fn value(&self, m: AggMethod) -> AggValue {
        let num = |o: Option<f64>| o.map_or(AggValue::Null, AggValue::Num);
        match m {
            AggMethod::TotalCount => AggValue::Count(self.count),
            AggMethod::DistinctCount => {
                AggValue::Count(self.distinct.as_ref().map_or(0, |d| d.len() as u64))
            }
            AggMethod::Sum => num((self.nums > 0).then_some(self.sum)),
            AggMethod::Sumsq => num((self.nums > 0).then_some(self.sumsq)),
            AggMethod::Avg => num((self.nums > 0).then(|| self.sum / self.nums as f64)),
            AggMethod::Stddev => num((self.nums > 0).then(|| {
                let n = self.nums as f64;
                let mean = self.sum / n;
                (self.sumsq / n - mean * mean).max(0.0).sqrt()
            })),
            AggMethod::Min => match (self.min, self.min_doc) {
                (Some(x), _) => AggValue::Num(x),
                (None, Some(d)) => AggValue::Doc(d.clone()),
                _ => AggValue::Null,
            },
            AggMethod::Max => match (self.max, self.max_doc) {
                (Some(x), _) => AggValue::Num(x),
                (None, Some(d)) => AggValue::Doc(d.clone()),
                _ => AggValue::Null,
            },
        }
    }
}

/// Aggregates `points` (sorted by `time_of`) into consecutive periods starting at
/// `origin`; `next(start)` gives the end of the period that begins at `start` (calendar
/// durations such as `P1M` vary). Periods without points are left out. With `next` =
/// None, everything from `origin` on is one period ending at `end`.
pub fn aggregate(
    points: &[Point],
    time_of: &dyn Fn(&Point) -> i64,
    origin: i64,
    end: i64,
    next: Option<&dyn Fn(i64) -> i64>,
    methods: &[AggMethod],
) -> Vec<Bucket> {
    let distinct = methods.contains(&AggMethod::DistinctCount);
    let mut out = Vec::new();
    let mut start = origin;
    let mut stop = next.map_or(end.max(origin.saturating_add(1)), |f| f(origin));
    let mut acc = Acc::default();
    let emit = |acc: &Acc<'_>, start: i64, stop: i64, out: &mut Vec<Bucket>| {
        if acc.count > 0 {
            out.push(Bucket {
                start,
                end: stop,
                values: methods.iter().map(|m| acc.value(*m)).collect(),
            });
        }
    };
    for p in points {
        let t = time_of(p);
        if t < origin {
            continue;
        }
        if t >= stop {
            emit(&acc, start, stop, &mut out);
            acc = Acc::default();
            let Some(f) = next else { break };
            // Skip empty periods quickly.
            while t >= stop {
                start = stop;
                let n = f(stop);
                if n <= stop {
                    return out;
                }
                stop = n;
            }
        }
        acc.add(&p.v, distinct);
    }
    emit(&acc, start, stop, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(t: i64, v: f64) -> Point {
        Point {
            t,
            rec: t,
            observed: true,
            unit: None,
            v: Val::F(v),
        }
    }

    #[test]
    fn periods_start_at_the_origin_and_skip_empty_ones() {
        let h = 3_600_000;
        let pts = vec![pt(0, 1.0), pt(10, 3.0), pt(2 * h + 5, 7.0)];
        let next = |s: i64| s + h;
        let b = aggregate(
            &pts,
            &|p| p.t,
            0,
            i64::MAX,
            Some(&next),
            &[AggMethod::Avg, AggMethod::TotalCount, AggMethod::Stddev],
        );
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].start, b[0].end), (0, h));
        assert_eq!(b[0].values[0], AggValue::Num(2.0));
        assert_eq!(b[0].values[1], AggValue::Count(2));
        assert_eq!(b[0].values[2], AggValue::Num(1.0));
        assert_eq!((b[1].start, b[1].end), (2 * h, 3 * h));
        assert_eq!(b[1].values[0], AggValue::Num(7.0));
    }

    #[test]
    fn one_period_without_duration() {
        let pts = vec![pt(5, 1.0), pt(6, 1.0), pt(7, 2.0)];
        let b = aggregate(
            &pts,
            &|p| p.t,
            5,
            100,
            None,
            &[
                AggMethod::DistinctCount,
                AggMethod::Sum,
                AggMethod::Sumsq,
                AggMethod::Max,
            ],
        );
        assert_eq!(b.len(), 1);
        assert_eq!(
            b[0].values,
            vec![
                AggValue::Count(2),
                AggValue::Num(4.0),
                AggValue::Num(6.0),
                AggValue::Num(2.0)
            ]
        );
    }
}
