//! Streaming reads of SUMO's XML files (networks, configurations, additional files,
//! trip information): every element is handed over with its attributes, in document
//! order, with the names of its open ancestors.

use std::io::BufRead;
use std::path::Path;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::TwinError;

/// An element's attributes, unescaped.
#[derive(Debug, Default)]
pub struct Attrs(Vec<(String, String)>);

impl Attrs {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// A required attribute, or an error naming the element and the attribute.
    pub fn req(&self, element: &str, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("<{element}> has no `{key}` attribute"))
    }
    pub fn f64(&self, key: &str) -> Result<Option<f64>, String> {
        self.get(key)
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("`{key}` is not a number: {v:?}"))
            })
            .transpose()
    }
}

/// Calls `f(name, attrs, ancestors)` for every element of the file.
pub fn each_element(
    path: &Path,
    mut f: impl FnMut(&str, &Attrs, &[String]) -> Result<(), String>,
) -> Result<(), TwinError> {
    let file = std::fs::File::open(path).map_err(|e| TwinError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let reader = std::io::BufReader::with_capacity(1 << 16, file);
    each_element_in(reader, &mut f).map_err(|message| TwinError::File {
        path: path.to_path_buf(),
        message,
    })
}

pub fn each_element_in<R: BufRead>(
    input: R,
    f: &mut impl FnMut(&str, &Attrs, &[String]) -> Result<(), String>,
) -> Result<(), String> {
    let mut reader = Reader::from_reader(input);
    let mut buf = Vec::new();
    let mut open: Vec<String> = Vec::new();
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("XML error at byte {at}: {e}"))?;
        match event {
            Event::Start(s) => {
                let (name, attrs) = element(&s).map_err(|m| format!("at byte {at}: {m}"))?;
                f(&name, &attrs, &open).map_err(|m| format!("at byte {at}: {m}"))?;
                open.push(name);
            }
            Event::Empty(s) => {
                let (name, attrs) = element(&s).map_err(|m| format!("at byte {at}: {m}"))?;
                f(&name, &attrs, &open).map_err(|m| format!("at byte {at}: {m}"))?;
            }
            Event::End(_) => {
                open.pop();
            }
            Event::Eof => {
                if let Some(last) = open.last() {
                    return Err(format!("the document ends inside <{last}> (truncated?)"));
                }
                return Ok(());
            }
            _ => {}
        }
        buf.clear();
    }
}

fn element(s: &BytesStart) -> Result<(String, Attrs), String> {
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
    Ok((name, Attrs(attrs)))
}

/// Escapes text for an attribute value.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}
