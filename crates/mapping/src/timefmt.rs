//! Timestamp parsing for mappings: RFC 3339 / ISO 8601, Unix epochs, and strftime
//! patterns, with a time zone (IANA or fixed offset) for local times.

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

/// How the times of a source are written.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeFormat {
    Rfc3339,
    UnixSeconds,
    UnixMillis,
    UnixMicros,
    Pattern(String),
}

/// The zone of local times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Fixed(FixedOffset),
    Iana(Tz),
}

impl TimeFormat {
    pub fn parse(s: Option<&str>) -> Result<TimeFormat, String> {
        Ok(match s.unwrap_or("rfc3339") {
            "rfc3339" | "iso8601" => TimeFormat::Rfc3339,
            "unix" | "unix_s" => TimeFormat::UnixSeconds,
            "unix_ms" => TimeFormat::UnixMillis,
            "unix_us" => TimeFormat::UnixMicros,
            p if p.contains('%') => {
                // Validate the pattern once: chrono reports a bad specifier on use.
                let probe = chrono::format::StrftimeItems::new(p);
                if probe
                    .clone()
                    .any(|i| matches!(i, chrono::format::Item::Error))
                {
                    return Err(format!("'{p}' is not a valid strftime pattern"));
                }
                TimeFormat::Pattern(p.to_string())
            }
            other => {
                return Err(format!(
                    "unknown time format '{other}' (rfc3339, unix, unix_ms, unix_us, or a \
                     strftime pattern with '%')"
                ))
            }
        })
    }
}

impl Zone {
    pub fn parse(s: Option<&str>) -> Result<Zone, String> {
        let Some(s) = s else {
            return Ok(Zone::Fixed(utc_offset()));
        };
        if s.eq_ignore_ascii_case("utc") || s == "Z" {
            return Ok(Zone::Fixed(utc_offset()));
        }
        if s.starts_with('+') || s.starts_with('-') {
            return DateTime::parse_from_rfc3339(&format!("2000-01-01T00:00:00{s}"))
                .map(|d| Zone::Fixed(*d.offset()))
                .map_err(|_| format!("'{s}' is not an offset like +08:00"));
        }
        s.parse::<Tz>()
            .map(Zone::Iana)
            .map_err(|_| format!("unknown time zone '{s}' (an IANA name or an offset like +08:00)"))
    }

    fn resolve(&self, n: NaiveDateTime) -> Option<DateTime<Utc>> {
        let pick = |r: LocalResult<DateTime<Utc>>| match r {
            LocalResult::Single(d) => Some(d),
            // An ambiguous local time (clocks going back) takes the earlier instant.
            LocalResult::Ambiguous(a, _) => Some(a),
            LocalResult::None => None,
        };
        match self {
            Zone::Fixed(o) => pick(o.from_local_datetime(&n).map(|d| d.with_timezone(&Utc))),
            Zone::Iana(z) => pick(z.from_local_datetime(&n).map(|d| d.with_timezone(&Utc))),
        }
    }
}

fn utc_offset() -> FixedOffset {
    chrono::Offset::fix(&Utc)
}

/// Parses one time value.
pub fn parse_time(v: &Value, fmt: &TimeFormat, zone: &Zone) -> Result<DateTime<Utc>, String> {
    let num;
    let text: &str = match v {
        Value::String(s) => s.trim(),
        Value::Number(n) => {
            num = n.to_string();
            &num
        }
        other => return Err(format!("a time must be a string or a number, not {other}")),
    };
    let out = match fmt {
        TimeFormat::Rfc3339 => parse_iso(text, zone),
        TimeFormat::UnixSeconds | TimeFormat::UnixMillis | TimeFormat::UnixMicros => {
            let per_micro: i64 = match fmt {
                TimeFormat::UnixSeconds => 1_000_000,
                TimeFormat::UnixMillis => 1_000,
                _ => 1,
            };
            // Whole numbers (the usual case) exactly, in integers; fractions in f64.
            match text.parse::<i64>() {
                Ok(i) => i
                    .checked_mul(per_micro)
                    .filter(|m| m.abs() <= 253_402_300_799_000_000)
                    .and_then(DateTime::from_timestamp_micros),
                Err(_) => {
                    let x: f64 = text
                        .parse()
                        .map_err(|_| format!("'{text}' is not a Unix time"))?;
                    let micros = x * per_micro as f64;
                    if !micros.is_finite() || micros.abs() > 253_402_300_799e6 {
                        None
                    } else {
                        DateTime::from_timestamp_micros(micros.round() as i64)
                    }
                }
            }
        }
        TimeFormat::Pattern(p) => match DateTime::parse_from_str(text, p) {
            Ok(d) => Some(d.with_timezone(&Utc)),
            Err(_) => NaiveDateTime::parse_from_str(text, p)
                .ok()
                .or_else(|| {
                    NaiveDate::parse_from_str(text, p)
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                })
                .and_then(|n| zone.resolve(n)),
        },
    };
    match out {
        Some(d) if (0..=9999).contains(&chrono::Datelike::year(&d)) => Ok(d),
        Some(_) => Err(format!("'{text}' is outside years 0-9999")),
        None => Err(match fmt {
            TimeFormat::Pattern(p) => format!("'{text}' does not match the time format '{p}'"),
            TimeFormat::Rfc3339 => format!("'{text}' is not an RFC 3339 / ISO 8601 time"),
            _ => format!("'{text}' is not a valid Unix time"),
        }),
    }
}

fn parse_iso(text: &str, zone: &Zone) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Some(d.with_timezone(&Utc));
    }
    // ISO 8601 without an offset (or with a space): local time in the source's zone.
    for p in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(text, p) {
            return zone.resolve(n);
        }
    }
    if let Ok(d) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(d.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|n| zone.resolve(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(v: Value, f: &str, z: Option<&str>) -> Result<String, String> {
        parse_time(
            &v,
            &TimeFormat::parse(Some(f)).unwrap(),
            &Zone::parse(z).unwrap(),
        )
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }

    #[test]
    fn formats_and_zones() {
        assert_eq!(
            t(json!("2026-03-01T08:00:00+08:00"), "rfc3339", None).unwrap(),
            "2026-03-01T00:00:00.000Z"
        );
        assert_eq!(
            t(
                json!("2026-03-01 08:00:00"),
                "rfc3339",
                Some("Asia/Shanghai")
            )
            .unwrap(),
            "2026-03-01T00:00:00.000Z"
        );
        assert_eq!(
            t(json!(1_772_323_200), "unix", None).unwrap(),
            "2026-03-01T00:00:00.000Z"
        );
        assert_eq!(
            t(json!("1772323200123"), "unix_ms", None).unwrap(),
            "2026-03-01T00:00:00.123Z"
        );
        assert_eq!(
            t(
                json!("01/03/2026 09:00"),
                "%d/%m/%Y %H:%M",
                Some("Europe/Madrid")
            )
            .unwrap(),
            "2026-03-01T08:00:00.000Z"
        );
        assert_eq!(
            t(json!("01/03/2026 09:00"), "%d/%m/%Y %H:%M", Some("+02:00")).unwrap(),
            "2026-03-01T07:00:00.000Z"
        );
        // Summer time in Madrid: UTC+2.
        assert_eq!(
            t(
                json!("2026-07-01 09:00:00"),
                "rfc3339",
                Some("Europe/Madrid")
            )
            .unwrap(),
            "2026-07-01T07:00:00.000Z"
        );
    }

    #[test]
    fn bad_times_name_the_problem() {
        assert!(t(json!("yesterday"), "rfc3339", None)
            .unwrap_err()
            .contains("yesterday"));
        assert!(t(json!("1e300"), "unix", None).is_err());
        assert!(t(json!(true), "unix", None).is_err());
        assert!(t(json!("32/13/2026"), "%d/%m/%Y", None).is_err());
        assert!(TimeFormat::parse(Some("epoch")).is_err());
        assert!(Zone::parse(Some("Mars/Olympus")).is_err());
        assert!(Zone::parse(Some("+25:00")).is_err());
    }
}
