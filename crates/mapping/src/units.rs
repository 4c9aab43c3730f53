//! Unit conversion between UN/CEFACT common codes (Recommendation 20), the codes NGSI-LD
//! `unitCode` and the Smart Data Models use. Each code is a linear function of the SI
//! unit of its dimension; conversion goes through it. Only codes of the same dimension
//! convert.

/// A physical dimension; codes convert only within one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Temperature,
    Speed,
    Length,
    Mass,
    Pressure,
    Volume,
    Time,
    Power,
    Energy,
    MassConcentration,
    Ratio,
    Angle,
    Flow,
    Area,
}

/// `si = value * factor + offset`.
struct Unit {
    code: &'static str,
    dim: Dim,
    factor: f64,
    offset: f64,
}

const fn u(code: &'static str, dim: Dim, factor: f64) -> Unit {
    Unit {
        code,
        dim,
        factor,
        offset: 0.0,
    }
}

const UNITS: &[Unit] = &[
    // temperature, SI kelvin
    u("KEL", Dim::Temperature, 1.0),
    Unit {
        code: "CEL",
        dim: Dim::Temperature,
        factor: 1.0,
        offset: 273.15,
    },
    Unit {
        code: "FAH",
        dim: Dim::Temperature,
        factor: 5.0 / 9.0,
        offset: 273.15 - 32.0 * 5.0 / 9.0,
    },
    // speed, m/s
    u("MTS", Dim::Speed, 1.0),
    u("KMH", Dim::Speed, 1000.0 / 3600.0),
    u("HM", Dim::Speed, 1609.344 / 3600.0),
    u("KNT", Dim::Speed, 1852.0 / 3600.0),
    // length, metre
    u("MTR", Dim::Length, 1.0),
    u("KMT", Dim::Length, 1000.0),
    u("CMT", Dim::Length, 0.01),
    u("MMT", Dim::Length, 0.001),
    u("FOT", Dim::Length, 0.3048),
    u("INH", Dim::Length, 0.0254),
    u("SMI", Dim::Length, 1609.344),
    u("NMI", Dim::Length, 1852.0),
    // mass, kilogram
    u("KGM", Dim::Mass, 1.0),
    u("GRM", Dim::Mass, 0.001),
    u("TNE", Dim::Mass, 1000.0),
    u("LBR", Dim::Mass, 0.453_592_37),
    // pressure, pascal
    u("PAL", Dim::Pressure, 1.0),
    u("A97", Dim::Pressure, 100.0),
    u("KPA", Dim::Pressure, 1000.0),
    u("BAR", Dim::Pressure, 100_000.0),
    u("MBR", Dim::Pressure, 100.0),
    u("ATM", Dim::Pressure, 101_325.0),
    u("PS", Dim::Pressure, 6_894.757),
    // volume, cubic metre
    u("MTQ", Dim::Volume, 1.0),
    u("LTR", Dim::Volume, 0.001),
    u("MLT", Dim::Volume, 1e-6),
    u("GLL", Dim::Volume, 0.003_785_411_784),
    // time, second
    u("SEC", Dim::Time, 1.0),
    u("MIN", Dim::Time, 60.0),
    u("HUR", Dim::Time, 3600.0),
    u("DAY", Dim::Time, 86_400.0),
    u("C26", Dim::Time, 0.001),
    // power, watt
    u("WTT", Dim::Power, 1.0),
    u("KWT", Dim::Power, 1000.0),
    u("MAW", Dim::Power, 1e6),
    // energy, joule
    u("JOU", Dim::Energy, 1.0),
    u("KJO", Dim::Energy, 1000.0),
    u("WHR", Dim::Energy, 3600.0),
    u("KWH", Dim::Energy, 3.6e6),
    u("MWH", Dim::Energy, 3.6e9),
    // mass concentration, kg/m³
    u("GQ", Dim::MassConcentration, 1e-9),
    u("GP", Dim::MassConcentration, 1e-6),
    u("23", Dim::MassConcentration, 1.0),
    // ratio
    u("C62", Dim::Ratio, 1.0),
    u("P1", Dim::Ratio, 0.01),
    u("59", Dim::Ratio, 1e-6),
    u("61", Dim::Ratio, 1e-9),
    // angle, radian
    u("C81", Dim::Angle, 1.0),
    u("DD", Dim::Angle, std::f64::consts::PI / 180.0),
    // volume flow, m³/s
    u("MQS", Dim::Flow, 1.0),
    u("MQH", Dim::Flow, 1.0 / 3600.0),
    u("L2", Dim::Flow, 0.001 / 60.0),
    // area, m²
    u("MTK", Dim::Area, 1.0),
    u("KMK", Dim::Area, 1e6),
    u("HAR", Dim::Area, 10_000.0),
];

fn find(code: &str) -> Option<&'static Unit> {
    UNITS.iter().find(|u| u.code == code)
}

/// Whether `code` is a UN/CEFACT code this table knows.
pub fn known(code: &str) -> bool {
    find(code).is_some()
}

/// A compiled conversion `to = from * factor + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conversion {
    pub factor: f64,
    pub offset: f64,
}

impl Conversion {
    pub fn apply(&self, v: f64) -> f64 {
        v * self.factor + self.offset
    }
}

/// The conversion from `from` to `to`, or why there is none.
pub fn conversion(from: &str, to: &str) -> Result<Conversion, String> {
    let f = find(from).ok_or_else(|| format!("unknown UN/CEFACT unit code '{from}'"))?;
    let t = find(to).ok_or_else(|| format!("unknown UN/CEFACT unit code '{to}'"))?;
    if f.dim != t.dim {
        return Err(format!(
            "cannot convert '{from}' ({:?}) to '{to}' ({:?})",
            f.dim, t.dim
        ));
    }
    // si = v*ff + fo ; to = (si - to_o)/tf
    Ok(Conversion {
        factor: f.factor / t.factor,
        offset: (f.offset - t.offset) / t.factor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(a: &str, b: &str, v: f64) -> f64 {
        conversion(a, b).unwrap().apply(v)
    }

    #[test]
    fn conversions() {
        assert!((conv("FAH", "CEL", 212.0) - 100.0).abs() < 1e-9);
        assert!((conv("CEL", "FAH", -40.0) + 40.0).abs() < 1e-9);
        assert!((conv("CEL", "KEL", 0.0) - 273.15).abs() < 1e-9);
        assert!((conv("MTS", "KMH", 10.0) - 36.0).abs() < 1e-9);
        assert!((conv("HM", "KMH", 60.0) - 96.560_64).abs() < 1e-6);
        assert!((conv("GP", "GQ", 1.0) - 1000.0).abs() < 1e-9);
        assert!((conv("A97", "PAL", 1013.25) - 101_325.0).abs() < 1e-6);
        assert!(conversion("CEL", "KMH").is_err());
        assert!(conversion("XXX", "KMH").is_err());
    }

    #[test]
    fn codes_are_unique() {
        for (i, a) in UNITS.iter().enumerate() {
            assert!(
                UNITS[i + 1..].iter().all(|b| b.code != a.code),
                "{}",
                a.code
            );
        }
    }
}
