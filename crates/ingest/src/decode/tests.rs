use super::*;
use crate::mapping::{parse, Syntax};

fn mapping(format: &str, records: Option<&str>) -> Mapping {
    let rec = records
        .map(|r| format!("records = \"{r}\"\n"))
        .unwrap_or_default();
    parse(
        &format!(
            "source = \"s\"\nformat = \"{format}\"\n{rec}[entity]\nid = \"urn:x:{{a}}\"\ntype = \"T\"\n[[attributes]]\nname = \"a\"\npath = \"a\"\n"
        ),
        Syntax::Toml,
        "t.toml",
    )
    .unwrap()
}

fn records(m: &Mapping, input: &str) -> Result<Vec<String>, Reject> {
    let mut out = Vec::new();
    decode(m, input.as_bytes(), 0, &mut |i| match i {
        Item::Record(Owned::Json(v)) => out.push(v.to_string()),
        Item::Record(Owned::Csv { row, .. }) => out.push(row.iter().collect::<Vec<_>>().join("|")),
        Item::Record(Owned::Xml(e)) => {
            let mut s = String::new();
            e.to_xml(&mut s);
            out.push(s)
        }
        Item::Bad { reject, .. } => out.push(format!("BAD {}: {}", reject.reason, reject.message)),
    })?;
    Ok(out)
}

#[test]
fn json_selectors_stream_only_the_records() {
    let doc = r#"{"meta": {"n": 2}, "data": {"items": [{"a": 1}, {"a": 2}]}, "other": [1,2,3]}"#;
    assert_eq!(
        records(&mapping("json", Some("$.data.items[*]")), doc).unwrap(),
        vec![r#"{"a":1}"#, r#"{"a":2}"#]
    );
    assert_eq!(
        records(&mapping("json", Some("/data/items")), doc).unwrap(),
        vec![r#"{"a":1}"#, r#"{"a":2}"#]
    );
    assert_eq!(
        records(&mapping("json", Some("$.data.items[1]")), doc).unwrap(),
        vec![r#"{"a":2}"#]
    );
    assert_eq!(
        records(&mapping("json", None), r#"[{"a":1},{"a":2}]"#)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        records(&mapping("json", None), r#"{"a":1}"#).unwrap(),
        vec![r#"{"a":1}"#]
    );
    // Nested wildcards.
    let nested = r#"{"groups": [{"rows": [{"a": 1}]}, {"rows": [{"a": 2}, {"a": 3}]}]}"#;
    assert_eq!(
        records(&mapping("json", Some("$.groups[*].rows[*]")), nested)
            .unwrap()
            .len(),
        3
    );
    let e = records(
        &mapping("json", Some("$.data.items[*]")),
        r#"{"data": {"items": [{"a": 1}, {"a""#,
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::Decode);
    assert!(e.message.contains("line 1"), "{}", e.message);
    assert!(records(&mapping("json", None), r#"{"a":1} trailing"#).is_err());
}

#[test]
fn json_lines_report_bad_lines_and_go_on() {
    let out = records(
        &mapping("jsonl", None),
        "{\"a\":1}\n\n{broken\n{\"a\":3}\r\n",
    )
    .unwrap();
    assert_eq!(out.len(), 3);
    assert!(
        out[1].starts_with("BAD decode: JSON Lines line 3"),
        "{}",
        out[1]
    );
}

#[test]
fn csv_rows_with_quotes_and_ragged_lines() {
    let out = records(
        &mapping("csv", None),
        "a,b\n1,\"x, y\"\n2\n\"3\",\"he said \"\"hi\"\"\"\n",
    )
    .unwrap();
    assert_eq!(out[0], "1|x, y");
    assert!(
        out[1].starts_with("BAD decode: CSV line 3: 1 fields"),
        "{}",
        out[1]
    );
    assert_eq!(out[2], "3|he said \"hi\"");
    let mut bad = b"a,b\n1,2\n".to_vec();
    bad.extend_from_slice(&[0xff, b',', b'1', b'\n']);
    let mut n = 0;
    let m = mapping("csv", None);
    decode(&m, bad.as_slice(), 0, &mut |i| {
        if let Item::Bad { reject, raw } = i {
            assert_eq!(reject.reason, Reason::Encoding);
            assert!(raw.starts_with(b"a,b\n"));
            n += 1;
        }
    })
    .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn xml_records_by_path_and_anywhere() {
    let doc = r#"<?xml version="1.0"?><r xmlns:p="urn:p"><p:x a="1"><y>t &amp; u &#x41;</y></p:x><x a="2"/><z><x a="3"/></z></r>"#;
    let abs = records(&mapping("xml", Some("/r/x")), doc).unwrap();
    assert_eq!(
        abs,
        vec![r#"<x a="1"><y>t &amp; u A</y></x>"#, r#"<x a="2"></x>"#]
    );
    let any = records(&mapping("xml", Some("//x")), doc).unwrap();
    assert_eq!(any.len(), 3);
    let e = records(&mapping("xml", Some("/r/x")), "<r><x a=\"1\">").unwrap_err();
    assert!(e.message.contains("truncated"), "{}", e.message);
    assert!(records(&mapping("xml", Some("/r/x")), "<r><x></y></r>").is_err());
    assert!(records(&mapping("xml", Some("/r/x")), "<r><x>&bogus;</x></r>").is_err());
}

#[test]
fn skip_resumes_after_n_items() {
    let m = mapping("jsonl", None);
    let mut seen = Vec::new();
    let n = decode(
        &m,
        "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n".as_bytes(),
        2,
        &mut |i| seen.push(format!("{i:?}")),
    )
    .unwrap();
    assert_eq!(n, 3);
    assert_eq!(seen.len(), 1);
}

#[test]
fn payloads_must_be_utf8_as_a_whole() {
    let m = mapping("json", None);
    let e = decode_payload(&m, &[b'{', 0xc3, b'}']).unwrap_err();
    assert_eq!(e.reason, Reason::Encoding);
}
