//! Streaming XML with quick-xml: elements outside the record path are skipped as they
//! stream by; each element matching the record selector is built into a small tree
//! (bounded in depth and size) and handed on.

use std::io::BufRead;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::{Item, Owned};
use crate::record::XmlElem;
use crate::reject::{Reason, Reject};

/// Limits on one record element (a record is a reading, not a document).
const MAX_DEPTH: usize = 64;
const MAX_NODES: usize = 100_000;

pub(super) fn stream<R: BufRead>(
    input: R,
    steps: &[String],
    anywhere: bool,
    f: &mut dyn FnMut(Item),
) -> Result<(), Reject> {
    let mut reader = Reader::from_reader(input);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    // Names of the open elements outside any record.
    let mut path: Vec<String> = Vec::new();
    // The record being built: a stack of open elements (index 0 is the record).
    let mut open: Vec<XmlElem> = Vec::new();
    let mut nodes = 0usize;
    let err = |reader: &Reader<R>, m: String| {
        Reject::new(
            Reason::Decode,
            format!(
                "XML at byte {}: {m}",
                reader.error_position().max(reader.buffer_position())
            ),
        )
    };
    loop {
        buf.clear();
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| err(&reader, e.to_string()))?;
        match ev {
            Event::Start(ref s) | Event::Empty(ref s) if !open.is_empty() => {
                let is_empty = matches!(ev, Event::Empty(_));
                let e = element(s).map_err(|m| err(&reader, m))?;
                nodes += 1;
                if open.len() >= MAX_DEPTH || nodes > MAX_NODES {
                    return Err(err(
                        &reader,
                        "a record element is nested too deeply or too large".into(),
                    ));
                }
                if is_empty {
                    if let Some(parent) = open.last_mut() {
                        parent.children.push(e);
                    }
                } else {
                    open.push(e);
                }
            }
            Event::Start(s) => {
                let e = element(&s).map_err(|m| err(&reader, m))?;
                path.push(e.name.clone());
                if selected(&path, steps, anywhere) {
                    nodes = 1;
                    open.push(e);
                }
            }
            Event::Empty(s) => {
                let e = element(&s).map_err(|m| err(&reader, m))?;
                path.push(e.name.clone());
                if selected(&path, steps, anywhere) {
                    f(Item::Record(Owned::Xml(e)));
                }
                path.pop();
            }
            Event::End(_) => {
                if let Some(done) = open.pop() {
                    match open.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => {
                            path.pop();
                            f(Item::Record(Owned::Xml(done)));
                        }
                    }
                } else {
                    path.pop();
                }
            }
            Event::Text(t) => {
                if let Some(cur) = open.last_mut() {
                    let s = t.decode().map_err(|e| err(&reader, e.to_string()))?;
                    cur.text.push_str(&s);
                }
            }
            Event::CData(c) => {
                if let Some(cur) = open.last_mut() {
                    let s = c.decode().map_err(|e| err(&reader, e.to_string()))?;
                    cur.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(cur) = open.last_mut() {
                    if let Some(ch) = r
                        .resolve_char_ref()
                        .map_err(|e| err(&reader, e.to_string()))?
                    {
                        cur.text.push(ch);
                    } else {
                        let name = r.decode().map_err(|e| err(&reader, e.to_string()))?;
                        let v = quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| err(&reader, format!("unknown entity '&{name};'")))?;
                        cur.text.push_str(v);
                    }
                }
            }
            Event::Eof => {
                if !path.is_empty() {
                    return Err(err(
                        &reader,
                        format!("the document ends inside <{}> (truncated?)", path.join("/")),
                    ));
                }
                return Ok(());
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
}

fn selected(path: &[String], steps: &[String], anywhere: bool) -> bool {
    if anywhere {
        path.last().is_some_and(|l| Some(l) == steps.first())
    } else {
        path == steps
    }
}

fn element(s: &BytesStart) -> Result<XmlElem, String> {
    let name = std::str::from_utf8(s.local_name().as_ref())
        .map_err(|_| "an element name is not UTF-8".to_string())?
        .to_string();
    let mut attrs = Vec::new();
    for a in s.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        let k = std::str::from_utf8(a.key.local_name().as_ref())
            .map_err(|_| "an attribute name is not UTF-8".to_string())?
            .to_string();
        let v = a.unescape_value().map_err(|e| e.to_string())?.into_owned();
        attrs.push((k, v));
    }
    Ok(XmlElem {
        name,
        attrs,
        text: String::new(),
        children: Vec::new(),
    })
}
