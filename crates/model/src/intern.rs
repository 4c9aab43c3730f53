//! Interned strings for the names that repeat across entities (types, attribute names):
//! one shared allocation per distinct IRI instead of one per entity.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Deserializer};

fn table() -> &'static Mutex<HashSet<Arc<str>>> {
    static TABLE: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(HashSet::new()))
}

/// The shared copy of `s`.
pub fn intern(s: &str) -> Arc<str> {
    let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(a) = t.get(s) {
        return a.clone();
    }
    let a: Arc<str> = Arc::from(s);
    t.insert(a.clone());
    a
}

/// Whether two names are the same: interned names are usually the same pointer, so
/// the text is compared only when they are not.
pub fn same(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// Serde: a list of interned strings.
pub fn de_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Arc<str>>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    Ok(v.iter().map(|s| intern(s)).collect())
}

/// Serde: an optional interned string.
pub fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(|s| intern(&s)))
}

/// Serde: a list of (interned name, value) pairs.
pub fn de_pairs<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<(Arc<str>, T)>, D::Error> {
    let v = Vec::<(String, T)>::deserialize(d)?;
    Ok(v.into_iter().map(|(k, t)| (intern(&k), t)).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn interned_strings_are_shared() {
        let a = super::intern("https://example.org/speed");
        let b = super::intern(&String::from("https://example.org/speed"));
        assert!(std::sync::Arc::ptr_eq(&a, &b));
    }
}
