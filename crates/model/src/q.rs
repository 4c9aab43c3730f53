//! The NGSI-LD query language (`q`, clause 4.9 of the spec): parser and evaluator.
//!
//! ```text
//! query    = or
//! or       = and *("|" and)
//! and      = factor *(";" factor)
//! factor   = "(" or ")" / term
//! term     = ["!"] path [op value]
//! path     = attrName *("." subAttrName) *("[" key *("." key) "]")
//! op       = "==" / "!=" / ">" / ">=" / "<" / "<=" / "~=" / "!~="
//! value    = literal / literal ".." literal / literal 1*("," literal)
//! literal  = number / quoted-string / true / false / date-time / URI
//! ```
//! `;` binds tighter than `|`, as in Orion-LD. Attribute names are expanded with the
//! request's `@context` before evaluation ([`Query::resolve`]).

use chrono::{DateTime, Utc};
use regex::Regex;
use serde_json::Value;

use crate::context::JsonLdContext;
use crate::entity::{AttrKind, Attribute, Entity};
use crate::error::{ModelError, Result};
use crate::time::{format_datetime, parse_datetime};

/// Longest `q` accepted, in bytes.
pub const MAX_Q_LEN: usize = 8192;
const MAX_DEPTH: usize = 32;

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Match,
    NotMatch,
}

/// A literal of the query language.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Num(f64),
    Str(String),
    Bool(bool),
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone)]
pub enum QValue {
    One(Lit),
    List(Vec<Lit>),
    Range(Lit, Lit),
    Regex(Regex),
}

/// An attribute path: attribute, optional sub-attribute chain, and keys into the value.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    pub attr: String,
    pub subs: Vec<String>,
    pub keys: Vec<String>,
    /// Expanded IRIs of `attr` and `subs`, filled by [`Query::resolve`].
    pub attr_iri: String,
    pub sub_iris: Vec<String>,
}

/// A query expression.
#[derive(Debug, Clone)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Term {
        negated: bool,
        path: AttrPath,
        cmp: Option<(Op, QValue)>,
    },
}

/// A parsed `q`.
#[derive(Debug, Clone)]
pub struct Query {
    pub expr: Expr,
    pub text: String,
}

impl Query {
    /// Parses `q`, returning a 400-style error that points at the problem.
    pub fn parse(text: &str) -> Result<Query> {
        if text.len() > MAX_Q_LEN {
            return Err(ModelError::bad_data(format!(
                "q is longer than {MAX_Q_LEN} bytes"
            )));
        }
        let mut p = Parser {
            s: text.as_bytes(),
            text,
            pos: 0,
            depth: 0,
        };
        let expr = p.or()?;
        if p.pos != p.s.len() {
            return Err(p.err("unexpected character"));
        }
        Ok(Query {
            expr,
            text: text.to_string(),
        })
    }

    /// Expands attribute names with a `@context`.
    pub fn resolve(&mut self, ctx: &JsonLdContext) {
        fn walk(e: &mut Expr, ctx: &JsonLdContext) {
            match e {
                Expr::And(v) | Expr::Or(v) => v.iter_mut().for_each(|e| walk(e, ctx)),
                Expr::Term { path, .. } => {
                    path.attr_iri = ctx.expand(&path.attr);
                    path.sub_iris = path.subs.iter().map(|s| meta_or_expand(s, ctx)).collect();
                }
            }
        }
        walk(&mut self.expr, ctx);
    }

    /// The expanded attribute IRIs this query reads (for subscriptions' watched sets).
    pub fn attributes(&self) -> Vec<String> {
        fn walk(e: &Expr, out: &mut Vec<String>) {
            match e {
                Expr::And(v) | Expr::Or(v) => v.iter().for_each(|e| walk(e, out)),
                Expr::Term { path, .. } => {
                    if !out.contains(&path.attr_iri) {
                        out.push(path.attr_iri.clone())
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.expr, &mut out);
        out
    }

    /// Evaluates the query on an entity.
    pub fn matches(&self, e: &Entity) -> bool {
        eval(&self.expr, e)
    }

    /// A range of one attribute's values that every match must fall in, when the query
    /// has such a conjunct (`a>5`, `a==1..9`, `a=="x"`, `a==1,2`): the store can then
    /// answer from its value index instead of scanning. The full query is still
    /// evaluated on every candidate.
    pub fn index_hint(&self) -> Option<IndexHint> {
        let terms: Vec<&Expr> = match &self.expr {
            Expr::And(v) => v.iter().collect(),
            other => vec![other],
        };
        let hints: Vec<IndexHint> = terms.into_iter().filter_map(hint_of).collect();
        let first = hints.first()?.attr_iri.clone();
        // Conjuncts on the same attribute narrow each other: a>=5;a<7 is one range.
        hints
            .into_iter()
            .filter(|h| h.attr_iri == first)
            .reduce(|acc, h| {
                let ranges = acc
                    .ranges
                    .iter()
                    .flat_map(|a| h.ranges.iter().map(move |b| intersect(a, b)))
                    .collect();
                IndexHint {
                    attr_iri: acc.attr_iri,
                    ranges,
                }
            })
    }
}

/// A key of the value index: comparable scalars in one total order.
#[derive(Debug, Clone)]
pub enum IndexKey {
    Bool(bool),
    Num(f64),
    Str(Box<str>),
}

impl PartialEq for IndexKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for IndexKey {}

impl PartialOrd for IndexKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IndexKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self, other) {
            (IndexKey::Bool(a), IndexKey::Bool(b)) => a.cmp(b),
            (IndexKey::Num(a), IndexKey::Num(b)) => a.total_cmp(b),
            (IndexKey::Str(a), IndexKey::Str(b)) => a.cmp(b),
            (IndexKey::Bool(_), _) => Ordering::Less,
            (IndexKey::Num(_), IndexKey::Bool(_)) => Ordering::Greater,
            (IndexKey::Num(_), IndexKey::Str(_)) => Ordering::Less,
            (IndexKey::Str(_), _) => Ordering::Greater,
        }
    }
}

impl IndexKey {
    /// The index keys of a value: itself when scalar, its scalar elements when an array.
    pub fn of(v: &Value) -> Vec<IndexKey> {
        match v {
            Value::Bool(b) => vec![IndexKey::Bool(*b)],
            Value::Number(n) => n.as_f64().map(IndexKey::Num).into_iter().collect(),
            Value::String(s) => vec![IndexKey::Str(s.as_str().into())],
            Value::Array(a) => a
                .iter()
                .filter(|x| !x.is_array())
                .flat_map(IndexKey::of)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The index keys of an attribute value (arrays are parsed; objects give none).
    pub fn of_attr(v: &crate::value::AttrValue) -> Vec<IndexKey> {
        use crate::value::AttrValue;
        match v {
            AttrValue::Bool(b) => vec![IndexKey::Bool(*b)],
            AttrValue::Int(i) => vec![IndexKey::Num(*i as f64)],
            AttrValue::Float(f) => vec![IndexKey::Num(*f)],
            AttrValue::Str(s) => vec![IndexKey::Str(s.clone())],
            AttrValue::Json(t) if t.starts_with('[') => IndexKey::of(&v.to_value()),
            _ => Vec::new(),
        }
    }

    fn of_lit(l: &Lit) -> IndexKey {
        match l {
            Lit::Num(n) => IndexKey::Num(*n),
            Lit::Bool(b) => IndexKey::Bool(*b),
            Lit::Str(s) => IndexKey::Str(s.as_str().into()),
        }
    }
}

/// What [`Query::index_hint`] found: attribute IRI and key ranges (any of them).
#[derive(Debug, Clone)]
pub struct IndexHint {
    pub attr_iri: String,
    pub ranges: Vec<KeyRange>,
}

fn hint_of(e: &Expr) -> Option<IndexHint> {
    use std::ops::Bound::{Excluded, Included};
    let Expr::Term {
        negated: false,
        path,
        cmp: Some((op, v)),
    } = e
    else {
        return None;
    };
    if !path.subs.is_empty() || !path.keys.is_empty() {
        return None;
    }
    // Strings that look like date-times compare as times, not text: no index for ranges.
    let rangeable = |l: &Lit| match l {
        Lit::Num(_) => true,
        Lit::Str(s) => as_time(s).is_none(),
        Lit::Bool(_) => false,
    };
    let k = IndexKey::of_lit;
    let ranges = match (op, v) {
        (Op::Eq, QValue::One(l)) => vec![(Included(k(l)), Included(k(l)))],
        (Op::Eq, QValue::List(ls)) => ls
            .iter()
            .map(|l| (Included(k(l)), Included(k(l))))
            .collect(),
        (Op::Eq, QValue::Range(lo, hi)) if rangeable(lo) && rangeable(hi) => {
            vec![(Included(k(lo)), Included(k(hi)))]
        }
        (Op::Gt, QValue::One(l)) if rangeable(l) => vec![(Excluded(k(l)), type_end(l))],
        (Op::Ge, QValue::One(l)) if rangeable(l) => vec![(Included(k(l)), type_end(l))],
        (Op::Lt, QValue::One(l)) if rangeable(l) => vec![(type_start(l), Excluded(k(l)))],
        (Op::Le, QValue::One(l)) if rangeable(l) => vec![(type_start(l), Included(k(l)))],
        _ => return None,
    };
    Some(IndexHint {
        attr_iri: path.attr_iri.clone(),
        ranges,
    })
}

/// A range of index keys.
pub type KeyRange = (std::ops::Bound<IndexKey>, std::ops::Bound<IndexKey>);

/// The intersection of two key ranges (possibly empty: lower above upper).
fn intersect(a: &KeyRange, b: &KeyRange) -> KeyRange {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let lower = match (&a.0, &b.0) {
        (Unbounded, x) | (x, Unbounded) => x.clone(),
        (Included(x), Included(y)) => Included(x.max(y).clone()),
        (Excluded(x), Excluded(y)) => Excluded(x.max(y).clone()),
        (Included(i), Excluded(e)) | (Excluded(e), Included(i)) => {
            if i > e {
                Included(i.clone())
            } else {
                Excluded(e.clone())
            }
        }
    };
    let upper = match (&a.1, &b.1) {
        (Unbounded, x) | (x, Unbounded) => x.clone(),
        (Included(x), Included(y)) => Included(x.min(y).clone()),
        (Excluded(x), Excluded(y)) => Excluded(x.min(y).clone()),
        (Included(i), Excluded(e)) | (Excluded(e), Included(i)) => {
            if i < e {
                Included(i.clone())
            } else {
                Excluded(e.clone())
            }
        }
    };
    (lower, upper)
}

/// The smallest key of a literal's type (ranges stay within one type).
fn type_start(l: &Lit) -> std::ops::Bound<IndexKey> {
    match l {
        Lit::Num(_) => std::ops::Bound::Included(IndexKey::Num(f64::NEG_INFINITY)),
        Lit::Str(_) => std::ops::Bound::Included(IndexKey::Str("".into())),
        Lit::Bool(_) => std::ops::Bound::Included(IndexKey::Bool(false)),
    }
}

/// Just past the largest key of a literal's type.
fn type_end(l: &Lit) -> std::ops::Bound<IndexKey> {
    match l {
        Lit::Num(_) => std::ops::Bound::Included(IndexKey::Num(f64::INFINITY)),
        Lit::Str(_) => std::ops::Bound::Unbounded,
        Lit::Bool(_) => std::ops::Bound::Included(IndexKey::Bool(true)),
    }
}

const META: [&str; 5] = [
    "observedAt",
    "unitCode",
    "datasetId",
    "createdAt",
    "modifiedAt",
];

fn meta_or_expand(s: &str, ctx: &JsonLdContext) -> String {
    if META.contains(&s) {
        format!("@{s}")
    } else {
        ctx.expand(s)
    }
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> ModelError {
        ModelError::bad_data(format!(
            "invalid q '{}': {what} at position {}",
            self.text, self.pos
        ))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn or(&mut self) -> Result<Expr> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(b'|') {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr> {
        let mut items = vec![self.factor()?];
        while self.peek() == Some(b';') {
            self.pos += 1;
            items.push(self.factor()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn factor(&mut self) -> Result<Expr> {
        if self.peek() == Some(b'(') {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(self.err("parentheses nest too deeply"));
            }
            self.pos += 1;
            let e = self.or()?;
            if self.peek() != Some(b')') {
                return Err(self.err("missing ')'"));
            }
            self.pos += 1;
            self.depth -= 1;
            return Ok(e);
        }
        self.term()
    }

    fn term(&mut self) -> Result<Expr> {
        let negated = self.peek() == Some(b'!') && self.s.get(self.pos + 1) != Some(&b'~');
        if negated {
            self.pos += 1;
        }
        let path = self.path()?;
        let op = self.op()?;
        let Some(op) = op else {
            return Ok(Expr::Term {
                negated,
                path,
                cmp: None,
            });
        };
        if negated {
            return Err(self.err("'!' applies only to an attribute without comparison"));
        }
        let value = if matches!(op, Op::Match | Op::NotMatch) {
            let raw = self.raw_until_end();
            let raw = raw.trim_matches('"');
            let re = Regex::new(raw)
                .map_err(|e| self.err(&format!("invalid regular expression: {e}")))?;
            QValue::Regex(re)
        } else {
            self.value()?
        };
        if matches!(value, QValue::List(_) | QValue::Range(..)) && !matches!(op, Op::Eq | Op::Ne) {
            return Err(self.err("lists and ranges need == or !="));
        }
        Ok(Expr::Term {
            negated,
            path,
            cmp: Some((op, value)),
        })
    }

    fn path(&mut self) -> Result<AttrPath> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if matches!(
                c,
                b'=' | b'!' | b'<' | b'>' | b'~' | b';' | b'|' | b'(' | b')' | b'[' | b'"' | b','
            ) {
                break;
            }
            if c.is_ascii_whitespace() || c.is_ascii_control() {
                return Err(self.err("whitespace in an attribute name"));
            }
            self.pos += 1;
        }
        let name = &self.text[start..self.pos];
        if name.is_empty() {
            return Err(self.err("attribute name expected"));
        }
        // Dots separate sub-attributes, except inside a full IRI (scheme://...).
        let mut parts: Vec<String> = if name.contains("://") {
            vec![name.to_string()]
        } else {
            name.split('.').map(str::to_string).collect()
        };
        if parts.iter().any(String::is_empty) {
            return Err(self.err("empty attribute name in a dotted path"));
        }
        let attr = parts.remove(0);
        let mut keys = Vec::new();
        while self.peek() == Some(b'[') {
            self.pos += 1;
            let kstart = self.pos;
            while let Some(c) = self.peek() {
                if c == b']' {
                    break;
                }
                self.pos += 1;
            }
            if self.peek() != Some(b']') {
                return Err(self.err("missing ']'"));
            }
            let k = &self.text[kstart..self.pos];
            self.pos += 1;
            if k.is_empty() {
                return Err(self.err("empty key in []"));
            }
            keys.extend(k.split('.').map(str::to_string));
        }
        Ok(AttrPath {
            attr,
            subs: parts,
            keys,
            attr_iri: String::new(),
            sub_iris: Vec::new(),
        })
    }

    fn op(&mut self) -> Result<Option<Op>> {
        let rest = &self.s[self.pos..];
        let (op, len) = if rest.starts_with(b"==") {
            (Op::Eq, 2)
        } else if rest.starts_with(b"!=") {
            (Op::Ne, 2)
        } else if rest.starts_with(b">=") {
            (Op::Ge, 2)
        } else if rest.starts_with(b"<=") {
            (Op::Le, 2)
        } else if rest.starts_with(b"~=") {
            (Op::Match, 2)
        } else if rest.starts_with(b"!~=") {
            (Op::NotMatch, 3)
        } else if rest.starts_with(b">") {
            (Op::Gt, 1)
        } else if rest.starts_with(b"<") {
            (Op::Lt, 1)
        } else if rest.is_empty() || matches!(rest[0], b';' | b'|' | b')') {
            return Ok(None);
        } else {
            return Err(self.err("operator expected"));
        };
        self.pos += len;
        Ok(Some(op))
    }

    fn raw_until_end(&mut self) -> &str {
        let start = self.pos;
        let mut in_quotes = false;
        while let Some(c) = self.peek() {
            if c == b'"' {
                in_quotes = !in_quotes;
            }
            if !in_quotes && matches!(c, b';' | b'|' | b')') {
                break;
            }
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn value(&mut self) -> Result<QValue> {
        let first = self.literal()?;
        if self.s[self.pos..].starts_with(b"..") {
            self.pos += 2;
            let second = self.literal()?;
            return Ok(QValue::Range(first, second));
        }
        if self.peek() == Some(b',') {
            let mut items = vec![first];
            while self.peek() == Some(b',') {
                self.pos += 1;
                items.push(self.literal()?);
            }
            return Ok(QValue::List(items));
        }
        Ok(QValue::One(first))
    }

    fn literal(&mut self) -> Result<Lit> {
        if self.peek() == Some(b'"') {
            self.pos += 1;
            let mut out = String::new();
            loop {
                let Some(c) = self.text[self.pos..].chars().next() else {
                    return Err(self.err("unterminated string"));
                };
                self.pos += c.len_utf8();
                match c {
                    '"' => break,
                    '\\' => {
                        let Some(n) = self.text[self.pos..].chars().next() else {
                            return Err(self.err("unterminated string"));
                        };
                        self.pos += n.len_utf8();
                        out.push(n);
                    }
                    c => out.push(c),
                }
            }
            return Ok(Lit::Str(out));
        }
        let start = self.pos;
        while let Some(c) = self.peek() {
            if matches!(c, b';' | b'|' | b')' | b',') || self.s[self.pos..].starts_with(b"..") {
                break;
            }
            self.pos += 1;
        }
        let raw = &self.text[start..self.pos];
        if raw.is_empty() {
            return Err(self.err("value expected"));
        }
        Ok(match raw {
            "true" => Lit::Bool(true),
            "false" => Lit::Bool(false),
            _ => match raw.parse::<f64>() {
                Ok(n) if n.is_finite() && !raw.starts_with('+') => Lit::Num(n),
                _ => Lit::Str(raw.to_string()),
            },
        })
    }
}

fn eval(e: &Expr, ent: &Entity) -> bool {
    match e {
        Expr::And(v) => v.iter().all(|e| eval(e, ent)),
        Expr::Or(v) => v.iter().any(|e| eval(e, ent)),
        Expr::Term { negated, path, cmp } => {
            let Some(instances) = ent.attr(&path.attr_iri) else {
                return *negated;
            };
            if *negated {
                return false;
            }
            instances.iter().any(|inst| {
                let Some(target) = target_value(inst, path) else {
                    return false;
                };
                match cmp {
                    None => true,
                    Some((op, v)) => compare(&target, *op, v),
                }
            })
        }
    }
}

fn target_value(inst: &Attribute, path: &AttrPath) -> Option<Value> {
    let mut attr = inst;
    let mut meta: Option<Value> = None;
    for s in &path.sub_iris {
        if let Some(m) = s.strip_prefix('@') {
            meta = Some(match m {
                "observedAt" => Value::String(format_datetime(attr.observed_at.as_ref()?)),
                "createdAt" => Value::String(format_datetime(&attr.created_at)),
                "modifiedAt" => Value::String(format_datetime(&attr.modified_at)),
                "unitCode" => Value::String(attr.unit_code.as_deref()?.to_string()),
                "datasetId" => Value::String(attr.dataset_id().map(str::to_string)?),
                _ => return None,
            });
            break;
        }
        attr = attr.sub_attr(s)?;
    }
    let mut keys = path.keys.iter();
    let mut v = match meta {
        Some(m) => m,
        None => match attr.kind {
            // `name[en]` is the English string, `name[*]` and `name` any language's.
            AttrKind::LanguageProperty => {
                let map = attr.value.to_value();
                let map = map.as_object()?;
                match path.keys.first().map(String::as_str) {
                    Some("*") | None => {
                        keys.next();
                        Value::Array(map.values().cloned().collect())
                    }
                    Some(lang) => {
                        keys.next();
                        map.get(lang)?.clone()
                    }
                }
            }
            // A vocabulary term matches by its IRI or by its short name.
            AttrKind::VocabProperty => vocab_forms(&attr.value.to_value()),
            _ => attr.value.to_value(),
        },
    };
    for k in keys {
        v = v.get(k.as_str())?.clone();
    }
    Some(v)
}

/// The last segment of a vocabulary IRI (after `/`, `#` or `:`, so that a URN's
/// last part counts too): how a term reads compacted.
fn short_name(iri: &str) -> &str {
    iri.rsplit(['/', '#', ':']).next().unwrap_or(iri)
}

/// A VocabProperty's value as the strings a query may name it by: each IRI and its
/// short name.
fn vocab_forms(v: &Value) -> Value {
    let one = |s: &str| {
        [
            Value::String(s.to_string()),
            Value::String(short_name(s).to_string()),
        ]
    };
    match v {
        Value::String(s) => Value::Array(one(s).to_vec()),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter_map(Value::as_str)
                .flat_map(|s| one(s).into_iter())
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The keys a value index holds for an attribute instance, so that its candidates
/// are a superset of what `q` matches: scalar values (and array members) of every
/// kind, each language string of a LanguageProperty, each vocabulary term of a
/// VocabProperty by IRI and short name.
pub fn index_keys(a: &Attribute) -> Vec<IndexKey> {
    match a.kind {
        AttrKind::LanguageProperty => a
            .value
            .to_value()
            .as_object()
            .map(|m| m.values().flat_map(IndexKey::of).collect())
            .unwrap_or_default(),
        AttrKind::VocabProperty => IndexKey::of(&vocab_forms(&a.value.to_value())),
        _ => IndexKey::of_attr(&a.value),
    }
}

fn compare(target: &Value, op: Op, v: &QValue) -> bool {
    if let Value::Array(items) = target {
        return match op {
            Op::Ne => !items.iter().any(|t| compare(t, Op::Eq, v)),
            Op::NotMatch => !items.iter().any(|t| compare(t, Op::Match, v)),
            _ => items.iter().any(|t| compare(t, op, v)),
        };
    }
    match (op, v) {
        (Op::Match | Op::NotMatch, QValue::Regex(re)) => {
            let hit = target.as_str().is_some_and(|s| re.is_match(s));
            hit == (op == Op::Match)
        }
        (Op::Eq, QValue::One(l)) => cmp_lit(target, l) == Some(std::cmp::Ordering::Equal),
        (Op::Ne, QValue::One(l)) => {
            cmp_lit(target, l).is_some_and(|o| o != std::cmp::Ordering::Equal)
        }
        (Op::Eq, QValue::List(ls)) => ls
            .iter()
            .any(|l| cmp_lit(target, l) == Some(std::cmp::Ordering::Equal)),
        (Op::Ne, QValue::List(ls)) => ls
            .iter()
            .all(|l| cmp_lit(target, l).is_some_and(|o| o != std::cmp::Ordering::Equal)),
        (Op::Eq | Op::Ne, QValue::Range(lo, hi)) => {
            let inside = cmp_lit(target, lo).is_some_and(|o| o.is_ge())
                && cmp_lit(target, hi).is_some_and(|o| o.is_le());
            inside == (op == Op::Eq)
        }
        (Op::Gt, QValue::One(l)) => cmp_lit(target, l).is_some_and(|o| o.is_gt()),
        (Op::Ge, QValue::One(l)) => cmp_lit(target, l).is_some_and(|o| o.is_ge()),
        (Op::Lt, QValue::One(l)) => cmp_lit(target, l).is_some_and(|o| o.is_lt()),
        (Op::Le, QValue::One(l)) => cmp_lit(target, l).is_some_and(|o| o.is_le()),
        _ => false,
    }
}

fn as_time(s: &str) -> Option<DateTime<Utc>> {
    if s.len() >= 10 && s.as_bytes().get(4) == Some(&b'-') {
        parse_datetime(s)
    } else {
        None
    }
}

fn cmp_lit(target: &Value, l: &Lit) -> Option<std::cmp::Ordering> {
    match (target, l) {
        (Value::Number(n), Lit::Num(x)) => n.as_f64()?.partial_cmp(x),
        (Value::Bool(b), Lit::Bool(x)) => Some(b.cmp(x)),
        (Value::String(s), Lit::Str(x)) => match (as_time(s), as_time(x)) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => Some(s.as_str().cmp(x.as_str())),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests;
