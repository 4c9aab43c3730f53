//! Interned strings for the names that repeat across entities (types, attribute names):
//! one shared allocation per distinct IRI instead of one per entity.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Deserializer};

/// The table: a fast hash (the snapshot load interns every attribute name of every
/// entity), seeded per process (names come from clients: no precomputed collisions).
type Table = HashSet<Arc<str>, foldhash::fast::RandomState>;

fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(Table::default()))
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

/// A string deserialized straight into the table: the input's text is interned where
/// it lies, with no owned copy first.
struct Interned(Arc<str>);

impl<'de> Deserialize<'de> for Interned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Interned;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Interned, E> {
                Ok(Interned(intern(s)))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// Serde: a list of interned strings.
pub fn de_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Arc<str>>, D::Error> {
    let v = Vec::<Interned>::deserialize(d)?;
    Ok(v.into_iter().map(|s| s.0).collect())
}

/// Serde: an optional interned string.
pub fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
    Ok(Option::<Interned>::deserialize(d)?.map(|s| s.0))
}

/// Serde: a list of (interned name, value) pairs.
pub fn de_pairs<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<(Arc<str>, T)>, D::Error> {
    let v = Vec::<(Interned, T)>::deserialize(d)?;
    Ok(v.into_iter().map(|(k, t)| (k.0, t)).collect())
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
