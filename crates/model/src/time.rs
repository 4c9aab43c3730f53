//! Date-time parsing and formatting in the NGSI-LD dialect of ISO 8601 (UTC, `Z`).

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};

use crate::error::{ModelError, Result};

/// Parses an ISO 8601 date-time. Offsets are normalised to UTC; a date-time without
/// offset is read as UTC, as most brokers do.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Some(t) = parse_fast(s) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

/// The form [`format_datetime`] writes (`YYYY-MM-DDTHH:MM:SS[.fff[fff[fff]]]Z`), read
/// digit by digit: the store reads several per attribute from its snapshot and log,
/// and chrono's general parser costs several times more. `None` for anything else
/// (the general parser then decides).
fn parse_fast(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let mut v = 0u32;
        for &c in b.get(from..from + len)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[b.len() - 1] != b'Z'
    {
        return None;
    }
    let nanos = match b.len() - 20 {
        0 => 0,
        n @ (4 | 7 | 10) if b[19] == b'.' => {
            let digits = n - 1;
            num(20, digits)? * 10u32.pow(9 - digits as u32)
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 2)?, num(8, 2)?)?;
    let time = chrono::NaiveTime::from_hms_nano_opt(num(11, 2)?, num(14, 2)?, num(17, 2)?, nanos)?;
    Some(NaiveDateTime::new(date, time).and_utc())
}

/// Parses a date-time for the field `field`, with an error naming the field.
pub fn parse_datetime_field(field: &str, v: &serde_json::Value) -> Result<DateTime<Utc>> {
    v.as_str().and_then(parse_datetime).ok_or_else(|| {
        ModelError::bad_data(format!(
            "'{field}' must be an ISO 8601 date-time string, got {v}"
        ))
    })
}

/// True when `s` is an ISO 8601 date (YYYY-MM-DD).
pub fn is_date(s: &str) -> bool {
    s.len() == 10 && NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// Milliseconds since the epoch as a date-time (out of range: the earliest one).
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Microseconds since the epoch as a date-time (out of range: the earliest one).
pub fn from_micros(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Formats as the spec's DateTime: UTC with `Z`, fractional seconds only when present
/// (3, 6 or 9 digits, as chrono's `SecondsFormat::AutoSi`).
pub fn format_datetime(t: &DateTime<Utc>) -> String {
    let mut buf = [0u8; 30];
    match format_fast(t, &mut buf) {
        Some(s) => s.to_string(),
        None => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    }
}

/// A date-time that serializes as [`format_datetime`] without a heap copy (the store
/// writes several per attribute into its log).
pub struct SpecTime<'a>(pub &'a DateTime<Utc>);

impl serde::Serialize for SpecTime<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut buf = [0u8; 30];
        match format_fast(self.0, &mut buf) {
            Some(text) => s.serialize_str(text),
            None => s.serialize_str(&format_datetime(self.0)),
        }
    }
}

/// Years 0-9999 outside a leap second, written digit by digit (chrono's formatter goes
/// through `fmt` and costs several times more); `None` for the rest.
fn format_fast<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; 30]) -> Option<&'b str> {
    use chrono::{Datelike, Timelike};
    // The naive value once: each accessor of a `DateTime` converts it again.
    let t = t.naive_utc();
    let year = t.year();
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    fn put(buf: &mut [u8], at: usize, v: u32, digits: usize) {
        let mut v = v;
        for i in (0..digits).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    put(buf, 0, year as u32, 4);
    buf[4] = b'-';
    put(buf, 5, t.month(), 2);
    buf[7] = b'-';
    put(buf, 8, t.day(), 2);
    buf[10] = b'T';
    put(buf, 11, t.hour(), 2);
    buf[13] = b':';
    put(buf, 14, t.minute(), 2);
    buf[16] = b':';
    put(buf, 17, t.second(), 2);
    let mut len = 19;
    let (frac, digits) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (nanos / 1_000_000, 3)
    } else if nanos.is_multiple_of(1_000) {
        (nanos / 1_000, 6)
    } else {
        (nanos, 9)
    };
    if digits > 0 {
        buf[len] = b'.';
        put(buf, len + 1, frac, digits);
        len += 1 + digits;
    }
    buf[len] = b'Z';
    std::str::from_utf8(&buf[..len + 1]).ok()
}

/// Serde adapter for `DateTime<Utc>` fields written in the spec's format.
pub mod serde_dt {
    use super::*;
    use serde::{Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        SpecTime(t).serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        // Parsed where the text lies, without an owned copy.
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = DateTime<Utc>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an ISO 8601 date-time string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<DateTime<Utc>, E> {
                parse_datetime(s).ok_or_else(|| E::custom(format!("bad date-time {s}")))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// Serde adapter for `Option<DateTime<Utc>>`.
pub mod serde_dt_opt {
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => SpecTime(t).serialize(s),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) => parse_datetime(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("bad date-time {s}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_common_forms() {
        for s in ["2020-09-01T12:03:00Z", "2020-09-01T12:03:00.123Z"] {
            let t = parse_datetime(s).unwrap();
            assert_eq!(format_datetime(&t), s);
        }
        let t = parse_datetime("2020-09-01T14:03:00+02:00").unwrap();
        assert_eq!(format_datetime(&t), "2020-09-01T12:03:00Z");
        assert!(parse_datetime("yesterday").is_none());
        assert!(is_date("2021-02-03"));
        assert!(!is_date("2021-02-30"));
    }

    proptest::proptest! {
        #[test]
        fn the_fast_format_is_chronos(secs in -62_135_596_800i64..253_402_300_799i64,
                                       nanos in 0u32..1_000_000_000,
                                       round in 0u8..4) {
            // Whole seconds, ms, µs and ns precisions all occur.
            let nanos = match round {
                0 => 0,
                1 => nanos / 1_000_000 * 1_000_000,
                2 => nanos / 1_000 * 1_000,
                _ => nanos,
            };
            let t = DateTime::from_timestamp(secs, nanos).unwrap();
            proptest::prop_assert_eq!(
                format_datetime(&t),
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
            proptest::prop_assert_eq!(
                serde_json::to_string(&SpecTime(&t)).unwrap(),
                format!("\"{}\"", format_datetime(&t))
            );
            // And it reads back, by the fast path, to the same instant.
            proptest::prop_assert_eq!(parse_fast(&format_datetime(&t)), Some(t));
        }

        /// The fast parser reads what chrono reads the same way, and refuses the rest
        /// (which then goes to chrono).
        #[test]
        fn the_fast_parser_agrees_with_chrono(s in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,10})?[Zz+]?") {
            if let Some(t) = parse_fast(&s) {
                let c = DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc));
                proptest::prop_assert_eq!(Ok(t), c);
            }
        }
    }

    #[test]
    fn years_outside_four_digits_still_format() {
        let t = DateTime::<Utc>::MIN_UTC;
        assert_eq!(
            format_datetime(&t),
            t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        );
    }
}

/// The injected clock: every timestamp, window, expiry and SLA reads it, so that tests
/// can drive time deterministically.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// The time at the clock's full precision (microseconds for the wall clock): for
    /// the storage log's change times and history deletion instances.
    fn now_precise(&self) -> DateTime<Utc> {
        self.now()
    }
}

/// The wall clock, read in the one place the code base may read it (`clippy.toml`
/// bans `Utc::now` and `SystemTime::now` everywhere else).
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> DateTime<Utc> {
    Utc::now()
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Millisecond precision, the precision NGSI-LD peers show and clients compare.
    fn now(&self) -> DateTime<Utc> {
        use chrono::SubsecRound;
        wall_clock().trunc_subsecs(3)
    }

    fn now_precise(&self) -> DateTime<Utc> {
        wall_clock()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(std::sync::Mutex::new(at))
    }
    pub fn set(&self, at: DateTime<Utc>) {
        if let Ok(mut g) = self.0.lock() {
            *g = at;
        }
    }
    pub fn advance(&self, by: chrono::Duration) {
        if let Ok(mut g) = self.0.lock() {
            *g += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
            .lock()
            .map(|g| *g)
            .unwrap_or_else(|p| *p.into_inner())
    }
}
