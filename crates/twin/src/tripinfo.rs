//! SUMO's trip information output, written with `--tripinfo-output.write-unfinished`
//! and `--tripinfo-output.write-undeparted`: one record per vehicle that was due,
//! finished or not. The delay definitions follow the RESCO benchmark.

use std::path::Path;

use serde::Serialize;

use crate::xml::each_element;
use crate::TwinError;

/// Delay figures over one run's trips.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TripStats {
    /// Vehicles due to depart by the end (finished, driving or never inserted).
    pub trips: usize,
    /// Finished trips.
    pub throughput: usize,
    /// Vehicles due but never let into the network.
    pub never_inserted: usize,
    /// Mean `timeLoss + departDelay` of finished trips (s).
    pub mean_delay_s: f64,
    /// Mean delay of every due vehicle: finished as above, driving with their delay so
    /// far, never inserted with end time minus scheduled departure (s).
    pub mean_delay_all_s: f64,
    /// Mean waiting time (speed below 0.1 m/s) of finished trips (s).
    pub mean_waiting_s: f64,
    /// Mean duration of finished trips (s).
    pub mean_travel_time_s: f64,
}

pub fn read(path: &Path) -> Result<TripStats, TwinError> {
    read_excluding(path, "")
}

/// [`read`], leaving out vehicles whose id starts with `prefix` (ambulances: the
/// figures are the other traffic's); an empty prefix leaves none out.
pub fn read_excluding(path: &Path, prefix: &str) -> Result<TripStats, TwinError> {
    let mut s = TripStats::default();
    let (mut delay, mut delay_all, mut wait, mut travel) = (0.0, 0.0, 0.0, 0.0);
    each_element(path, |name, a, _| {
        if name != "tripinfo" {
            return Ok(());
        }
        if !prefix.is_empty() && a.get("id").is_some_and(|id| id.starts_with(prefix)) {
            return Ok(());
        }
        let num = |k: &str| a.f64(k).map(|v| v.unwrap_or(0.0));
        let depart = num("depart")?;
        let arrival = num("arrival")?;
        let depart_delay = num("departDelay")?;
        let time_loss = num("timeLoss")?;
        s.trips += 1;
        delay_all += time_loss + depart_delay;
        if depart < 0.0 {
            s.never_inserted += 1;
        } else if arrival >= 0.0 {
            s.throughput += 1;
            delay += time_loss + depart_delay;
            wait += num("waitingTime")?;
            travel += num("duration")?;
        }
        Ok(())
    })?;
    if s.throughput > 0 {
        let n = s.throughput as f64;
        s.mean_delay_s = delay / n;
        s.mean_waiting_s = wait / n;
        s.mean_travel_time_s = travel / n;
    }
    if s.trips > 0 {
        s.mean_delay_all_s = delay_all / s.trips as f64;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_driving_and_never_inserted_count_as_resco_defines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.xml");
        std::fs::write(
            &p,
            r#"<tripinfos>
  <tripinfo id="a" depart="10" departDelay="2" arrival="70" duration="60" waitingTime="5" timeLoss="8"/>
  <tripinfo id="b" depart="20" departDelay="0" arrival="-1.00" duration="80" waitingTime="30" timeLoss="40"/>
  <tripinfo id="c" depart="-1" departDelay="50" arrival="-1.00" duration="0" waitingTime="0" timeLoss="0"/>
</tripinfos>"#,
        )
        .unwrap();
        let s = read(&p).unwrap();
        assert_eq!((s.trips, s.throughput, s.never_inserted), (3, 1, 1));
        assert_eq!(s.mean_delay_s, 10.0);
        assert_eq!(s.mean_delay_all_s, (10.0 + 40.0 + 50.0) / 3.0);
        assert_eq!(s.mean_waiting_s, 5.0);
        assert_eq!(s.mean_travel_time_s, 60.0);
        let others = read_excluding(&p, "c").unwrap();
        assert_eq!((others.trips, others.never_inserted), (2, 0));
    }
}
