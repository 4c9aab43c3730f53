//! One request evaluated against the policies: the principal, resource and context
//! as Cedar entities, the decision, and the mask the permitting policies carry.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Context, Decision, Entities, Entity as CEntity, EntityUid, Request, RestrictedExpression,
};
use citybrain_access::{Principal, RequestContext};

use crate::cache::{CtxKey, Res};
use crate::{Class, Decided, Level, Mask, State};

pub(crate) fn uid(ty: &str, id: &str) -> EntityUid {
    // A quoted id with every character escaped by the JSON rules Cedar shares.
    let text = format!("{ty}::{}", serde_json::Value::String(id.to_string()));
    EntityUid::from_str(&text).unwrap_or_else(|_| {
        EntityUid::from_type_name_and_id(
            cedar_policy::EntityTypeName::from_str(ty).unwrap_or_else(|_| unreachable_type()),
            cedar_policy::EntityId::new(""),
        )
    })
}

/// Type names used here are constants of the schema, which parse.
fn unreachable_type() -> cedar_policy::EntityTypeName {
    #[allow(clippy::expect_used)] // a constant known to parse
    cedar_policy::EntityTypeName::from_str("Api").expect("a constant type name")
}

/// Evaluates one request against the policies (uncached).
pub(crate) fn evaluate(
    cedar: &cedar_policy::Authorizer,
    st: &State,
    rc: &RequestContext,
    action: &'static str,
    res: Res<'_>,
    (hour, weekday, ctx): (i64, i64, &CtxKey),
) -> Decided {
    let (principal, mut entities) = match &rc.principal {
        Principal::User(i) => {
            let mut parents: HashSet<EntityUid> = i.roles.iter().map(|r| uid("Role", r)).collect();
            let mut attrs = HashMap::new();
            if let Some(d) = &i.department {
                parents.insert(uid("Department", d));
                attrs.insert(
                    "department".to_string(),
                    RestrictedExpression::new_string(d.clone()),
                );
            }
            let p = uid("User", &i.id);
            let mut es = Vec::new();
            for parent in &parents {
                es.push(CEntity::new_no_attrs(parent.clone(), HashSet::new()));
            }
            match CEntity::new(p.clone(), attrs, parents) {
                Ok(e) => es.push(e),
                Err(_) => return Decided::Deny,
            }
            (p, es)
        }
        _ => (uid("Anonymous", "anonymous"), Vec::new()),
    };
    let class = |c: &Class| -> HashMap<String, RestrictedExpression> {
        HashMap::from([
            (
                "level".to_string(),
                RestrictedExpression::new_long(c.level as i64),
            ),
            (
                "owner".to_string(),
                RestrictedExpression::new_string(c.owner.clone()),
            ),
            (
                "sharing".to_string(),
                RestrictedExpression::new_string(c.sharing.as_str().into()),
            ),
        ])
    };
    let resource = match res {
        Res::Type(t) => {
            let mut a = class(st.classes.of_type(t));
            a.insert(
                "name".into(),
                RestrictedExpression::new_string(t.to_string()),
            );
            (uid("EntityType", t), a)
        }
        Res::Attr(t, n) => {
            let mut a = class(st.classes.of_attribute(t, n));
            a.insert(
                "name".into(),
                RestrictedExpression::new_string(n.to_string()),
            );
            a.insert(
                "entityType".into(),
                RestrictedExpression::new_string(t.to_string()),
            );
            (uid("Attribute", &format!("{t}.{n}")), a)
        }
        Res::Api(name) => {
            let c = Class {
                // Who did what is confidential: operators and administrators read it;
                // so are the departments' endpoints and the headers sent to them.
                level: if name == "audit" || name == "registrations" {
                    Level::Confidential
                } else {
                    Level::Internal
                },
                ..Class::default()
            };
            (uid("Api", name), class(&c))
        }
        Res::Dataset(d) => {
            let sharing = match d.access {
                "PUBLIC" => crate::Sharing::Unconditional,
                "RESTRICTED" => crate::Sharing::Conditional,
                _ => crate::Sharing::None,
            };
            let c = Class {
                level: d.level,
                owner: d.owner.to_string(),
                sharing,
            };
            let mut a = class(&c);
            a.insert(
                "name".into(),
                RestrictedExpression::new_string(d.id.to_string()),
            );
            a.insert(
                "access".into(),
                RestrictedExpression::new_string(d.access.to_string()),
            );
            (uid("Dataset", d.id), a)
        }
    };
    let r = resource.0.clone();
    match CEntity::new(resource.0, resource.1, HashSet::new()) {
        Ok(e) => entities.push(e),
        Err(_) => return Decided::Deny,
    }
    let Ok(entities) = Entities::from_entities(entities, None) else {
        return Decided::Deny;
    };
    let mut pairs = vec![
        (
            "tenant".to_string(),
            RestrictedExpression::new_string(rc.tenant.clone()),
        ),
        ("hour".to_string(), RestrictedExpression::new_long(hour)),
        (
            "weekday".to_string(),
            RestrictedExpression::new_long(weekday),
        ),
        (
            "mode".to_string(),
            RestrictedExpression::new_string(
                if ctx.emergency { "emergency" } else { "normal" }.to_string(),
            ),
        ),
    ];
    if let Some(ip) = ctx.source {
        pairs.push((
            "source".to_string(),
            RestrictedExpression::new_ip(ip.to_string()),
        ));
    }
    if let Some(p) = &ctx.purpose {
        pairs.push((
            "purpose".to_string(),
            RestrictedExpression::new_string(p.to_string()),
        ));
    }
    let Ok(context) = Context::from_pairs(pairs) else {
        return Decided::Deny;
    };
    let Ok(request) = Request::new(principal, uid("Action", action), r, context, None) else {
        return Decided::Deny;
    };
    let resp = cedar.is_authorized(&request, &st.policies, &entities);
    for e in resp.diagnostics().errors() {
        tracing::debug!(error = %e, "a policy failed to evaluate (skipped)");
    }
    if resp.decision() != Decision::Allow {
        return Decided::Deny;
    }
    let mut mask: Option<Mask> = None;
    for id in resp.diagnostics().reason() {
        match st.masks.get(id.to_string().as_str()) {
            // One unmasked permit: the caller sees the value.
            None => return Decided::Allow(None),
            Some(m) => {
                if mask.is_none_or(|x| m.strength() > x.strength()) {
                    mask = Some(*m);
                }
            }
        }
    }
    Decided::Allow(mask)
}
