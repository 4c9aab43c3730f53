//! Well-Known Text to GeoJSON for `POINT`, `LINESTRING`, `POLYGON` and their `MULTI`
//! forms (2D; a Z or M ordinate is dropped). Enough for the geometries vendors export;
//! anything else is a clear error.

use serde_json::{json, Value};

/// Parses WKT into a GeoJSON geometry.
pub fn parse_wkt(s: &str) -> Result<Value, String> {
    let s = s.trim();
    let open = s
        .find('(')
        .ok_or_else(|| format!("'{}' is not WKT (no '(')", short(s)))?;
    let head = s[..open].trim().to_ascii_uppercase();
    let kind = head
        .split_whitespace()
        .next()
        .ok_or_else(|| "WKT without a geometry type".to_string())?
        .to_string();
    if !s.ends_with(')') {
        return Err(format!("'{}': unbalanced parentheses", short(s)));
    }
    let body = &s[open..];
    let tree = parse_group(body)?;
    let (ty, coords) = match kind.as_str() {
        "POINT" => ("Point", point(tree.only()?)?),
        "LINESTRING" => ("LineString", line(&tree)?),
        "POLYGON" => ("Polygon", polygon(&tree)?),
        "MULTIPOINT" => (
            "MultiPoint",
            Value::Array(
                tree.items()?
                    .iter()
                    .map(|t| match t {
                        Node::Coords(c) => point(c),
                        Node::Group(g) => point(Node::Group(g.clone()).only()?),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        ),
        "MULTILINESTRING" => (
            "MultiLineString",
            Value::Array(tree.items()?.iter().map(line).collect::<Result<_, _>>()?),
        ),
        "MULTIPOLYGON" => (
            "MultiPolygon",
            Value::Array(
                tree.items()?
                    .iter()
                    .map(polygon)
                    .collect::<Result<_, _>>()?,
            ),
        ),
        other => return Err(format!("WKT type '{other}' is not supported")),
    };
    Ok(json!({"type": ty, "coordinates": coords}))
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

#[derive(Debug, Clone)]
enum Node {
    /// Comma-separated coordinate tuples, e.g. `1 2, 3 4`.
    Coords(Vec<f64>),
    Group(Vec<Node>),
}

impl Node {
    fn items(&self) -> Result<&[Node], String> {
        match self {
            Node::Group(g) => Ok(g),
            Node::Coords(_) => Err("expected a parenthesised list".into()),
        }
    }

    fn only(&self) -> Result<&Vec<f64>, String> {
        match self.items()? {
            [Node::Coords(c)] => Ok(c),
            _ => Err("expected one coordinate tuple".into()),
        }
    }
}

/// Parses `( ... )` where items are tuples or nested groups.
fn parse_group(s: &str) -> Result<Node, String> {
    let bytes = s.as_bytes();
    let mut stack: Vec<Vec<Node>> = Vec::new();
    let mut tok = String::new();
    let mut done: Option<Node> = None;
    let flush = |tok: &mut String, top: &mut Vec<Node>| -> Result<(), String> {
        let t = tok.trim();
        if !t.is_empty() {
            let nums = t
                .split_whitespace()
                .map(|n| {
                    n.parse::<f64>()
                        .map_err(|_| format!("'{n}' is not a number"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if nums.len() < 2 || nums.len() > 4 || nums.iter().any(|n| !n.is_finite()) {
                return Err(format!("'{t}' is not a coordinate tuple"));
            }
            top.push(Node::Coords(nums[..2].to_vec()));
        }
        tok.clear();
        Ok(())
    };
    for &b in bytes {
        if done.is_some() {
            if !b.is_ascii_whitespace() {
                return Err("text after the geometry".into());
            }
            continue;
        }
        match b {
            b'(' => {
                if stack.len() >= 4 {
                    return Err("WKT nested too deeply".into());
                }
                stack.push(Vec::new());
            }
            b')' => {
                let mut top = stack.pop().ok_or("unbalanced ')'")?;
                flush(&mut tok, &mut top)?;
                let node = Node::Group(top);
                match stack.last_mut() {
                    Some(parent) => parent.push(node),
                    None => done = Some(node),
                }
            }
            b',' => {
                let top = stack.last_mut().ok_or("',' outside parentheses")?;
                flush(&mut tok, top)?;
            }
            _ => tok.push(b as char),
        }
    }
    done.ok_or_else(|| "unbalanced '('".into())
}

fn point(c: &[f64]) -> Result<Value, String> {
    let (x, y) = (c[0], c[1]);
    if !(-180.0..=180.0).contains(&x) || !(-90.0..=90.0).contains(&y) {
        return Err(format!(
            "POINT({x} {y}) is outside longitude/latitude range"
        ));
    }
    Ok(json!([x, y]))
}

fn line(n: &Node) -> Result<Value, String> {
    let pts = n
        .items()?
        .iter()
        .map(|i| match i {
            Node::Coords(c) => point(c),
            Node::Group(_) => Err("a line is a list of coordinate tuples".into()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if pts.len() < 2 {
        return Err("a line needs at least two points".into());
    }
    Ok(Value::Array(pts))
}

fn polygon(n: &Node) -> Result<Value, String> {
    let rings = n.items()?.iter().map(line).collect::<Result<Vec<_>, _>>()?;
    for r in &rings {
        let a = r.as_array().map(Vec::as_slice).unwrap_or(&[]);
        if a.len() < 4 || a.first() != a.last() {
            return Err("a polygon ring needs at least four points and must be closed".into());
        }
    }
    if rings.is_empty() {
        return Err("a polygon needs a ring".into());
    }
    Ok(Value::Array(rings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(
            parse_wkt("POINT (116.4 39.9)").unwrap(),
            json!({"type":"Point","coordinates":[116.4,39.9]})
        );
        assert_eq!(
            parse_wkt("point z (1 2 3)").unwrap(),
            json!({"type":"Point","coordinates":[1.0,2.0]})
        );
        assert_eq!(
            parse_wkt("LINESTRING(0 0, 1 1)").unwrap()["coordinates"],
            json!([[0.0, 0.0], [1.0, 1.0]])
        );
        assert_eq!(
            parse_wkt("POLYGON((0 0,1 0,1 1,0 0))").unwrap()["type"],
            "Polygon"
        );
        assert_eq!(
            parse_wkt("MULTIPOINT((0 0),(1 1))").unwrap()["coordinates"],
            json!([[0.0, 0.0], [1.0, 1.0]])
        );
        assert_eq!(
            parse_wkt("MULTIPOLYGON(((0 0,1 0,1 1,0 0)))").unwrap()["type"],
            "MultiPolygon"
        );
    }

    #[test]
    fn errors() {
        for bad in [
            "POINT 1 2",
            "POINT(1)",
            "POINT(200 1)",
            "POINT(1 2",
            "POINT(a b)",
            "POLYGON((0 0,1 0,1 1))",
            "CIRCLE(1 2)",
            "POINT(1 2) x",
            "POINT((((((1 2))))))",
            "LINESTRING(1 2)",
        ] {
            assert!(parse_wkt(bad).is_err(), "{bad}");
        }
    }
}
