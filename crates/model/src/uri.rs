//! URI validation (RFC 3986 absolute URIs), used for entity ids, relationship objects,
//! datasetIds and subscription endpoints.

/// True when `s` is an absolute URI: a scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`),
/// a colon, and a non-empty remainder without whitespace, control characters or characters
/// RFC 3986 never allows unescaped.
pub fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return false,
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
        return false;
    }
    if rest.is_empty() {
        return false;
    }
    rest.chars().all(|c| {
        !c.is_whitespace()
            && !c.is_control()
            && !matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '\\' | '^' | '`')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_urns_and_urls() {
        assert!(is_absolute_uri("urn:ngsi-ld:Vehicle:A4567"));
        assert!(is_absolute_uri("http://example.org/a?b=c#d"));
        assert!(is_absolute_uri(
            "https://uri.etsi.org/ngsi-ld/default-context/speed"
        ));
    }

    #[test]
    fn rejects_relative_and_bad() {
        for bad in [
            "",
            "A4567",
            ":abc",
            "1abc:x",
            "urn:",
            "urn:a b",
            "http://a/<x>",
            "urn:a\"b",
        ] {
            assert!(!is_absolute_uri(bad), "{bad}");
        }
    }
}
