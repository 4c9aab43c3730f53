//! The web console, embedded: the files `console/` builds (`scripts/build-console.sh`,
//! Vite) are committed under `crates/console/assets/` and compiled into the binary, so
//! that running citybrain, and building it with a plain `cargo build`, needs no
//! Node.js (docs/console.md says why the bundle is committed).
//!
//! This crate only finds files: the HTTP layer (`citybrain-api`) answers with them.

use include_dir::{include_dir, Dir};

static ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets");

/// A file of the console, ready to be answered.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
    /// `body` is the gzip-compressed copy (answer with `Content-Encoding: gzip`).
    pub gzip: bool,
    /// The name carries a hash of the content: cacheable forever.
    pub immutable: bool,
}

/// The media type of a file name.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "woff2" => "font/woff2",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// The console's file at `path` (`/` is `index.html`); the gzip copy where there is one
/// and the client takes it. `None`: no such file (paths with `..` never match).
pub fn asset(path: &str, accepts_gzip: bool) -> Option<Asset> {
    let name = match path.strip_prefix('/').unwrap_or(path) {
        "" => "index.html",
        p => p,
    };
    if name.split('/').any(|seg| seg == ".." || seg.is_empty()) {
        return None;
    }
    let plain = ASSETS.get_file(name)?;
    let immutable = name.starts_with("assets/");
    let ct = content_type(name);
    if accepts_gzip {
        if let Some(gz) = ASSETS.get_file(format!("{name}.gz")) {
            return Some(Asset {
                body: gz.contents(),
                content_type: ct,
                gzip: true,
                immutable,
            });
        }
    }
    Some(Asset {
        body: plain.contents(),
        content_type: ct,
        gzip: false,
        immutable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_served_at_the_root_and_paths_cannot_climb_out() {
        let root = asset("/", false).expect("the console is built into the crate");
        assert_eq!(root.content_type, "text/html; charset=utf-8");
        assert!(!root.immutable);
        assert!(std::str::from_utf8(root.body)
            .unwrap_or_default()
            .contains("citybrain"));
        assert!(asset("/../Cargo.toml", false).is_none());
        assert!(asset("/assets/../index.html", false).is_none());
        assert!(asset("/nothing-here.js", false).is_none());
        assert!(asset("//index.html", false).is_none());
    }

    #[test]
    fn every_script_has_a_gzip_copy_that_inflates_to_it() {
        let mut scripts = 0;
        for f in ASSETS
            .get_dir("assets")
            .map(|d| d.files().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let name = f.path().to_string_lossy().to_string();
            if !name.ends_with(".js") {
                continue;
            }
            scripts += 1;
            let gz = asset(&name, true).unwrap_or_else(|| panic!("{name}"));
            assert!(gz.gzip, "{name} has no .gz copy");
            assert!(gz.immutable);
            assert_eq!(gz.content_type, "text/javascript; charset=utf-8");
            // The gzip magic number; inflating is checked in the browser tests.
            assert_eq!(&gz.body[..2], &[0x1f, 0x8b], "{name}");
            assert!(gz.body.len() < f.contents().len());
        }
        assert!(scripts > 0, "no scripts were built");
    }
}
