//! Online forecasts for series that arrive irregularly (a city's detectors on the change
//! feed): each series is cut into fixed intervals by observation time, an interval's
//! value is the mean of its observations, and each closed interval is one step of the
//! [`Online`] forecaster.
//!
//! - An interval closes when the first observation of a later one arrives (the feed
//!   is the clock: a sensor that stops sending leaves its last interval open).
//! - Intervals without an observation between two with one repeat the last value
//!   (at most [`MAX_FILL`] of them; after a longer silence nothing is forecast and
//!   the series starts afresh from its new value).
//! - An observation older than the open interval is late and left out (counted).

use std::collections::HashMap;

use crate::online::{Forecast, Online, OnlineSettings};

/// The most missing intervals filled with the last value.
pub const MAX_FILL: i64 = 12;

#[derive(Debug, Clone, Copy)]
struct Open {
    index: i64,
    sum: f64,
    n: u32,
}

/// The forecasts made when an interval closed: its end (unix seconds) and the
/// forecasts from it, `steps` intervals ahead each.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub end: i64,
    pub value: f64,
    pub forecasts: Vec<Forecast>,
}

#[derive(Debug)]
pub struct Streams {
    interval: i64,
    online: Online,
    open: HashMap<String, Open>,
    /// Observations left out for being older than their series' open interval.
    pub late: u64,
}

impl Streams {
    /// Series cut into `interval_secs` intervals; `settings.horizons` in intervals.
    pub fn new(interval_secs: i64, settings: OnlineSettings) -> Streams {
        Streams {
            interval: interval_secs.max(1),
            online: Online::new(settings),
            open: HashMap::new(),
            late: 0,
        }
    }

    /// Series seen.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Drops a series (its entity was deleted): its open interval and its model.
    pub fn forget(&mut self, key: &str) {
        self.open.remove(key);
        self.online.forget(key);
    }

    /// Takes one observation at `t` (unix seconds); returns the closed interval and
    /// its forecasts when this observation closed one.
    pub fn observe(&mut self, key: &str, t: i64, value: f64) -> Option<Closed> {
        if !value.is_finite() {
            return None;
        }
        let index = t.div_euclid(self.interval);
        let Some(open) = self.open.get_mut(key) else {
            self.open.insert(
                key.to_string(),
                Open {
                    index,
                    sum: value,
                    n: 1,
                },
            );
            return None;
        };
        if index == open.index {
            open.sum += value;
            open.n += 1;
            return None;
        }
        if index < open.index {
            self.late += 1;
            return None;
        }
        let closed = *open;
        *open = Open {
            index,
            sum: value,
            n: 1,
        };
        let mean = closed.sum / f64::from(closed.n.max(1));
        let gap = index - closed.index - 1;
        if gap > MAX_FILL {
            // A long silence: the series starts afresh from this reading (its lags
            // would span the gap); nothing is forecast from stale values.
            self.online.forget(key);
            return None;
        }
        let mut forecasts = self.online.observe(key, mean);
        // Silent intervals up to this one repeat the closed value; the forecasts are
        // those made from the newest of them.
        for _ in 0..gap {
            forecasts = self.online.observe(key, mean);
        }
        let end = (closed.index + 1 + gap) * self.interval;
        Some(Closed {
            end,
            value: mean,
            forecasts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streams() -> Streams {
        Streams::new(
            300,
            OnlineSettings {
                lags: 2,
                horizons: vec![1, 3],
                ..OnlineSettings::default()
            },
        )
    }

    #[test]
    fn intervals_close_on_the_next_one_with_the_mean_of_their_observations() {
        let mut s = streams();
        assert_eq!(s.observe("a", 0, 40.0), None);
        assert_eq!(s.observe("a", 100, 50.0), None);
        // Another series is independent.
        assert_eq!(s.observe("b", 120, 10.0), None);
        let c = s.observe("a", 310, 60.0).unwrap();
        assert_eq!((c.end, c.value), (300, 45.0));
        // Two lags: no forecast until two intervals are known.
        assert!(c.forecasts.is_empty());
        let c = s.observe("a", 610, 70.0).unwrap();
        assert_eq!((c.end, c.value), (600, 60.0));
        // Untrained: persistence, one forecast per horizon.
        assert_eq!(c.forecasts.len(), 2);
        assert!(c.forecasts.iter().all(|f| f.value == 60.0));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn late_observations_are_left_out_and_gaps_are_filled() {
        let mut s = streams();
        s.observe("a", 0, 40.0);
        s.observe("a", 300, 50.0);
        // Late: before the open interval.
        assert_eq!(s.observe("a", 10, 99.0), None);
        assert_eq!(s.late, 1);
        // Three silent intervals: filled with 50, forecasts from the newest.
        let c = s.observe("a", 1500, 60.0).unwrap();
        assert_eq!((c.end, c.value), (1500, 50.0));
        assert!(c.forecasts.iter().all(|f| f.value == 50.0));
        // A silence longer than MAX_FILL: nothing forecast, the series restarts.
        assert_eq!(s.observe("a", 1500 + 300 * (MAX_FILL + 5), 60.0), None);
        let c = s.observe("a", 1500 + 300 * (MAX_FILL + 6), 61.0).unwrap();
        assert_eq!(c.value, 60.0);
        assert!(c.forecasts.is_empty(), "no lags yet: {c:?}");
        assert!(s.observe("a", 0, f64::NAN).is_none());
        s.forget("a");
        assert!(s.is_empty());
        // Forgotten: the next reading opens a new series.
        assert_eq!(s.observe("a", 99_999, 1.0), None);
    }

    #[test]
    fn a_cycle_is_learnt() {
        // Twelve lags see a whole cycle of ten.
        let mut s = Streams::new(
            300,
            OnlineSettings {
                horizons: vec![1, 3],
                ..OnlineSettings::default()
            },
        );
        // A slow sawtooth with one reading per interval: the model learns the step.
        let mut last = None;
        for i in 0..400i64 {
            let v = 30.0 + (i % 10) as f64;
            if let Some(c) = s.observe("a", i * 300, v) {
                last = Some(c);
            }
        }
        let c = last.unwrap();
        // Closed value 38 (i = 398): one interval ahead is 39, not 38.
        assert_eq!(c.value, 38.0);
        let one = c.forecasts.iter().find(|f| f.steps == 1).unwrap();
        assert!((one.value - 39.0).abs() < 0.5, "{one:?}");
    }
}
