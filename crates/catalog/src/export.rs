//! A dataset as CSV (`GET /platform/v1/datasets/{id}/export`): one row per entity,
//! `id`, `type`, then one column per attribute (its value; objects and arrays as
//! compact JSON). The rows are read as the caller: what it may not read is left out
//! and masked attributes come out masked, as in every other read. Exporting needs the
//! `export` action on every type of the dataset.

use std::collections::BTreeSet;

use citybrain_access::{Action, RequestContext, Verb};
use citybrain_broker::{EntityQuery, QueryParams};
use citybrain_model::context::JsonLdContext;
use citybrain_model::AttrValue;

use crate::dataset::short;
use crate::{Catalog, CatalogError, Result};

/// Rows per export request at most (page with `offset`).
pub const MAX_ROWS: usize = 100_000;

/// One exported page.
pub struct Export {
    pub csv: Vec<u8>,
    pub rows: usize,
    /// More rows follow (ask again with `offset` + `rows`).
    pub more: bool,
}

/// A cell's text. Text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`,
/// tab, carriage return first) is prefixed with `'` (OWASP's advice on CSV injection);
/// numbers are written as numbers.
fn cell(v: &AttrValue) -> String {
    match v {
        AttrValue::Null => String::new(),
        AttrValue::Bool(b) => b.to_string(),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Float(f) => f.to_string(),
        AttrValue::Str(s) => {
            if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{s}")
            } else {
                s.to_string()
            }
        }
        AttrValue::Json(t) => t.to_string(),
    }
}

impl Catalog {
    /// Exports up to `limit` rows of dataset `id` from `offset`, as `rc` may see them.
    pub fn export(
        &self,
        rc: &RequestContext,
        id: &str,
        limit: usize,
        offset: usize,
    ) -> Result<Export> {
        let d = self.dataset(rc, id)?;
        let types = d.spec.expanded_types();
        self.broker
            .authorizer()
            .authorize(rc, &Action::entity(Verb::Export, &types, None))?;
        if limit == 0 || limit > MAX_ROWS {
            return Err(CatalogError::Invalid(format!(
                "'limit' must be 1 to {MAX_ROWS}"
            )));
        }
        let ld = JsonLdContext::core();
        let attrs: Vec<String> = d.spec.attrs.iter().map(|a| ld.expand(a)).collect();
        let mut params = QueryParams {
            type_: Some(types.join(",")),
            q: d.spec.q.clone(),
            attrs: (!attrs.is_empty()).then(|| attrs.join(",")),
            ..QueryParams::default()
        };
        // One query for the page (offset pages would rescan from the start each time).
        params.limit = Some(limit.to_string());
        params.offset = Some(offset.to_string());
        let q = EntityQuery::from_params(&params, &ld, limit, MAX_ROWS)?;
        let page = self.broker.query_entities(rc, &q)?;
        let more = page.has_more;
        let entities = page.entities;
        // Columns: the dataset's attributes, else every attribute the rows carry (by short
        // name).
        let columns: Vec<String> = if attrs.is_empty() {
            let mut seen = BTreeSet::new();
            for e in &entities {
                for (name, _) in &e.attrs {
                    seen.insert(name.to_string());
                }
            }
            let mut v: Vec<String> = seen.into_iter().collect();
            v.sort_by(|a, b| short(a).cmp(short(b)).then(a.cmp(b)));
            v
        } else {
            attrs
        };
        let mut w = csv::Writer::from_writer(Vec::new());
        let header = ["id".to_string(), "type".to_string()]
            .into_iter()
            .chain(columns.iter().map(|c| short(c).to_string()));
        let io = |e: csv::Error| CatalogError::Io(format!("CSV: {e}"));
        w.write_record(header).map_err(io)?;
        for e in &entities {
            let ty: Vec<&str> = e.types.iter().map(|t| short(t)).collect();
            let mut row = vec![e.id.clone(), ty.join(",")];
            for c in &columns {
                row.push(
                    e.attr(c)
                        .and_then(|i| i.first())
                        .map(|a| cell(&a.value))
                        .unwrap_or_default(),
                );
            }
            w.write_record(&row).map_err(io)?;
        }
        let csv = w
            .into_inner()
            .map_err(|e| CatalogError::Io(format!("CSV: {e}")))?;
        Ok(Export {
            csv,
            rows: entities.len(),
            more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_numbers_kept() {
        assert_eq!(
            cell(&AttrValue::Str("=HYPERLINK(\"x\")".into())),
            "'=HYPERLINK(\"x\")"
        );
        assert_eq!(cell(&AttrValue::Str("@SUM(A1)".into())), "'@SUM(A1)");
        assert_eq!(cell(&AttrValue::Str("plain".into())), "plain");
        assert_eq!(cell(&AttrValue::Int(-5)), "-5");
        assert_eq!(cell(&AttrValue::Float(2.5)), "2.5");
        assert_eq!(cell(&AttrValue::Null), "");
    }
}
