//! ISO 8601 durations (`P1Y2M3DT4H5M6.5S`, `P2W`), as used by `aggrPeriodDuration` and
//! retention policies. Years and months are calendar units (added with the calendar, so
//! `P1M` periods follow month lengths); weeks, days and smaller units are exact.

use chrono::{DateTime, Months, Utc};

use crate::error::{ModelError, Result};

/// A parsed duration: calendar months plus an exact number of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsoDuration {
    pub months: u32,
    pub millis: i64,
}

impl IsoDuration {
    /// Parses an ISO 8601 duration; `field` names the parameter in errors.
    pub fn parse(field: &str, s: &str) -> Result<IsoDuration> {
        let bad = |why: &str| {
            ModelError::bad_data(format!(
                "{field}: '{s}' is not an ISO 8601 duration ({why}); examples: PT1H, P1D, P1M, PT0.5S"
            ))
        };
        let rest = s
            .strip_prefix('P')
            .ok_or_else(|| bad("it must start with P"))?;
        if rest.is_empty() || rest == "T" {
            return Err(bad("no amount"));
        }
        let (date, time) = match rest.split_once('T') {
            Some((_, "")) => return Err(bad("nothing after T")),
            Some((d, t)) => (d, t),
            None => (rest, ""),
        };
        let mut months: u64 = 0;
        let mut millis: f64 = 0.0;
        let mut parse_part = |part: &str, units: &[(char, Option<u64>, f64)]| -> Result<()> {
            let mut num = String::new();
            let mut order = 0usize;
            for c in part.chars() {
                if c.is_ascii_digit() || c == '.' || c == ',' {
                    num.push(if c == ',' { '.' } else { c });
                    continue;
                }
                let pos = units
                    .iter()
                    .position(|(u, _, _)| *u == c)
                    .ok_or_else(|| bad("unknown unit"))?;
                if pos < order || num.is_empty() {
                    return Err(bad("units out of order or without a number"));
                }
                order = pos + 1;
                let n: f64 = num.parse().map_err(|_| bad("bad number"))?;
                if !n.is_finite() || n > 1e12 {
                    return Err(bad("number out of range"));
                }
                let (_, month_factor, ms_factor) = units[pos];
                match month_factor {
                    Some(f) => {
                        if n.fract() != 0.0 {
                            return Err(bad("fractional years or months"));
                        }
                        months += n as u64 * f;
                    }
                    None => millis += n * ms_factor,
                }
                num.clear();
            }
            if !num.is_empty() {
                return Err(bad("a number without a unit"));
            }
            Ok(())
        };
        parse_part(
            date,
            &[
                ('Y', Some(12), 0.0),
                ('M', Some(1), 0.0),
                ('W', None, 604_800_000.0),
                ('D', None, 86_400_000.0),
            ],
        )?;
        parse_part(
            time,
            &[
                ('H', None, 3_600_000.0),
                ('M', None, 60_000.0),
                ('S', None, 1000.0),
            ],
        )?;
        let months = u32::try_from(months).map_err(|_| bad("too many months"))?;
        let millis = millis.round() as i64;
        if months == 0 && millis <= 0 {
            return Err(bad("it must be longer than zero"));
        }
        Ok(IsoDuration { months, millis })
    }

    /// `t + self`, with calendar months.
    pub fn add_to(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t = if self.months > 0 {
            t.checked_add_months(Months::new(self.months))?
        } else {
            t
        };
        t.checked_add_signed(chrono::Duration::try_milliseconds(self.millis)?)
    }

    /// An approximate length in milliseconds (months as 30 days), for policies.
    pub fn approx_millis(&self) -> i64 {
        i64::from(self.months)
            .saturating_mul(30 * 86_400_000)
            .saturating_add(self.millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_datetime;

    #[test]
    fn parses_and_adds() {
        let d = IsoDuration::parse("x", "PT1H").unwrap();
        assert_eq!(
            d,
            IsoDuration {
                months: 0,
                millis: 3_600_000
            }
        );
        assert_eq!(IsoDuration::parse("x", "P1D").unwrap().millis, 86_400_000);
        assert_eq!(IsoDuration::parse("x", "PT0.5S").unwrap().millis, 500);
        assert_eq!(IsoDuration::parse("x", "P1Y2M").unwrap().months, 14);
        let p1m = IsoDuration::parse("x", "P1M").unwrap();
        let jan31 = parse_datetime("2021-01-31T00:00:00Z").unwrap();
        assert_eq!(
            p1m.add_to(jan31).unwrap(),
            parse_datetime("2021-02-28T00:00:00Z").unwrap()
        );
        for bad in [
            "", "P", "PT", "1D", "P1H", "PT1D", "P1.5M", "P-1D", "PT0S", "P1DT", "PD", "P1M1Y",
        ] {
            let e = IsoDuration::parse("aggrPeriodDuration", bad).unwrap_err();
            assert!(e.to_string().contains("aggrPeriodDuration"), "{bad}: {e}");
        }
    }
}
