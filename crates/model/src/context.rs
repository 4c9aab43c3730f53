//! JSON-LD `@context` processing, limited to what NGSI-LD needs: term definitions,
//! compact IRIs, `@vocab`, and the protected core context.
//!
//! Decision: citybrain does not run a general JSON-LD processor. NGSI-LD payloads only
//! need their *terms* expanded (entity types, attribute names, a few `@vocab` values) and
//! compacted back on output; values stay plain JSON. This is what Orion-LD does as well,
//! and it keeps request handling in microseconds. The core context (v1.8) is embedded and
//! never fetched; remote contexts are resolved by the broker (async, cached) and handed to
//! [`ContextBuilder`] as already-loaded JSON.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::error::{ErrorKind, ModelError, Result};

/// The URL under which the core context is known. It is never fetched.
pub const CORE_CONTEXT_URL: &str =
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";
/// The default vocabulary of the core context.
pub const DEFAULT_VOCAB: &str = "https://uri.etsi.org/ngsi-ld/default-context/";
/// The NGSI-LD namespace.
pub const NGSI_LD_NS: &str = "https://uri.etsi.org/ngsi-ld/";

const CORE_CONTEXT_TEXT: &str = include_str!("core-context-v1.8.jsonld");
/// How deep contexts may import other contexts (a guard against cycles and abuse).
pub const MAX_CONTEXT_DEPTH: usize = 8;

/// True for every URL that names some version of the core context.
pub fn is_core_context_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context")
        .or_else(|| url.strip_prefix("http://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context"))
    else {
        return false;
    };
    // `.jsonld` or `-v1.N.jsonld` (N = digits and dots): the published versions only.
    match rest.strip_suffix(".jsonld") {
        Some("") => true,
        Some(v) => v
            .strip_prefix("-v1.")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '.')),
        None => false,
    }
}

/// The core context document, parsed once.
pub fn core_context_document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(CORE_CONTEXT_TEXT).unwrap_or(Value::Null))
}

/// One term definition after processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermDef {
    pub iri: String,
    /// `@type` coercion (`@id`, `@vocab`, `@json`, or a datatype IRI).
    pub type_coercion: Option<String>,
}

/// An active context: a term map, its reverse, and the vocabulary.
#[derive(Debug, Clone)]
pub struct JsonLdContext {
    terms: HashMap<String, TermDef>,
    reverse: HashMap<String, String>,
    prefixes: Vec<(String, String)>,
    vocab: String,
    /// The context as the client gave it, echoed in responses (`Link` or `@context`).
    source: Value,
}

impl JsonLdContext {
    /// The core context alone.
    pub fn core() -> Arc<JsonLdContext> {
        static CORE: OnceLock<Arc<JsonLdContext>> = OnceLock::new();
        CORE.get_or_init(|| {
            let mut b = ContextBuilder::new();
            // The embedded document is valid by construction (checked by a unit test).
            let _ = b.apply_object(core_context_inner(), true);
            Arc::new(b.build(Value::String(CORE_CONTEXT_URL.to_string())))
        })
        .clone()
    }

    /// The context as the client gave it.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// True when this is the core context alone.
    pub fn is_core_only(&self) -> bool {
        matches!(&self.source, Value::String(s) if is_core_context_url(s))
    }

    /// The single URL to put in a `Link` header, when the source is one URL.
    pub fn link_url(&self) -> Option<&str> {
        match &self.source {
            Value::String(s) => Some(s),
            Value::Array(a) if a.len() == 1 => a[0].as_str(),
            _ => None,
        }
    }

    /// Expands a term (an entity type or attribute name) to an IRI.
    pub fn expand(&self, term: &str) -> String {
        if let Some(def) = self.terms.get(term) {
            return def.iri.clone();
        }
        if let Some((prefix, suffix)) = term.split_once(':') {
            if !suffix.starts_with("//") {
                if let Some(def) = self.terms.get(prefix) {
                    return format!("{}{}", def.iri, suffix);
                }
            }
            if crate::uri::is_absolute_uri(term) {
                return term.to_string();
            }
        }
        format!("{}{}", self.vocab, term)
    }

    /// Compacts an IRI back to a term of this context, a compact IRI, or leaves it whole.
    pub fn compact(&self, iri: &str) -> String {
        if let Some(term) = self.reverse.get(iri) {
            return term.clone();
        }
        if let Some(rest) = iri.strip_prefix(self.vocab.as_str()) {
            if !rest.is_empty() && !self.terms.contains_key(rest) && !rest.contains(':') {
                return rest.to_string();
            }
        }
        let mut best: Option<String> = None;
        for (prefix, ns) in &self.prefixes {
            if let Some(rest) = iri.strip_prefix(ns.as_str()) {
                if !rest.is_empty() {
                    let candidate = format!("{prefix}:{rest}");
                    if best.as_ref().is_none_or(|b| candidate.len() < b.len()) {
                        best = Some(candidate);
                    }
                }
            }
        }
        best.unwrap_or_else(|| iri.to_string())
    }

    /// The term definition for a term, if any.
    pub fn term(&self, term: &str) -> Option<&TermDef> {
        self.terms.get(term)
    }
}

fn core_context_inner() -> &'static Map<String, Value> {
    static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
    core_context_document()
        .get("@context")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// Raw (unresolved) term definition, as read from a context object.
#[derive(Debug, Clone)]
struct RawTerm {
    id: Option<String>,
    type_coercion: Option<String>,
    protected: bool,
}

/// Builds an active context from the core context and client contexts, in order.
#[derive(Debug, Default)]
pub struct ContextBuilder {
    raw: HashMap<String, RawTerm>,
    order: Vec<String>,
    vocab: Option<String>,
}

impl ContextBuilder {
    /// A builder that starts with the core context (always active in NGSI-LD).
    pub fn with_core() -> Self {
        let mut b = Self::new();
        let _ = b.apply_object(core_context_inner(), true);
        b
    }

    fn new() -> Self {
        Self::default()
    }

    /// Applies one context value: a URL (looked up with `resolve`), an object, or an array
    /// of those. `resolve` returns the *document* fetched for a URL (its `@context` member
    /// is used), or `None` when it cannot be had.
    pub fn apply(
        &mut self,
        ctx: &Value,
        resolve: &dyn Fn(&str) -> Option<Arc<Value>>,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_CONTEXT_DEPTH {
            return Err(ModelError::bad_data("@context nests deeper than allowed"));
        }
        match ctx {
            Value::Null => Ok(()),
            Value::String(url) => {
                if is_core_context_url(url) {
                    return Ok(());
                }
                let doc = resolve(url).ok_or_else(|| {
                    ModelError::new(
                        ErrorKind::LdContextNotAvailable,
                        format!("@context '{url}' could not be loaded"),
                    )
                })?;
                let inner = doc.get("@context").ok_or_else(|| {
                    ModelError::new(
                        ErrorKind::LdContextNotAvailable,
                        format!("document at '{url}' has no @context member"),
                    )
                })?;
                self.apply(inner, resolve, depth + 1)
            }
            Value::Array(items) => {
                for item in items {
                    self.apply(item, resolve, depth + 1)?;
                }
                Ok(())
            }
            Value::Object(obj) => self.apply_object(obj, false),
            other => Err(ModelError::bad_data(format!(
                "@context entries must be URLs, objects or arrays, got {other}"
            ))),
        }
    }

    fn apply_object(&mut self, obj: &Map<String, Value>, protected: bool) -> Result<()> {
        for (key, def) in obj {
            if key == "@vocab" {
                if let Some(v) = def.as_str() {
                    self.vocab = Some(v.to_string());
                }
                continue;
            }
            if key.starts_with('@') {
                continue; // @version, @protected, @base, @language, @propagate, @import
            }
            if self.raw.get(key).is_some_and(|t| t.protected) {
                continue; // protected core terms cannot be redefined
            }
            let raw = match def {
                Value::Null => RawTerm {
                    id: None,
                    type_coercion: None,
                    protected,
                },
                Value::String(s) => RawTerm {
                    id: Some(s.clone()),
                    type_coercion: None,
                    protected,
                },
                Value::Object(o) => RawTerm {
                    id: o.get("@id").and_then(Value::as_str).map(str::to_string),
                    type_coercion: o.get("@type").and_then(Value::as_str).map(str::to_string),
                    protected,
                },
                other => {
                    return Err(ModelError::bad_data(format!(
                        "@context term '{key}' has an invalid definition {other}"
                    )))
                }
            };
            if !self.raw.contains_key(key) {
                self.order.push(key.clone());
            }
            self.raw.insert(key.clone(), raw);
        }
        Ok(())
    }

    /// Resolves every term to an absolute IRI and builds the reverse map.
    pub fn build(self, source: Value) -> JsonLdContext {
        let vocab = self
            .vocab
            .clone()
            .unwrap_or_else(|| DEFAULT_VOCAB.to_string());
        let mut terms = HashMap::with_capacity(self.raw.len());
        for key in &self.order {
            let Some(raw) = self.raw.get(key) else {
                continue;
            };
            let iri = match &raw.id {
                Some(id) => self.resolve_iri(id, &vocab, 0),
                None => Some(
                    self.resolve_iri(key, &vocab, 1)
                        .unwrap_or_else(|| format!("{vocab}{key}")),
                ),
            };
            let Some(iri) = iri else { continue };
            if iri.starts_with('@') && !(key == "id" || key == "type") {
                continue;
            }
            let type_coercion = raw.type_coercion.as_ref().map(|t| {
                if t.starts_with('@') {
                    t.clone()
                } else {
                    self.resolve_iri(t, &vocab, 0).unwrap_or_else(|| t.clone())
                }
            });
            terms.insert(key.clone(), TermDef { iri, type_coercion });
        }
        // Reverse map: client terms win over core terms; among equals, the shortest term.
        let mut reverse: HashMap<String, String> = HashMap::with_capacity(terms.len());
        let mut prefixes = Vec::new();
        for key in &self.order {
            let Some(def) = terms.get(key) else { continue };
            if def.iri.starts_with('@') {
                continue;
            }
            let protected = self.raw.get(key).is_some_and(|r| r.protected);
            match reverse.get(&def.iri) {
                Some(existing) => {
                    let existing_protected = self.raw.get(existing).is_some_and(|r| r.protected);
                    let better = (existing_protected && !protected)
                        || (existing_protected == protected
                            && (key.len(), key.as_str()) < (existing.len(), existing.as_str()));
                    if better {
                        reverse.insert(def.iri.clone(), key.clone());
                    }
                }
                None => {
                    reverse.insert(def.iri.clone(), key.clone());
                }
            }
            if def.iri.ends_with('/') || def.iri.ends_with('#') {
                prefixes.push((key.clone(), def.iri.clone()));
            }
        }
        JsonLdContext {
            terms,
            reverse,
            prefixes,
            vocab,
            source,
        }
    }

    fn resolve_iri(&self, value: &str, vocab: &str, depth: usize) -> Option<String> {
        if depth > 8 {
            return None;
        }
        if value.starts_with('@') {
            return Some(value.to_string());
        }
        if let Some((prefix, suffix)) = value.split_once(':') {
            if !suffix.starts_with("//") {
                if let Some(p) = self.raw.get(prefix).and_then(|r| r.id.as_deref()) {
                    if p != value {
                        return self
                            .resolve_iri(p, vocab, depth + 1)
                            .map(|ns| format!("{ns}{suffix}"));
                    }
                }
            }
            return Some(value.to_string());
        }
        if let Some(id) = self.raw.get(value).and_then(|r| r.id.as_deref()) {
            if id != value {
                return self.resolve_iri(id, vocab, depth + 1);
            }
        }
        Some(format!("{vocab}{value}"))
    }
}

/// Collects the remote context URLs named in a context value (not the core context), in
/// order, so that the caller can fetch them before building.
pub fn remote_urls(ctx: &Value, out: &mut Vec<String>) {
    match ctx {
        Value::String(s) if !is_core_context_url(s) && !out.contains(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| remote_urls(v, out)),
        _ => {}
    }
}

/// Well-known IRIs of the core context, used by the model code.
pub mod iri {
    pub const PROPERTY: &str = "https://uri.etsi.org/ngsi-ld/Property";
    pub const RELATIONSHIP: &str = "https://uri.etsi.org/ngsi-ld/Relationship";
    pub const GEO_PROPERTY: &str = "https://uri.etsi.org/ngsi-ld/GeoProperty";
    pub const LANGUAGE_PROPERTY: &str = "https://uri.etsi.org/ngsi-ld/LanguageProperty";
    pub const JSON_PROPERTY: &str = "https://uri.etsi.org/ngsi-ld/JsonProperty";
    pub const VOCAB_PROPERTY: &str = "https://uri.etsi.org/ngsi-ld/VocabProperty";
    pub const LIST_PROPERTY: &str = "https://uri.etsi.org/ngsi-ld/ListProperty";
    pub const LIST_RELATIONSHIP: &str = "https://uri.etsi.org/ngsi-ld/ListRelationship";
    pub const LOCATION: &str = "https://uri.etsi.org/ngsi-ld/location";
    pub const OBSERVATION_SPACE: &str = "https://uri.etsi.org/ngsi-ld/observationSpace";
    pub const OPERATION_SPACE: &str = "https://uri.etsi.org/ngsi-ld/operationSpace";
    pub const OBSERVED_AT: &str = "https://uri.etsi.org/ngsi-ld/observedAt";
    pub const CREATED_AT: &str = "https://uri.etsi.org/ngsi-ld/createdAt";
    pub const MODIFIED_AT: &str = "https://uri.etsi.org/ngsi-ld/modifiedAt";
    pub const UNIT_CODE: &str = "https://uri.etsi.org/ngsi-ld/unitCode";
    pub const DATASET_ID: &str = "https://uri.etsi.org/ngsi-ld/datasetId";
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_context_is_valid_and_protected() {
        let core = JsonLdContext::core();
        assert_eq!(core.expand("location"), iri::LOCATION);
        assert_eq!(core.expand("Property"), iri::PROPERTY);
        assert_eq!(core.expand("observedAt"), iri::OBSERVED_AT);
        assert_eq!(core.expand("speed"), format!("{DEFAULT_VOCAB}speed"));
        assert_eq!(core.compact(&format!("{DEFAULT_VOCAB}speed")), "speed");
        assert_eq!(core.compact(iri::LOCATION), "location");
        assert_eq!(
            core.compact("https://uri.etsi.org/ngsi-ld/unknownThing"),
            "ngsi-ld:unknownThing"
        );
        assert_eq!(
            core.expand("ngsi-ld:foo"),
            "https://uri.etsi.org/ngsi-ld/foo"
        );
        assert_eq!(core.expand("http://example.org/x"), "http://example.org/x");
        assert!(core.is_core_only());
        assert!(is_core_context_url(
            "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"
        ));
        assert!(is_core_context_url(
            "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
        ));
        assert!(!is_core_context_url(
            "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-non-existing.jsonld"
        ));
    }

    #[test]
    fn client_terms_expand_and_compact() {
        let mut b = ContextBuilder::with_core();
        let ctx = json!([{
            "ex": "http://example.org/",
            "Vehicle": "ex:Vehicle",
            "speed": {"@id": "ex:speed", "@type": "ex:Number"},
            "location": "ex:notAllowed",
            "brand": "http://schema.org/brand"
        }]);
        b.apply(&ctx, &|_| None, 0).unwrap();
        let c = b.build(ctx);
        assert_eq!(c.expand("Vehicle"), "http://example.org/Vehicle");
        assert_eq!(c.expand("speed"), "http://example.org/speed");
        assert_eq!(
            c.expand("location"),
            iri::LOCATION,
            "core terms are protected"
        );
        assert_eq!(c.compact("http://example.org/speed"), "speed");
        assert_eq!(c.compact("http://example.org/other"), "ex:other");
        assert_eq!(c.compact("http://schema.org/brand"), "brand");
        assert_eq!(
            c.term("speed")
                .and_then(|t| t.type_coercion.clone())
                .as_deref(),
            Some("http://example.org/Number")
        );
    }

    #[test]
    fn remote_contexts_are_resolved_through_the_callback() {
        let doc = Arc::new(json!({"@context": {"Thing": "http://example.org/Thing"}}));
        let mut b = ContextBuilder::with_core();
        let src = json!(["http://ctx.example/a.jsonld", CORE_CONTEXT_URL]);
        b.apply(
            &src,
            &|u| (u == "http://ctx.example/a.jsonld").then(|| doc.clone()),
            0,
        )
        .unwrap();
        let c = b.build(src.clone());
        assert_eq!(c.expand("Thing"), "http://example.org/Thing");
        let mut urls = vec![];
        remote_urls(&src, &mut urls);
        assert_eq!(urls, vec!["http://ctx.example/a.jsonld".to_string()]);
        let mut b = ContextBuilder::with_core();
        let err = b
            .apply(&json!("http://nowhere/x"), &|_| None, 0)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::LdContextNotAvailable);
    }
}
