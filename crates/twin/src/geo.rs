//! Network coordinates to WGS 84, so the platform and the map see the twin where the
//! city is. A geo-referenced network (`projParameter` a UTM PROJ string, as
//! netconvert writes for OpenStreetMap imports) is inverted exactly (Snyder's series,
//! sub-millimetre inside a zone); a network without a projection (generated grids) is
//! placed at a configured origin with a local tangent plane.

use crate::net::Location;

#[derive(Debug, Clone, PartialEq)]
pub enum Geo {
    /// Metres east/north of the network's centre, around (lon0, lat0).
    Local {
        lon0: f64,
        lat0: f64,
        cx: f64,
        cy: f64,
    },
    /// UTM, WGS 84: zone, southern hemisphere, and the network's offset.
    Utm {
        zone: u32,
        south: bool,
        dx: f64,
        dy: f64,
    },
}

impl Geo {
    /// How to place this network: its own projection where it is UTM, else at `origin`
    /// (lon, lat). The reason is returned when a projection could not be used.
    pub fn for_net(loc: &Location, origin: (f64, f64)) -> (Geo, Option<String>) {
        let proj = loc.proj.trim();
        let [x0, y0, x1, y1] = loc.conv_boundary;
        let local = Geo::Local {
            lon0: origin.0,
            lat0: origin.1,
            cx: (x0 + x1) / 2.0,
            cy: (y0 + y1) / 2.0,
        };
        if proj.is_empty() || proj == "!" {
            return (local, None);
        }
        let mut zone = None;
        let mut utm = false;
        let mut south = false;
        let mut wgs84 = true;
        for part in proj.split_whitespace() {
            let part = part.trim_start_matches('+');
            match part.split_once('=') {
                Some(("proj", p)) => utm = p == "utm",
                Some(("zone", z)) => zone = z.parse::<u32>().ok(),
                Some(("ellps", e)) | Some(("datum", e)) => wgs84 &= e.eq_ignore_ascii_case("WGS84"),
                None if part == "south" => south = true,
                _ => {}
            }
        }
        match zone {
            Some(zone) if utm && wgs84 && (1..=60).contains(&zone) => (
                Geo::Utm {
                    zone,
                    south,
                    dx: loc.net_offset.0,
                    dy: loc.net_offset.1,
                },
                None,
            ),
            _ => (
                local,
                Some(format!(
                    "projection {proj:?} is not UTM on WGS 84; placed at the configured origin"
                )),
            ),
        }
    }

    /// (lon, lat) in degrees.
    pub fn lon_lat(&self, x: f64, y: f64) -> (f64, f64) {
        match *self {
            Geo::Local { lon0, lat0, cx, cy } => {
                let lat = lat0 + (y - cy) / 110_574.0;
                let lon = lon0 + (x - cx) / (111_320.0 * lat0.to_radians().cos());
                (lon, lat)
            }
            Geo::Utm {
                zone,
                south,
                dx,
                dy,
            } => utm_inverse(zone, south, x - dx, y - dy),
        }
    }
}

/// UTM (WGS 84) easting/northing to (lon, lat) degrees (Snyder 1987, pp. 63–64).
pub fn utm_inverse(zone: u32, south: bool, easting: f64, northing: f64) -> (f64, f64) {
    let a = 6_378_137.0_f64;
    let f: f64 = 1.0 / 298.257_223_563;
    let k0: f64 = 0.9996;
    let e2 = f * (2.0 - f);
    let ep2 = e2 / (1.0 - e2);
    let x = easting - 500_000.0;
    let y = if south {
        northing - 10_000_000.0
    } else {
        northing
    };
    let m = y / k0;
    let mu = m / (a * (1.0 - e2 / 4.0 - 3.0 * e2 * e2 / 64.0 - 5.0 * e2.powi(3) / 256.0));
    let e1 = (1.0 - (1.0 - e2).sqrt()) / (1.0 + (1.0 - e2).sqrt());
    let phi1 = mu
        + (3.0 * e1 / 2.0 - 27.0 * e1.powi(3) / 32.0) * (2.0 * mu).sin()
        + (21.0 * e1 * e1 / 16.0 - 55.0 * e1.powi(4) / 32.0) * (4.0 * mu).sin()
        + (151.0 * e1.powi(3) / 96.0) * (6.0 * mu).sin()
        + (1097.0 * e1.powi(4) / 512.0) * (8.0 * mu).sin();
    let (s, c, t) = (phi1.sin(), phi1.cos(), phi1.tan());
    let n1 = a / (1.0 - e2 * s * s).sqrt();
    let t1 = t * t;
    let c1 = ep2 * c * c;
    let r1 = a * (1.0 - e2) / (1.0 - e2 * s * s).powf(1.5);
    let d = x / (n1 * k0);
    let lat = phi1
        - (n1 * t / r1)
            * (d * d / 2.0
                - (5.0 + 3.0 * t1 + 10.0 * c1 - 4.0 * c1 * c1 - 9.0 * ep2) * d.powi(4) / 24.0
                + (61.0 + 90.0 * t1 + 298.0 * c1 + 45.0 * t1 * t1 - 252.0 * ep2 - 3.0 * c1 * c1)
                    * d.powi(6)
                    / 720.0);
    let lon0 = (f64::from(zone) - 1.0) * 6.0 - 180.0 + 3.0;
    let lon = lon0
        + ((d - (1.0 + 2.0 * t1 + c1) * d.powi(3) / 6.0
            + (5.0 - 2.0 * c1 + 28.0 * t1 - 3.0 * c1 * c1 + 8.0 * ep2 + 24.0 * t1 * t1)
                * d.powi(5)
                / 120.0)
            / c)
            .to_degrees();
    (lon, lat.to_degrees())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: SUMO 1.28's own conversion (PROJ, `traci.simulation.convertGeo`) of
    /// points of the RESCO cologne1 network (UTM 32N, netOffset -342498.65,-5630866.92).
    #[test]
    fn utm_points_agree_with_sumo_and_proj() {
        let loc = Location {
            net_offset: (-342_498.65, -5_630_866.92),
            proj: "+proj=utm +zone=32 +ellps=WGS84 +datum=WGS84 +units=m +no_defs".into(),
            conv_boundary: [11543.90, 13228.14, 12159.14, 13425.53],
        };
        let (g, why) = Geo::for_net(&loc, (0.0, 0.0));
        assert!(why.is_none());
        for ((x, y), (lon, lat)) in [
            ((0.0, 0.0), (6.764_513_600_989_301, 50.808_098_042_057_644)),
            (
                (500.0, 300.0),
                (6.771_476_259_549_281_5, 50.810_929_555_811_41),
            ),
            (
                (1000.0, -200.0),
                (6.778_780_884_071_641, 50.806_571_839_914_035),
            ),
        ] {
            let (a, b) = g.lon_lat(x, y);
            assert!(
                (a - lon).abs() < 1e-7 && (b - lat).abs() < 1e-7,
                "({x},{y}) → {a},{b}"
            );
        }
        // The zone's central meridian on the equator; the south mirrors the north.
        let (lon, lat) = utm_inverse(51, false, 500_000.0, 0.0);
        assert!((lon - 123.0).abs() < 1e-9 && lat.abs() < 1e-9);
        let (ln, la) = utm_inverse(32, false, 342_498.65, 5_630_866.92);
        let (sn, sa) = utm_inverse(32, true, 342_498.65, 10_000_000.0 - 5_630_866.92);
        assert!((ln - sn).abs() < 1e-9 && (la + sa).abs() < 1e-9);
    }

    #[test]
    fn unprojected_networks_sit_at_the_origin() {
        let loc = Location {
            net_offset: (0.0, 0.0),
            proj: "!".into(),
            conv_boundary: [0.0, 0.0, 1000.0, 1000.0],
        };
        let (g, why) = Geo::for_net(&loc, (120.155, 30.245));
        assert!(why.is_none());
        let (lon, lat) = g.lon_lat(500.0, 500.0);
        assert!((lon - 120.155).abs() < 1e-12 && (lat - 30.245).abs() < 1e-12);
        let (_, lat_n) = g.lon_lat(500.0, 1500.0);
        assert!((lat_n - 30.245 - 1000.0 / 110_574.0).abs() < 1e-12);
        let loc = Location {
            proj: "+proj=tmerc +lat_0=0".into(),
            ..loc
        };
        let (_, why) = Geo::for_net(&loc, (0.0, 0.0));
        assert!(why.is_some());
    }
}
