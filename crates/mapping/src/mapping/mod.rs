//! Mappings: loading a mapping file (TOML or YAML), validating it into a compiled
//! [`Mapping`], and applying it to records (`apply.rs`). Errors name the file, the line
//! where the mapping language can tell it, and the field.

mod apply;
mod compile;
pub mod spec;
mod wkt;

use std::fmt;
use std::path::{Path, PathBuf};

pub use apply::{Mapped, MappedAttr, MappedRecord, MappedValue, Names, TopicVars, Vars};
pub use compile::{Mapping, Selector, TopicPattern};
pub use spec::{Format, MappingSpec};
pub use wkt::parse_wkt;

/// A mapping that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MappingError {
    pub file: String,
    pub line: Option<usize>,
    /// The offending field, as a path in the mapping (`attributes[2].from_unit`).
    pub field: String,
    pub message: String,
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The syntax of a mapping file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Toml,
    Yaml,
}

impl Syntax {
    pub fn of(path: &Path) -> Option<Syntax> {
        match path.extension()?.to_str()? {
            "toml" => Some(Syntax::Toml),
            "yaml" | "yml" => Some(Syntax::Yaml),
            _ => None,
        }
    }
}

/// Reads and compiles one mapping file.
pub fn load_file(path: &Path) -> Result<Mapping, MappingError> {
    let file = path.display().to_string();
    let err = |message: String| MappingError {
        file: file.clone(),
        line: None,
        field: String::new(),
        message,
    };
    let syntax = Syntax::of(path)
        .ok_or_else(|| err("a mapping file ends in .toml, .yaml or .yml".into()))?;
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    parse(&text, syntax, &file)
}

/// Compiles a mapping from text; `file` names it in errors.
pub fn parse(text: &str, syntax: Syntax, file: &str) -> Result<Mapping, MappingError> {
    let spec: MappingSpec = match syntax {
        Syntax::Toml => toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            MappingError {
                file: file.to_string(),
                line,
                field: String::new(),
                message: e.message().trim().to_string(),
            }
        })?,
        Syntax::Yaml => serde_yaml_ng::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line());
            let msg = e.to_string();
            // serde_yaml_ng appends " at line X column Y"; the line is reported apart.
            let msg = match msg.find(" at line ") {
                Some(i) => msg[..i].to_string(),
                None => msg,
            };
            MappingError {
                file: file.to_string(),
                line,
                field: String::new(),
                message: msg,
            }
        })?,
    };
    compile::compile(spec).map_err(|(field, message)| MappingError {
        file: file.to_string(),
        line: locate(text, &field),
        field,
        message,
    })
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// Finds the line of a field named by a compile error (`attributes[2].from_unit`):
/// the n-th `[[attributes]]` table or `- ` list item, then the key within it. Both
/// syntaxes are scanned the same way; when the key cannot be found the error still
/// names the field.
fn locate(text: &str, field: &str) -> Option<usize> {
    let mut start = 0usize;
    let mut key = field;
    if let Some((head, rest)) = field.split_once('[') {
        let (idx, tail) = rest.split_once(']')?;
        let idx: usize = idx.parse().ok()?;
        let toml_hdr = format!("[[{head}]]");
        let mut seen = 0usize;
        let mut in_list = false;
        let mut found = None;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if t.starts_with(&toml_hdr) {
                if seen == idx {
                    found = Some(i);
                    break;
                }
                seen += 1;
            } else if t.starts_with(&format!("{head}:")) {
                in_list = true;
            } else if in_list && t.starts_with("- ") {
                if seen == idx {
                    found = Some(i);
                    break;
                }
                seen += 1;
            }
        }
        start = found?;
        key = tail.trim_start_matches('.');
        if key.is_empty() {
            return Some(start + 1);
        }
    }
    let leaf = key.rsplit('.').next().unwrap_or(key);
    for (i, line) in text.lines().enumerate().skip(start) {
        let t = line.trim_start().trim_start_matches("- ");
        let k = t.split(['=', ':']).next().unwrap_or("").trim();
        if k == leaf || t.starts_with(&format!("[{leaf}]")) {
            return Some(i + 1);
        }
    }
    (start > 0).then_some(start + 1)
}

/// Every mapping in a directory (`*.toml`, `*.yaml`, `*.yml`), sorted by file name;
/// the first error stops the load so that a bad file is never half-applied.
pub fn load_dir(dir: &Path) -> Result<Vec<Mapping>, MappingError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| MappingError {
            file: dir.display().to_string(),
            line: None,
            field: String::new(),
            message: format!("cannot read the mappings directory: {e}"),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| Syntax::of(p).is_some())
        .collect();
    files.sort();
    let mut out: Vec<Mapping> = Vec::new();
    for f in files {
        let m = load_file(&f)?;
        if let Some(prev) = out.iter().find(|p| p.source == m.source) {
            return Err(MappingError {
                file: f.display().to_string(),
                line: locate(&std::fs::read_to_string(&f).unwrap_or_default(), "source"),
                field: "source".into(),
                message: format!(
                    "source '{}' is already defined by {}",
                    m.source, prev.origin
                ),
            });
        }
        out.push(m.with_origin(f.display().to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
