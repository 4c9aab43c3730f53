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
struct Acc {
    count: u64,
    nums: u64,
    sum: f64,
    sumsq: f64,
    min: Option<f64>,
    max: Option<f64>,
    min_doc: Option<Arc<str>>,
    max_doc: Option<Arc<str>>,
    distinct: Option<HashSet<u64>>,
}

impl Acc {
    fn add_num(&mut self, x: f64, distinct: bool) {
        self.count += 1;
        if distinct {
            self.distinct
                .get_or_insert_with(HashSet::new)
                .insert(x.to_bits());
        }
        self.nums += 1;
        self.sum += x;
        self.sumsq += x * x;
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
    }

    fn add(&mut self, v: &Val, distinct: bool) {
        match v {
            Val::F(x) => self.add_num(*x, distinct),
            Val::I(i) => self.add_num(*i as f64, distinct),
            Val::D(d) => {
                self.count += 1;
                if distinct {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    d.hash(&mut h);
                    self.distinct
                        .get_or_insert_with(HashSet::new)
                        .insert(h.finish());
                }
                if self.min_doc.as_ref().is_none_or(|m| d < m) {
                    self.min_doc = Some(d.clone());
                }
                if self.max_doc.as_ref().is_none_or(|m| d > m) {
                    self.max_doc = Some(d.clone());
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
            AggMethod::Min => match (self.min, &self.min_doc) {
                (Some(x), _) => AggValue::Num(x),
                (None, Some(d)) => AggValue::Doc(d.clone()),
                _ => AggValue::Null,
            },
            AggMethod::Max => match (self.max, &self.max_doc) {
                (Some(x), _) => AggValue::Num(x),
                (None, Some(d)) => AggValue::Doc(d.clone()),
                _ => AggValue::Null,
            },
        }
    }
}

/// Streams points (in ascending time) into consecutive periods starting at `origin`
/// (the first point's time when None); `next(start)` gives the end of the period that
/// begins at `start` (calendar durations such as `P1M` vary). Periods without points
/// are left out. Without `next`, everything from the origin on is one period ending at
/// `end` (just after the last point when None).
pub struct Aggregator<'f> {
    methods: &'f [AggMethod],
    distinct: bool,
    next: Option<&'f dyn Fn(i64) -> i64>,
    origin: Option<i64>,
    end: Option<i64>,
    start: i64,
    stop: i64,
    last: i64,
    acc: Acc,
    out: Vec<Bucket>,
    done: bool,
}

impl<'f> Aggregator<'f> {
    pub fn new(
        origin: Option<i64>,
        end: Option<i64>,
        next: Option<&'f dyn Fn(i64) -> i64>,
        methods: &'f [AggMethod],
    ) -> Self {
        let mut a = Self {
            methods,
            distinct: methods.contains(&AggMethod::DistinctCount),
            next,
            origin: None,
            end,
            start: 0,
            stop: 0,
            last: i64::MIN,
            acc: Acc::default(),
            out: Vec::new(),
            done: false,
        };
        if let Some(o) = origin {
            a.set_origin(o);
        }
        a
    }

    fn set_origin(&mut self, origin: i64) {
        self.origin = Some(origin);
        self.start = origin;
        self.stop = match (self.next, self.end) {
            (Some(f), _) => f(origin),
            (None, Some(end)) => end.max(origin.saturating_add(1)),
            (None, None) => i64::MAX,
        };
    }

    /// Moves to the period holding `t`; false when `t` is outside every period.
    fn seek(&mut self, t: i64) -> bool {
        let origin = match self.origin {
            Some(o) => o,
            None => {
                self.set_origin(t);
                t
            }
        };
        if self.done || t < origin {
            return false;
        }
        if t >= self.stop {
            self.emit();
            let Some(f) = self.next else {
                self.done = true;
                return false;
            };
            while t >= self.stop {
                self.start = self.stop;
                let n = f(self.stop);
                if n <= self.stop {
                    self.done = true;
                    return false;
                }
                self.stop = n;
            }
        }
        self.last = t;
        true
    }

    fn emit(&mut self) {
        if self.acc.count > 0 {
            let acc = std::mem::take(&mut self.acc);
            let end = if self.stop == i64::MAX {
                self.last.saturating_add(1)
            } else {
                self.stop
            };
            self.out.push(Bucket {
                start: self.start,
                end,
                values: self.methods.iter().map(|m| acc.value(*m)).collect(),
            });
        }
    }

    pub fn push(&mut self, t: i64, v: &Val) {
        if self.seek(t) {
            self.acc.add(v, self.distinct);
        }
    }

    pub fn push_num(&mut self, t: i64, x: f64) {
        if self.seek(t) {
            self.acc.add_num(x, self.distinct);
        }
    }

    pub fn finish(mut self) -> Vec<Bucket> {
        self.emit();
        self.out
    }
}

/// Aggregates `points` (sorted by `time_of`); see [`Aggregator`].
pub fn aggregate(
    points: &[Point],
    time_of: &dyn Fn(&Point) -> i64,
    origin: Option<i64>,
    end: Option<i64>,
    next: Option<&dyn Fn(i64) -> i64>,
    methods: &[AggMethod],
) -> Vec<Bucket> {
    let mut a = Aggregator::new(origin, end, next, methods);
    for p in points {
        a.push(time_of(p), &p.v);
    }
    a.finish()
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
            Some(0),
            None,
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
            Some(5),
            Some(100),
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
