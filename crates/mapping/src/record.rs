//! Records and the paths that read values out of them. A record is one JSON value, one
//! CSV row or one XML element (with its subtree); a path is parsed once, when the
//! mapping is loaded, in the syntax of the source's format.

use serde_json::Value;

use crate::mapping::Format;

pub mod node;

pub use node::Node;

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
    /// `*` / `[*]`: every element of an array (or every member value of an object).
    Any,
}

/// An XML element with its attributes, text and children.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct XmlElem {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<XmlElem>,
}

impl XmlElem {
    fn child(&self, name: &str) -> Option<&XmlElem> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Writes the element back as XML (dead letters keep records in their own format).
    pub fn to_xml(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("=\"");
            escape_xml(v, out);
            out.push('"');
        }
        out.push('>');
        escape_xml(&self.text, out);
        for c in &self.children {
            c.to_xml(out);
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

fn escape_xml(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
}

/// What a path ends on in an XML element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlLeaf {
    Text,
    Attr(String),
}

/// A path to one value inside a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPath {
    Json(Vec<Seg>),
    /// A CSV column by header name, or by position when the file has no header.
    CsvName(String),
    CsvIndex(usize),
    Xml(Vec<String>, XmlLeaf),
}

/// A record as the decoders hand it to the mapping engine.
#[derive(Debug, Clone, Copy)]
pub enum Record<'a> {
    Json(&'a Node),
    Csv {
        headers: &'a [String],
        row: &'a csv::StringRecord,
    },
    Xml(&'a XmlElem),
}

impl Record<'_> {
    /// The value at `path`, or `None` when the record has none there. CSV and XML give
    /// strings; an empty CSV cell counts as missing.
    pub fn get(&self, path: &FieldPath) -> Option<Value> {
        match (self, path) {
            (Record::Json(v), FieldPath::Json(segs)) => json_get(v, segs).map(Node::to_value),
            (Record::Csv { headers, row }, FieldPath::CsvName(n)) => {
                let i = headers.iter().position(|h| h == n)?;
                non_empty(row.get(i))
            }
            (Record::Csv { row, .. }, FieldPath::CsvIndex(i)) => non_empty(row.get(*i)),
            (Record::Xml(e), FieldPath::Xml(steps, leaf)) => {
                let mut cur = *e;
                for s in steps {
                    cur = cur.child(s)?;
                }
                match leaf {
                    XmlLeaf::Text => {
                        let t = cur.text.trim();
                        (!t.is_empty()).then(|| Value::String(t.to_string()))
                    }
                    XmlLeaf::Attr(a) => cur
                        .attrs
                        .iter()
                        .find(|(k, _)| k == a)
                        .map(|(_, v)| Value::String(v.clone())),
                }
            }
            _ => None,
        }
    }

    /// Whether values read from this record are text (CSV, XML) rather than typed JSON.
    pub fn is_text(&self) -> bool {
        !matches!(self, Record::Json(_))
    }

    /// The record in its own format, for a dead letter: JSON text, a two-line CSV
    /// (header and row), or the element as XML.
    pub fn raw(&self, delimiter: u8) -> Vec<u8> {
        match self {
            Record::Json(v) => crate::json_bytes(v, "JSON record"),
            Record::Csv { headers, row } => {
                let mut w = csv::WriterBuilder::new()
                    .delimiter(delimiter)
                    .from_writer(Vec::new());
                if !headers.is_empty() {
                    let _ = w.write_record(headers.iter());
                }
                let _ = w.write_record(row.iter());
                w.into_inner().unwrap_or_default()
            }
            Record::Xml(e) => {
                let mut s = String::new();
                e.to_xml(&mut s);
                s.into_bytes()
            }
        }
    }
}

fn non_empty(s: Option<&str>) -> Option<Value> {
    s.filter(|s| !s.is_empty())
        .map(|s| Value::String(s.to_string()))
}

fn json_get<'v>(mut v: &'v Node, segs: &[Seg]) -> Option<&'v Node> {
    for s in segs {
        v = match (s, v) {
            (Seg::Key(k), Node::Object(_)) => v.get(k)?,
            (Seg::Index(i), Node::Array(a)) => a.get(*i)?,
            (Seg::Key(k), Node::Array(a)) => a.get(k.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!v.is_null()).then_some(v)
}

/// Why a path does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathError(pub String);

/// Parses a JSON path: a JSON pointer (`/a/b/0`), a JSONPath (`$.a.b[0]`, `$['a b']`,
/// `$.items[*]`) or a dotted path (`a.b.0`).
pub fn parse_json_path(p: &str) -> Result<Vec<Seg>, PathError> {
    if p.is_empty() || p == "/" || p == "$" {
        return Ok(Vec::new());
    }
    if let Some(rest) = p.strip_prefix('/') {
        return Ok(rest
            .split('/')
            .map(|s| {
                let s = s.replace("~1", "/").replace("~0", "~");
                if s == "*" {
                    Seg::Any
                } else {
                    Seg::Key(s)
                }
            })
            .collect());
    }
    let body = p.strip_prefix('$').unwrap_or(p);
    let mut segs = Vec::new();
    let mut chars = body.chars().peekable();
    let mut cur = String::new();
    let flush = |cur: &mut String, segs: &mut Vec<Seg>| {
        if !cur.is_empty() {
            segs.push(if cur == "*" {
                Seg::Any
            } else {
                Seg::Key(std::mem::take(cur))
            });
            cur.clear();
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '.' => flush(&mut cur, &mut segs),
            '[' => {
                flush(&mut cur, &mut segs);
                let mut inner = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == ']' {
                        closed = true;
                        break;
                    }
                    inner.push(c);
                }
                if !closed {
                    return Err(PathError(format!("'{p}': unclosed '['")));
                }
                let inner = inner.trim();
                if inner == "*" {
                    segs.push(Seg::Any);
                } else if let Ok(i) = inner.parse::<usize>() {
                    segs.push(Seg::Index(i));
                } else if let Some(q) = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                {
                    segs.push(Seg::Key(q.to_string()));
                } else {
                    return Err(PathError(format!(
                        "'{p}': '[{inner}]' is not an index, '*' or a quoted name \
                         (filters and slices are not supported)"
                    )));
                }
            }
            _ => cur.push(c),
        }
    }
    flush(&mut cur, &mut segs);
    if segs.is_empty() && !body.is_empty() {
        return Err(PathError(format!("'{p}' names nothing")));
    }
    Ok(segs)
}

/// Parses a path inside an XML record element: `child/grandchild`, `@attr`,
/// `child/@attr`, `.` or `text()` for the element's own text.
pub fn parse_xml_path(p: &str) -> Result<(Vec<String>, XmlLeaf), PathError> {
    if p.starts_with('/') {
        return Err(PathError(format!(
            "'{p}': paths inside a record are relative to the record element (no leading '/')"
        )));
    }
    let mut steps: Vec<String> = Vec::new();
    let mut leaf = XmlLeaf::Text;
    let parts: Vec<&str> = p.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if part.is_empty() {
            return Err(PathError(format!("'{p}': empty step")));
        }
        if let Some(a) = part.strip_prefix('@') {
            if !last || a.is_empty() {
                return Err(PathError(format!(
                    "'{p}': an attribute step '@name' must come last"
                )));
            }
            leaf = XmlLeaf::Attr(a.to_string());
        } else if *part == "text()" || *part == "." {
            if !last {
                return Err(PathError(format!("'{p}': '{part}' must come last")));
            }
        } else {
            steps.push((*part).to_string());
        }
    }
    Ok((steps, leaf))
}

/// Parses a path for records of `format`.
pub fn parse_field_path(format: Format, csv_header: bool, p: &str) -> Result<FieldPath, PathError> {
    if p.trim().is_empty() {
        return Err(PathError("the path is empty".into()));
    }
    match format {
        Format::Json | Format::Jsonl => Ok(FieldPath::Json(parse_json_path(p)?)),
        Format::Csv if csv_header => Ok(FieldPath::CsvName(p.to_string())),
        Format::Csv => p.parse::<usize>().map(FieldPath::CsvIndex).map_err(|_| {
            PathError(format!(
                "'{p}': without a header row, CSV columns are named by position (0, 1, ...)"
            ))
        }),
        Format::Xml => {
            let (s, l) = parse_xml_path(p)?;
            Ok(FieldPath::Xml(s, l))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_paths_in_three_syntaxes() {
        let want = vec![Seg::Key("a".into()), Seg::Key("b".into()), Seg::Index(0)];
        assert_eq!(parse_json_path("$.a.b[0]").unwrap(), want);
        assert_eq!(parse_json_path("a.b[0]").unwrap(), want);
        let v = Node::from(json!({"a": {"b": [7]}}));
        let rec = Record::Json(&v);
        for p in ["/a/b/0", "$.a.b[0]", "a.b.0", "$['a'].b[0]"] {
            let fp = parse_field_path(Format::Json, true, p).unwrap();
            assert_eq!(rec.get(&fp), Some(json!(7)), "{p}");
        }
        assert_eq!(
            parse_json_path("$.items[*]").unwrap(),
            vec![Seg::Key("items".into()), Seg::Any]
        );
        assert!(parse_json_path("$.a[?(@.x)]").is_err());
        assert!(parse_json_path("$.a[0").is_err());
    }

    #[test]
    fn xml_paths() {
        let e = XmlElem {
            name: "read".into(),
            attrs: vec![("id".into(), "7".into())],
            text: String::new(),
            children: vec![XmlElem {
                name: "plate".into(),
                attrs: vec![("country".into(), "CN".into())],
                text: " 京A12345 ".into(),
                children: vec![],
            }],
        };
        let r = Record::Xml(&e);
        let get = |p: &str| r.get(&parse_field_path(Format::Xml, true, p).unwrap());
        assert_eq!(get("@id"), Some(json!("7")));
        assert_eq!(get("plate"), Some(json!("京A12345")));
        assert_eq!(get("plate/text()"), Some(json!("京A12345")));
        assert_eq!(get("plate/@country"), Some(json!("CN")));
        assert_eq!(get("missing"), None);
        assert!(parse_xml_path("@a/b").is_err());
        assert!(parse_xml_path("/abs").is_err());
        let mut s = String::new();
        e.to_xml(&mut s);
        assert!(s.contains("<plate country=\"CN\">"), "{s}");
    }

    #[test]
    fn csv_columns() {
        let headers = vec!["id".to_string(), "bikes".to_string()];
        let row = csv::StringRecord::from(vec!["d1", ""]);
        let r = Record::Csv {
            headers: &headers,
            row: &row,
        };
        assert_eq!(r.get(&FieldPath::CsvName("id".into())), Some(json!("d1")));
        assert_eq!(r.get(&FieldPath::CsvName("bikes".into())), None);
        assert_eq!(r.get(&FieldPath::CsvIndex(0)), Some(json!("d1")));
        assert!(parse_field_path(Format::Csv, false, "id").is_err());
        assert_eq!(String::from_utf8(r.raw(b',')).unwrap(), "id,bikes\nd1,\n");
    }
}
