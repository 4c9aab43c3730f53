//! Streaming decoders: they read a payload or a file of any size with constant memory
//! (one record at a time) and hand each record to a callback. Row formats (CSV, JSON
//! Lines) report a bad row and go on; document formats (JSON, XML) stop at a syntax
//! error, which the caller reports with its position.

mod json;
mod xml;

use std::io::BufRead;
use std::sync::Arc;

use crate::mapping::{Format, Mapping, Selector};
use crate::record::{Node, Record, XmlElem};
use crate::reject::{Reason, Reject};

/// A record that owns its data (decoders run on their own thread, ahead of the writer).
#[derive(Debug, Clone)]
pub enum Owned {
    Json(Node),
    Csv {
        headers: Arc<Vec<String>>,
        row: csv::StringRecord,
    },
    Xml(XmlElem),
}

impl Owned {
    pub fn as_record(&self) -> Record<'_> {
        match self {
            Owned::Json(v) => Record::Json(v),
            Owned::Csv { headers, row } => Record::Csv { headers, row },
            Owned::Xml(e) => Record::Xml(e),
        }
    }
}

/// What a decoder yields.
#[derive(Debug)]
pub enum Item {
    Record(Owned),
    /// A row that does not decode: its bytes and why (the decoder goes on).
    Bad {
        raw: Vec<u8>,
        reject: Reject,
    },
}

/// Decodes `input` for `mapping`, calling `f` with every item in order. The first
/// `skip` items are read but not delivered (resuming an import). Answers the number of
/// items seen, or the error that stopped a document (with the items before it
/// delivered).
pub fn decode<R: BufRead>(
    mapping: &Mapping,
    input: R,
    skip: u64,
    f: &mut dyn FnMut(Item),
) -> Result<u64, Reject> {
    let mut seen = 0u64;
    let mut deliver = |item: Item| {
        seen += 1;
        if seen > skip {
            f(item);
        }
    };
    match (&mapping.format, &mapping.selector) {
        (Format::Csv, _) => csv_rows(mapping, input, &mut deliver)?,
        (Format::Jsonl, _) => json_lines(input, &mut deliver)?,
        (Format::Json, Selector::Json(segs)) => json::stream(input, segs, &mut deliver)?,
        (Format::Xml, Selector::Xml { steps, anywhere }) => {
            xml::stream(input, steps, *anywhere, &mut deliver)?
        }
        (f, s) => {
            return Err(Reject::new(
                Reason::Decode,
                format!("selector {s:?} does not fit format {}", f.name()),
            ))
        }
    }
    Ok(seen)
}

/// Decodes a whole in-memory payload: either every item, or nothing and the error
/// (a payload is all-or-nothing, so that replaying its dead letter writes no record
/// twice).
pub fn decode_payload(mapping: &Mapping, payload: &[u8]) -> Result<Vec<Item>, Reject> {
    if std::str::from_utf8(payload).is_err() && mapping.format != Format::Csv {
        // CSV rows are checked one by one; JSON and XML must be UTF-8 as a whole.
        let at = std::str::from_utf8(payload)
            .err()
            .map(|e| e.valid_up_to())
            .unwrap_or(0);
        return Err(Reject::new(
            Reason::Encoding,
            format!("the payload is not UTF-8 (invalid byte at offset {at})"),
        ));
    }
    let mut items = Vec::new();
    match (&mapping.format, &mapping.selector) {
        (Format::Json, Selector::Json(segs)) => {
            json::stream_slice(payload, segs, &mut |i| items.push(i))?
        }
        _ => {
            decode(mapping, payload, 0, &mut |i| items.push(i))?;
        }
    }
    Ok(items)
}

fn csv_rows<R: BufRead>(
    mapping: &Mapping,
    input: R,
    f: &mut dyn FnMut(Item),
) -> Result<(), Reject> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(mapping.csv_delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut headers: Arc<Vec<String>> = Arc::new(Vec::new());
    let mut first = mapping.csv_header;
    let mut raw = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut raw) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                // An I/O error or a broken quote ends the file; report where.
                return Err(Reject::new(Reason::Decode, format!("CSV: {e}")));
            }
        }
        let line = raw.position().map(|p| p.line()).unwrap_or(0);
        match csv::StringRecord::from_byte_record(raw.clone()) {
            Ok(row) if first => {
                first = false;
                headers = Arc::new(row.iter().map(|h| h.trim().to_string()).collect());
            }
            Ok(row) => {
                if !headers.is_empty() && row.len() != headers.len() {
                    f(Item::Bad {
                        raw: bad_row(&headers, &raw, mapping.csv_delimiter),
                        reject: Reject::new(
                            Reason::Decode,
                            format!(
                                "CSV line {line}: {} fields where the header has {}",
                                row.len(),
                                headers.len()
                            ),
                        ),
                    });
                    continue;
                }
                f(Item::Record(Owned::Csv {
                    headers: headers.clone(),
                    row,
                }))
            }
            Err(_) => f(Item::Bad {
                raw: bad_row(&headers, &raw, mapping.csv_delimiter),
                reject: Reject::new(Reason::Encoding, format!("CSV line {line} is not UTF-8")),
            }),
        }
    }
}

/// A bad row as a small CSV of its own: the header line (when there is one) and the row,
/// so that a replay can map it by column name.
fn bad_row(headers: &[String], r: &csv::ByteRecord, delim: u8) -> Vec<u8> {
    let mut out = Vec::new();
    if !headers.is_empty() {
        out.extend_from_slice(headers.join(&(delim as char).to_string()).as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(&join_bytes(r, delim));
    out
}

fn join_bytes(r: &csv::ByteRecord, delim: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in r.iter().enumerate() {
        if i > 0 {
            out.push(delim);
        }
        out.extend_from_slice(f);
    }
    out
}

fn json_lines<R: BufRead>(mut input: R, f: &mut dyn FnMut(Item)) -> Result<(), Reject> {
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| Reject::new(Reason::Decode, format!("read error: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let text = trim_ascii(&buf);
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Node>(text) {
            Ok(v) => f(Item::Record(Owned::Json(v))),
            Err(e) => {
                let reason = if std::str::from_utf8(text).is_err() {
                    Reason::Encoding
                } else {
                    Reason::Decode
                };
                f(Item::Bad {
                    raw: text.to_vec(),
                    reject: Reject::new(reason, format!("JSON Lines line {line}: {e}")),
                })
            }
        }
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

#[cfg(test)]
mod tests;
