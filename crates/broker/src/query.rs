//! Entity queries (`GET /entities`, `POST /entityOperations/query`): parameters, type
//! expressions, filters and pagination.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use citybrain_model::geobox::BBox;
use citybrain_model::geojson::{value_geometry, GeoQuery};
use citybrain_model::q::Query;
use citybrain_model::{AttrKind, Entity, ErrorKind, JsonLdContext};
use regex::Regex;
use serde_json::Value;

use crate::error::{BrokerError, Result};
use crate::order::OrderBy;
use crate::request::RequestContext;
use crate::Broker;
use citybrain_access::{Action, Verb};

/// Query parameters as received (strings); the broker validates and parses them.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    pub id: Option<String>,
    pub type_: Option<String>,
    pub id_pattern: Option<String>,
    pub attrs: Option<String>,
    pub q: Option<String>,
    pub georel: Option<String>,
    pub geometry: Option<String>,
    pub coordinates: Option<Value>,
    pub geoproperty: Option<String>,
    pub scope_q: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
    pub count: bool,
    /// `orderBy` (NGSI-LD 1.9).
    pub order_by: Option<String>,
    /// Allow a query without any filter (`local=true`, or internal callers).
    pub allow_unfiltered: bool,
}

/// A type expression in disjunctive normal form: any of the groups, all types in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeExpr(pub Vec<Vec<String>>);

impl TypeExpr {
    /// Parses `A,B`, `A|B`, `A;B` and parenthesised combinations, expanding names.
    pub fn parse(s: &str, ld: &JsonLdContext) -> Result<TypeExpr> {
        let mut p = TypeParser {
            s: s.as_bytes(),
            text: s,
            pos: 0,
            depth: 0,
            ld,
        };
        let e = p.or()?;
        if p.pos != s.len() {
            return Err(BrokerError::bad_data(format!(
                "invalid type expression '{s}' at position {}",
                p.pos
            )));
        }
        Ok(e)
    }

    pub fn matches(&self, e: &Entity) -> bool {
        self.matches_types(&e.types)
    }

    /// True when `types` (expanded) satisfy the expression.
    pub fn matches_types(&self, types: &[Arc<str>]) -> bool {
        self.0
            .iter()
            .any(|group| group.iter().all(|t| types.iter().any(|x| **x == **t)))
    }

    /// Every type named (for index scans).
    pub fn all_types(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.0.iter().flatten().collect();
        set.into_iter().cloned().collect()
    }
}

struct TypeParser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
    ld: &'a JsonLdContext,
}

impl TypeParser<'_> {
    fn err(&self) -> BrokerError {
        BrokerError::bad_data(format!(
            "invalid type expression '{}' at position {}",
            self.text, self.pos
        ))
    }
    fn or(&mut self) -> Result<TypeExpr> {
        let mut groups = self.and()?.0;
        while matches!(self.s.get(self.pos), Some(b'|') | Some(b',')) {
            self.pos += 1;
            groups.extend(self.and()?.0);
        }
        Ok(TypeExpr(groups))
    }
    fn and(&mut self) -> Result<TypeExpr> {
        let mut acc = self.atom()?.0;
        while self.s.get(self.pos) == Some(&b';') {
            self.pos += 1;
            let rhs = self.atom()?.0;
            let mut next = Vec::new();
            for a in &acc {
                for b in &rhs {
                    let mut g = a.clone();
                    g.extend(b.iter().cloned());
                    next.push(g);
                }
            }
            if next.len() > 256 {
                return Err(self.err());
            }
            acc = next;
        }
        Ok(TypeExpr(acc))
    }
    fn atom(&mut self) -> Result<TypeExpr> {
        if self.s.get(self.pos) == Some(&b'(') {
            self.depth += 1;
            if self.depth > 16 {
                return Err(self.err());
            }
            self.pos += 1;
            let e = self.or()?;
            if self.s.get(self.pos) != Some(&b')') {
                return Err(self.err());
            }
            self.pos += 1;
            self.depth -= 1;
            return Ok(e);
        }
        let start = self.pos;
        while let Some(c) = self.s.get(self.pos) {
            if matches!(c, b'|' | b',' | b';' | b'(' | b')') {
                break;
            }
            self.pos += 1;
        }
        let name = &self.text[start..self.pos];
        citybrain_model::entity::validate_name("entity type", name).map_err(|_| self.err())?;
        Ok(TypeExpr(vec![vec![self.ld.expand(name)]]))
    }
}

/// A validated query.
#[derive(Debug, Clone, Default)]
pub struct EntityQuery {
    pub ids: Option<Vec<String>>,
    pub types: Option<TypeExpr>,
    pub id_pattern: Option<Regex>,
    pub attrs: Option<Vec<String>>,
    pub q: Option<Query>,
    pub geo: Option<GeoQuery>,
    pub scope: Option<Vec<String>>,
    pub limit: usize,
    pub offset: usize,
    pub count: bool,
    pub order_by: Option<OrderBy>,
}

/// One page of results.
#[derive(Debug, Clone)]
pub struct QueryPage {
    pub entities: Vec<Arc<Entity>>,
    pub total: Option<usize>,
    pub has_more: bool,
    pub offset: usize,
    pub limit: usize,
}

/// Splits a comma-separated list, rejecting empty items.
pub fn split_list(param: &str, s: &str) -> Result<Vec<String>> {
    let items: Vec<String> = s.split(',').map(|x| x.trim().to_string()).collect();
    if items.iter().any(String::is_empty) {
        return Err(BrokerError::bad_data(format!(
            "'{param}' has an empty item"
        )));
    }
    Ok(items)
}

fn parse_usize(param: &str, v: Option<&str>, default: usize) -> Result<usize> {
    match v {
        None => Ok(default),
        Some(s) => s.parse::<usize>().map_err(|_| {
            BrokerError::bad_data(format!(
                "'{param}' must be a non-negative integer, got '{s}'"
            ))
        }),
    }
}

/// Builds a geo-query from parameters (shared by queries and subscriptions).
pub fn geo_query(
    ld: &JsonLdContext,
    georel: Option<&str>,
    geometry: Option<&str>,
    coordinates: Option<&Value>,
    geoproperty: Option<&str>,
) -> Result<Option<GeoQuery>> {
    match (georel, geometry, coordinates) {
        (None, None, None) => Ok(None),
        (Some(r), Some(g), Some(c)) => {
            let prop = ld.expand(geoproperty.unwrap_or("location"));
            Ok(Some(GeoQuery::new(r, g, c.clone(), prop)?))
        }
        _ => Err(BrokerError::bad_data(
            "a geo-query needs georel, geometry and coordinates together",
        )),
    }
}

/// Matches `scopeQ`: `/a/b` exact, `/a/#` the subtree, `/a/+/c` one level; `,` or `|`
/// for any of several, `;` for all of several.
pub fn scope_matches(pattern: &str, scopes: &[String]) -> bool {
    pattern
        .split(['|', ','])
        .any(|alt| alt.split(';').all(|p| scope_term_matches(p, scopes)))
}

fn scope_term_matches(p: &str, scopes: &[String]) -> bool {
    let pp: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    scopes.iter().any(|s| {
        let ss: Vec<&str> = s.trim_start_matches('/').split('/').collect();
        let mut i = 0;
        for part in &pp {
            match *part {
                "#" => return true,
                "+" if i < ss.len() => i += 1,
                x if i < ss.len() && ss[i] == x => i += 1,
                _ => return false,
            }
        }
        i == ss.len()
    })
}

impl EntityQuery {
    /// Validates parameters against the request context.
    pub fn from_params(
        p: &QueryParams,
        ld: &JsonLdContext,
        default_limit: usize,
        max_limit: usize,
    ) -> Result<EntityQuery> {
        let ids = p.id.as_deref().map(|s| split_list("id", s)).transpose()?;
        if let Some(ids) = &ids {
            for id in ids {
                crate::entities::check_id(id)?;
            }
        }
        let types = p
            .type_
            .as_deref()
            .map(|s| TypeExpr::parse(s, ld))
            .transpose()?;
        let id_pattern = p
            .id_pattern
            .as_deref()
            .map(|s| {
                if s.contains("**") {
                    return Err(BrokerError::bad_data(format!(
                        "invalid 'idPattern' '{s}': a quantifier cannot follow '*'"
                    )));
                }
                Regex::new(s)
                    .map_err(|e| BrokerError::bad_data(format!("invalid 'idPattern': {e}")))
            })
            .transpose()?;
        let attrs = match p.attrs.as_deref() {
            None => None,
            Some(s) => {
                let mut out = Vec::new();
                for a in split_list("attrs", s)? {
                    citybrain_model::entity::validate_name("attribute", &a)?;
                    let iri = ld.expand(&a);
                    if iri.starts_with('@')
                        || matches!(a.as_str(), "scope" | "createdAt" | "modifiedAt")
                    {
                        return Err(BrokerError::bad_data(format!(
                            "'{a}' in 'attrs' is not an attribute"
                        )));
                    }
                    out.push(iri);
                }
                Some(out)
            }
        };
        let q = match p.q.as_deref() {
            Some(s) => {
                let mut q = Query::parse(s)?;
                q.resolve(ld);
                Some(q)
            }
            None => None,
        };
        let geo = geo_query(
            ld,
            p.georel.as_deref(),
            p.geometry.as_deref(),
            p.coordinates.as_ref(),
            p.geoproperty.as_deref(),
        )?;
        let scope = p.scope_q.as_ref().map(|s| vec![s.clone()]);
        let limit = parse_usize("limit", p.limit.as_deref(), default_limit)?;
        let offset = parse_usize("offset", p.offset.as_deref(), 0)?;
        if limit > max_limit {
            return Err(BrokerError::new(
                ErrorKind::TooManyResults,
                format!("'limit' {limit} is above the maximum {max_limit}"),
            ));
        }
        if limit == 0 && !p.count {
            return Err(BrokerError::bad_data(
                "'limit' 0 is only allowed with count=true",
            ));
        }
        // NGSI-LD 1.8: a query needs one of type, attrs, q, geoQ (or scopeQ); ids and an
        // idPattern alone are not enough.
        let unfiltered =
            types.is_none() && attrs.is_none() && q.is_none() && geo.is_none() && scope.is_none();
        if unfiltered && !p.allow_unfiltered {
            return Err(BrokerError::bad_data(
                "a query needs at least one of type, attrs, q, geoQ or scopeQ",
            ));
        }
        let order_by = p
            .order_by
            .as_deref()
            .map(|s| OrderBy::parse(s, ld))
            .transpose()?;
        // "id takes precedence over idPattern" (NGSI-LD 1.9, 5.2.33): with ids named,
        // the pattern (still checked above) selects nothing more or less.
        let id_pattern = if ids.is_some() { None } else { id_pattern };
        Ok(EntityQuery {
            ids,
            types,
            id_pattern,
            attrs,
            q,
            geo,
            scope,
            limit,
            offset,
            count: p.count,
            order_by,
        })
    }

    /// True when the entity passes every filter.
    pub fn matches(&self, e: &Entity) -> bool {
        if let Some(ids) = &self.ids {
            if !ids.contains(&e.id) {
                return false;
            }
        }
        if self.types.as_ref().is_some_and(|t| !t.matches(e)) {
            return false;
        }
        if self.id_pattern.as_ref().is_some_and(|r| !r.is_match(&e.id)) {
            return false;
        }
        if let Some(attrs) = &self.attrs {
            if !attrs.iter().any(|a| e.attr(a).is_some()) {
                return false;
            }
        }
        if self.q.as_ref().is_some_and(|q| !q.matches(e)) {
            return false;
        }
        if let Some(g) = &self.geo {
            if !geo_matches(g, e) {
                return false;
            }
        }
        if let Some(scope) = &self.scope {
            let Some(es) = &e.scope else { return false };
            if !scope.iter().any(|p| scope_matches(p, es)) {
                return false;
            }
        }
        true
    }
}

/// True when the entity's geo-property satisfies the geo-query.
pub fn geo_matches(g: &GeoQuery, e: &Entity) -> bool {
    e.attr(&g.geoproperty).is_some_and(|instances| {
        instances
            .iter()
            .filter(|a| a.kind == AttrKind::GeoProperty)
            .filter_map(|a| value_geometry(&a.value))
            .any(|geom| g.matches(&geom))
    })
}

impl EntityQuery {
    /// The types a query names (every type of its type expression), as an action's
    /// resource names them; empty for a query over all types.
    pub(crate) fn types_asked(&self) -> Vec<Arc<str>> {
        self.types
            .as_ref()
            .map(|t| {
                t.all_types()
                    .iter()
                    .map(|s| Arc::from(s.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Broker {
    /// Runs a query and returns one page.
    pub fn query_entities(&self, rc: &RequestContext, query: &EntityQuery) -> Result<QueryPage> {
        self.check_tenant(rc)?;
        let asked = query.types_asked();
        self.allow(rc, Action::entity(Verb::Read, &asked, None))?;
        // What the caller may not see is neither matched nor counted; a masked entity
        // is matched as masked, so a filter cannot probe what the mask hides.
        let everything = self.authorizer().sees_everything(rc);
        let mut page = QueryPage {
            entities: Vec::new(),
            total: None,
            has_more: false,
            offset: query.offset,
            limit: query.limit,
        };
        let mut matched = 0usize;
        // With orderBy every match is collected and sorted before paging.
        let mut all: Vec<Arc<Entity>> = Vec::new();
        let ordered = query.order_by.is_some();
        let mut visit = |e: &Arc<Entity>| {
            let seen;
            let e = if everything {
                e
            } else {
                match self.visible(rc, e.clone()) {
                    Some(v) => {
                        seen = v;
                        &seen
                    }
                    None => return ControlFlow::Continue(()),
                }
            };
            if !query.matches(e) {
                return ControlFlow::Continue(());
            }
            if ordered {
                all.push(e.clone());
                return ControlFlow::Continue(());
            }
            matched += 1;
            if matched > query.offset {
                if page.entities.len() < query.limit {
                    page.entities.push(e.clone());
                } else {
                    page.has_more = true;
                    if !query.count {
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        };
        match &query.ids {
            Some(ids) => {
                let mut sorted = ids.clone();
                sorted.sort();
                sorted.dedup();
                for id in sorted {
                    if let Some(e) = self.store.get(&rc.tenant, &id)? {
                        if visit(&e).is_break() {
                            break;
                        }
                    }
                }
            }
            None => {
                // A value-index range from q narrows the candidates; every candidate still
                // passes the full filter, so the answer is the same as a scan's.
                // Only where the caller sees the filtered attribute as stored: the index
                // holds the stored values, and choosing candidates by a masked one
                // would let a filter probe what the mask hides (a range on stored
                // values, checked again on the masked ones, bisects the stored value).
                // The same holds for the spatial index, tried first: a geo-query is
                // usually the narrower condition. The attribute must show as stored
                // for every type in the tenant, not only the query's: an entity of
                // the asked type may carry another type whose policy masks it.
                let wants_index = query.geo.is_some() || query.q.is_some();
                let tenant_types = match (everything, wants_index) {
                    (false, true) => self.store.type_names(&rc.tenant)?,
                    _ => None,
                };
                let as_stored = |attr: &str| {
                    everything
                        || tenant_types.as_ref().is_some_and(|all| {
                            let mut types: Vec<Arc<str>> = all.clone();
                            if let Some(t) = &query.types {
                                types.extend(t.all_types().into_iter().map(Arc::from));
                            }
                            self.authorizer().shows_as_stored(rc, &types, attr)
                        })
                };
                let area = query
                    .geo
                    .as_ref()
                    .filter(|g| as_stored(&g.geoproperty))
                    .and_then(|g| Some((g.geoproperty.as_str(), g.candidate_boxes()?)))
                    .filter(|(_, boxes)| boxes.iter().all(BBox::is_narrow));
                let mut indexed = match area {
                    Some((attr, boxes)) => {
                        self.store.scan_area(&rc.tenant, attr, &boxes, &mut visit)?
                    }
                    None => false,
                };
                if !indexed {
                    let hint = query
                        .q
                        .as_ref()
                        .and_then(|q| q.index_hint())
                        .filter(|h| as_stored(&h.attr_iri));
                    indexed = match hint {
                        Some(h) => self.store.scan_values(
                            &rc.tenant,
                            &h.attr_iri,
                            &h.ranges,
                            &mut visit,
                        )?,
                        None => false,
                    };
                }
                if !indexed {
                    let types = query.types.as_ref().map(TypeExpr::all_types);
                    self.store
                        .scan(&rc.tenant, types.as_deref(), None, &mut visit)?;
                }
            }
        }
        if let Some(order) = &query.order_by {
            all.sort_by(|a, b| order.compare(a, b));
            matched = all.len();
            page.has_more = all.len() > query.offset + query.limit;
            page.entities = all
                .into_iter()
                .skip(query.offset)
                .take(query.limit)
                .collect();
        }
        if query.count {
            page.total = Some(matched);
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_expressions() {
        let ld = JsonLdContext::core();
        let e = TypeExpr::parse("(A;B)|C,D", &ld).unwrap();
        assert_eq!(e.0.len(), 3);
        assert_eq!(e.0[0].len(), 2);
        assert!(TypeExpr::parse("A;", &ld).is_err());
        assert!(TypeExpr::parse("(A", &ld).is_err());
        assert_eq!(e.all_types().len(), 4);
    }

    #[test]
    fn scopes() {
        let s = vec!["/Madrid/Gardens/ParqueNorte".to_string()];
        assert!(scope_matches("/Madrid/#", &s));
        assert!(scope_matches("/Madrid/+/ParqueNorte", &s));
        assert!(scope_matches("/Madrid/Gardens/ParqueNorte", &s));
        assert!(!scope_matches("/Madrid/Gardens", &s));
        assert!(!scope_matches("/Porto/#", &s));
        let two = vec!["/a/b".to_string(), "/c".to_string()];
        assert!(scope_matches("/a/b;/c", &two));
        assert!(!scope_matches("/a/b;/d", &two));
        assert!(scope_matches("/a/b;/d|/c", &two));
    }
}
