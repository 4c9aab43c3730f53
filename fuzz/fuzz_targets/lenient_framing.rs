//! The request-line adapter (`citybrain_api::lenient::Framing`) on arbitrary bytes cut
//! at arbitrary places: it never panics, never loses or reorders bytes (the output is
//! the input with some bytes of request targets percent-encoded), and cutting the
//! input differently never changes the output.
#![no_main]

use citybrain_api::lenient::Framing;
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8], cut: usize) -> Vec<u8> {
    let mut f = Framing::default();
    let mut out = Vec::new();
    for piece in data.chunks(cut.max(1)) {
        f.feed(piece, &mut out);
    }
    f.finish(&mut out);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let whole = run(rest, rest.len().max(1));
    let pieces = run(rest, usize::from(cut % 17) + 1);
    assert_eq!(whole, pieces, "the output depends on how the input is cut");
    assert!(whole.len() >= rest.len());
    // Decoding the percent-encodings it added gives the input back: only whole
    // `%XX` triples were inserted, each for one byte.
    let mut i = 0;
    let mut j = 0;
    while i < rest.len() {
        if whole[j] == rest[i] {
            i += 1;
            j += 1;
        } else {
            assert_eq!(whole[j], b'%');
            let hex = std::str::from_utf8(&whole[j + 1..j + 3]).unwrap();
            assert_eq!(u8::from_str_radix(hex, 16).unwrap(), rest[i]);
            i += 1;
            j += 3;
        }
    }
    assert_eq!(j, whole.len());
});
