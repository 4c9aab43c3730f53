//! Service levels: how fast incidents must be acknowledged and resolved, per category
//! and per mode (normal / emergency), counted in business hours when a category says
//! so, paused while an incident is on hold; what happens on a breach (escalation);
//! and the figures per department (MTTA, MTTR, compliance).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::incident::{Incident, Status};
pub use crate::parts::{Mode, SlaMarks};
use citybrain_rules::spec::parse_duration;

/// A target as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Acknowledge within (a duration: `15m`, `PT4H`).
    pub acknowledge: String,
    /// Resolve within.
    pub resolve: String,
    /// Count only the calendar's business hours.
    #[serde(default, rename = "businessHours")]
    pub business_hours: bool,
}

/// Business hours: the same hours on the given weekdays, in a time zone, minus holidays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    pub timezone: String,
    /// `mon` … `sun`.
    pub days: Vec<String>,
    /// `08:30`.
    pub start: String,
    pub end: String,
    #[serde(default)]
    pub holidays: Vec<NaiveDate>,
}

/// The service-level policy of a tenant, as written (`PUT /platform/v1/sla/policy`).
/// Targets are per category, `*` for any other; the emergency targets apply in
/// emergency mode, falling back to the normal ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    #[serde(default)]
    pub normal: BTreeMap<String, TargetSpec>,
    #[serde(default)]
    pub emergency: BTreeMap<String, TargetSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<CalendarSpec>,
    /// On a breach: the department that takes over, per category (`*` for any).
    #[serde(default, rename = "escalateTo")]
    pub escalate_to: BTreeMap<String, String>,
}

/// The category of security incidents (bursts of refused credentials or requests).
pub const SECURITY: &str = "security";

/// A security incident's deadline when the policy names none: acknowledged within a
/// day, reported (resolved) within 72 hours of wall-clock time (the breach-report
/// deadline of data-protection law), business hours or not.
pub const SECURITY_TARGET: Target = Target {
    ack_ms: 24 * 3600 * 1000,
    resolve_ms: 72 * 3600 * 1000,
    business_hours: false,
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub ack_ms: i64,
    pub resolve_ms: i64,
    pub business_hours: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    tz: Tz,
    /// Days open, by `Weekday::num_days_from_monday`.
    days: [bool; 7],
    start: NaiveTime,
    end: NaiveTime,
    holidays: BTreeSet<NaiveDate>,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policy {
    pub spec: SlaPolicy,
    normal: BTreeMap<String, Target>,
    emergency: BTreeMap<String, Target>,
    calendar: Option<Calendar>,
}

impl Policy {
    pub fn compile(spec: SlaPolicy) -> Result<Policy, String> {
        let targets = |mode: &str, m: &BTreeMap<String, TargetSpec>| {
            m.iter()
                .map(|(cat, t)| {
                    let f = |k: &str| format!("{mode}.{cat}.{k}");
                    let ack = parse_duration(&f("acknowledge"), &t.acknowledge)
                        .map_err(|e| e.to_string())?;
                    let res =
                        parse_duration(&f("resolve"), &t.resolve).map_err(|e| e.to_string())?;
                    if res < ack {
                        return Err(format!(
                            "{}: must not be shorter than acknowledge",
                            f("resolve")
                        ));
                    }
                    Ok((
                        cat.clone(),
                        Target {
                            ack_ms: ack,
                            resolve_ms: res,
                            business_hours: t.business_hours,
                        },
                    ))
                })
                .collect::<Result<BTreeMap<_, _>, String>>()
        };
        let normal = targets("normal", &spec.normal)?;
        let emergency = targets("emergency", &spec.emergency)?;
        let calendar = match &spec.calendar {
            None => None,
            Some(c) => Some(calendar(c)?),
        };
        if calendar.is_none() {
            if let Some((cat, _)) = normal
                .iter()
                .chain(emergency.iter())
                .find(|(_, t)| t.business_hours)
            {
                return Err(format!("{cat}.businessHours: needs a 'calendar'"));
            }
        }
        Ok(Policy {
            spec,
            normal,
            emergency,
            calendar,
        })
    }

    /// The target of a category in a mode.
    pub fn target(&self, category: &str, mode: Mode) -> Option<Target> {
        // Security incidents carry their reporting deadline unless the policy names
        // the category itself (a `*` target does not apply to them).
        if category == SECURITY
            && !self.normal.contains_key(SECURITY)
            && !self.emergency.contains_key(SECURITY)
        {
            return Some(SECURITY_TARGET);
        }
        let pick = |m: &BTreeMap<String, Target>| m.get(category).or_else(|| m.get("*")).copied();
        match mode {
            Mode::Emergency => pick(&self.emergency).or_else(|| pick(&self.normal)),
            Mode::Normal => pick(&self.normal),
        }
    }

    pub fn escalate_to(&self, category: &str) -> Option<&String> {
        self.spec
            .escalate_to
            .get(category)
            .or_else(|| self.spec.escalate_to.get("*"))
    }

    /// Time that counts towards a target between `a` and `b`.
    fn counted(&self, t: &Target, a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
        if b <= a {
            return 0;
        }
        match (&self.calendar, t.business_hours) {
            (Some(c), true) => c.business_ms(a, b),
            _ => (b - a).num_milliseconds(),
        }
    }

    /// Time that counted for `i` by `now`: from opening, minus the time on hold.
    pub fn elapsed(&self, t: &Target, i: &Incident, now: DateTime<Utc>) -> i64 {
        let mut total = self.counted(t, i.opened_at, now);
        let mut hold_from: Option<DateTime<Utc>> = None;
        for s in &i.history {
            match (s.from, s.to) {
                (_, Some(Status::OnHold)) => hold_from = Some(s.at),
                (Some(Status::OnHold), _) => {
                    if let Some(h) = hold_from.take() {
                        total -= self.counted(t, h, s.at);
                    }
                }
                _ => {}
            }
        }
        if let Some(h) = hold_from {
            total -= self.counted(t, h, now);
        }
        total.max(0)
    }
}

fn calendar(c: &CalendarSpec) -> Result<Calendar, String> {
    let tz: Tz = c.timezone.parse().map_err(|_| {
        format!(
            "calendar.timezone: '{}' is not an IANA time zone",
            c.timezone
        )
    })?;
    let mut days = [false; 7];
    for d in &c.days {
        let w = match d.to_ascii_lowercase().as_str() {
            "mon" => Weekday::Mon,
            "tue" => Weekday::Tue,
            "wed" => Weekday::Wed,
            "thu" => Weekday::Thu,
            "fri" => Weekday::Fri,
            "sat" => Weekday::Sat,
            "sun" => Weekday::Sun,
            _ => return Err(format!("calendar.days: '{d}' is not mon … sun")),
        };
        days[w.num_days_from_monday() as usize] = true;
    }
    if !days.contains(&true) {
        return Err("calendar.days: at least one day".into());
    }
    let time = |k: &str, s: &str| {
        NaiveTime::parse_from_str(s, "%H:%M")
            .map_err(|_| format!("calendar.{k}: '{s}' is not HH:MM"))
    };
    let start = time("start", &c.start)?;
    let end = time("end", &c.end)?;
    if end <= start {
        return Err("calendar.end: must be after start".into());
    }
    Ok(Calendar {
        tz,
        days,
        start,
        end,
        holidays: c.holidays.iter().copied().collect(),
    })
}

impl Calendar {
    /// Business milliseconds between `a` and `b` (at most ~3 years are walked).
    fn business_ms(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
        let mut total = 0i64;
        let mut day = a.with_timezone(&self.tz).date_naive();
        let last = b.with_timezone(&self.tz).date_naive();
        let mut guard = 0;
        while day <= last && guard < 1_200 {
            guard += 1;
            if self.days[day.weekday().num_days_from_monday() as usize]
                && !self.holidays.contains(&day)
            {
                let open = self
                    .tz
                    .from_local_datetime(&day.and_time(self.start))
                    .earliest();
                let close = self
                    .tz
                    .from_local_datetime(&day.and_time(self.end))
                    .latest();
                if let (Some(o), Some(c)) = (open, close) {
                    let (o, c) = (o.with_timezone(&Utc), c.with_timezone(&Utc));
                    let from = o.max(a);
                    let to = c.min(b);
                    if to > from {
                        total += (to - from).num_milliseconds();
                    }
                }
            }
            day += Duration::days(1);
        }
        total
    }
}

/// One department's service figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentReport {
    pub department: String,
    pub incidents: u64,
    pub open: u64,
    pub acknowledged: u64,
    pub resolved: u64,
    /// Mean time to acknowledge, seconds.
    pub mtta_s: Option<f64>,
    /// Mean time to resolve, seconds.
    pub mttr_s: Option<f64>,
    /// Share of acknowledged incidents acknowledged within their target.
    pub ack_compliance: Option<f64>,
    /// Share of resolved incidents resolved within their target.
    pub resolve_compliance: Option<f64>,
    pub breaches: u64,
}

/// Figures per department over `incidents` (targets of the mode each incident was
/// opened in are not kept: the current policy's normal targets judge them).
pub fn report<'a>(
    policy: &Policy,
    incidents: impl IntoIterator<Item = &'a Incident>,
) -> Vec<DepartmentReport> {
    #[derive(Default)]
    struct Acc {
        r: DepartmentReport,
        ack_sum: f64,
        res_sum: f64,
        ack_ok: u64,
        ack_judged: u64,
        res_ok: u64,
        res_judged: u64,
    }
    let mut by: BTreeMap<String, Acc> = BTreeMap::new();
    for i in incidents {
        let dept = i.department.clone().unwrap_or_else(|| "unassigned".into());
        let a = by.entry(dept.clone()).or_default();
        a.r.department = dept;
        a.r.incidents += 1;
        a.r.open += u64::from(i.status.is_open());
        a.r.breaches += u64::from(i.sla.ack_breached_at.is_some())
            + u64::from(i.sla.resolve_breached_at.is_some());
        let target = policy.target(&i.category, i.sla.mode);
        if let Some(t) = i.acknowledged_at {
            a.r.acknowledged += 1;
            a.ack_sum += (t - i.opened_at).num_milliseconds() as f64 / 1e3;
            if let Some(tg) = target {
                a.ack_judged += 1;
                a.ack_ok += u64::from(
                    i.sla.ack_breached_at.is_none()
                        && policy.counted(&tg, i.opened_at, t) <= tg.ack_ms,
                );
            }
        }
        if let Some(t) = i.resolved_at {
            a.r.resolved += 1;
            a.res_sum += (t - i.opened_at).num_milliseconds() as f64 / 1e3;
            if let Some(tg) = target {
                a.res_judged += 1;
                a.res_ok += u64::from(
                    i.sla.resolve_breached_at.is_none()
                        && policy.elapsed(&tg, i, t) <= tg.resolve_ms,
                );
            }
        }
    }
    by.into_values()
        .map(|a| {
            let mut r = a.r;
            let ratio = |ok: u64, n: u64| (n > 0).then(|| ok as f64 / n as f64);
            r.mtta_s = (r.acknowledged > 0).then(|| a.ack_sum / r.acknowledged as f64);
            r.mttr_s = (r.resolved > 0).then(|| a.res_sum / r.resolved as f64);
            r.ack_compliance = ratio(a.ack_ok, a.ack_judged);
            r.resolve_compliance = ratio(a.res_ok, a.res_judged);
            r
        })
        .collect()
}

/// A breach found by [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    Acknowledge,
    Resolve,
}

/// The breaches `i` has newly made by `now`.
pub fn check(policy: &Policy, i: &Incident, now: DateTime<Utc>) -> Vec<Breach> {
    let mut out = Vec::new();
    if !i.status.is_open() {
        return out;
    }
    let Some(t) = policy.target(&i.category, i.sla.mode) else {
        return out;
    };
    let elapsed = policy.elapsed(&t, i, now);
    if i.acknowledged_at.is_none() && i.sla.ack_breached_at.is_none() && elapsed > t.ack_ms {
        out.push(Breach::Acknowledge);
    }
    if i.resolved_at.is_none() && i.sla.resolve_breached_at.is_none() && elapsed > t.resolve_ms {
        out.push(Breach::Resolve);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_incidents_have_a_72_hour_deadline_unless_named() {
        let p = Policy::default();
        assert_eq!(p.target(SECURITY, Mode::Normal), Some(SECURITY_TARGET));
        assert_eq!(p.target(SECURITY, Mode::Emergency), Some(SECURITY_TARGET));
        assert_eq!(p.target("pothole", Mode::Normal), None);
        let spec: SlaPolicy = serde_json::from_value(serde_json::json!({
            "normal": {"*": {"acknowledge": "PT1H", "resolve": "PT4H"}}
        }))
        .unwrap();
        let p = Policy::compile(spec).unwrap();
        assert_eq!(p.target(SECURITY, Mode::Normal), Some(SECURITY_TARGET));
        let spec: SlaPolicy = serde_json::from_value(serde_json::json!({
            "normal": {"security": {"acknowledge": "PT1H", "resolve": "PT24H"}}
        }))
        .unwrap();
        let p = Policy::compile(spec).unwrap();
        assert_eq!(
            p.target(SECURITY, Mode::Normal).unwrap().resolve_ms,
            24 * 3600 * 1000
        );
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn policy(business: bool) -> Policy {
        Policy::compile(SlaPolicy {
            normal: [(
                "*".to_string(),
                TargetSpec {
                    acknowledge: "30m".into(),
                    resolve: "4h".into(),
                    business_hours: business,
                },
            )]
            .into(),
            emergency: [(
                "*".to_string(),
                TargetSpec {
                    acknowledge: "5m".into(),
                    resolve: "1h".into(),
                    business_hours: false,
                },
            )]
            .into(),
            calendar: Some(CalendarSpec {
                timezone: "Asia/Shanghai".into(),
                days: ["mon", "tue", "wed", "thu", "fri"]
                    .map(String::from)
                    .to_vec(),
                start: "09:00".into(),
                end: "17:00".into(),
                holidays: vec![NaiveDate::from_ymd_opt(2026, 3, 4).unwrap()],
            }),
            escalate_to: BTreeMap::new(),
        })
        .unwrap()
    }

    #[test]
    fn business_hours_skip_nights_weekends_and_holidays() {
        let p = policy(true);
        let tg = p.target("x", Mode::Normal).unwrap();
        // Fri 2026-02-27 16:00 Shanghai (08:00Z) to Mon 10:00 Shanghai (02:00Z): 1 h + 1 h.
        assert_eq!(
            p.counted(&tg, t("2026-02-27T08:00:00Z"), t("2026-03-02T02:00:00Z")),
            2 * 3_600_000
        );
        // Tue 16:00 to Thu 10:00 over the Wednesday holiday: 1 h + 1 h.
        assert_eq!(
            p.counted(&tg, t("2026-03-03T08:00:00Z"), t("2026-03-05T02:00:00Z")),
            2 * 3_600_000
        );
        // Emergency targets are wall-clock and shorter.
        let e = p.target("x", Mode::Emergency).unwrap();
        assert_eq!((e.ack_ms, e.business_hours), (300_000, false));
    }

    #[test]
    fn bad_policies_name_the_field() {
        let mut spec = policy(false).spec;
        spec.normal.get_mut("*").unwrap().resolve = "10m".into();
        assert!(Policy::compile(spec)
            .unwrap_err()
            .starts_with("normal.*.resolve"));
        let mut spec = policy(true).spec;
        spec.calendar = None;
        assert!(Policy::compile(spec)
            .unwrap_err()
            .contains("needs a 'calendar'"));
        let mut spec = policy(true).spec;
        spec.calendar.as_mut().unwrap().timezone = "Mars/Olympus".into();
        assert!(Policy::compile(spec)
            .unwrap_err()
            .starts_with("calendar.timezone"));
    }
}
