//! Request lines as real clients send them, and the parser's refusals as clients read
//! them. `curl -G -d 'q=speed>5'` (how FIWARE's
//! tutorials query) puts raw `>`, `<` and `"` in the request target; the HTTP parser
//! refuses them before the application sees the request, with a bare 400. Orion and
//! Scorpio accept them. [`Lenient`] sits between the socket and the HTTP parser and
//! percent-encodes, in each request line's target only, the bytes a URI may not hold
//! (`"`, `<`, `>`, `\`, `^`, `` ` ``, `{`, `|`, `}`, spaces between the method and
//! the version, and non-ASCII bytes): the application then parses them as their
//! percent-encoded forms.
//!
//! To find every request line of a kept-alive connection it follows HTTP/1.1 framing
//! (`Content-Length`, chunked bodies). Requests whose targets need no change pass byte
//! for byte. Anything it cannot follow the way the parser does (a line over 16 KiB, a
//! header section over 64 KiB, a conflicting or malformed length, a chunk or trailer
//! line not ended by CRLF, an upgrade) switches it to passing everything through
//! unchanged for the rest of the connection, leaving the verdict to the parser.
//!
//! On the way out, the parser's own refusals (`400 Bad Request` with an empty body,
//! written before the application saw anything) get a ProblemDetails body and a log
//! line, like every other refusal.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest request line or header line followed (longer: passed through).
const MAX_LINE: usize = 16 * 1024;
/// The longest header section followed.
const MAX_HEADERS: usize = 64 * 1024;
/// The most body bytes read straight into the parser's buffer at once.
const DIRECT_READ: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Before a request line (empty lines before it are allowed).
    RequestLine,
    Headers {
        seen: usize,
        length: Option<u64>,
        chunked: bool,
        /// `Upgrade`, or a CONNECT: after this request the bytes are not HTTP/1.
        upgrade: bool,
    },
    Body(u64),
    ChunkSize,
    /// Chunk data and its closing CRLF.
    ChunkData(u64),
    Trailers,
    Passthrough,
}

/// The framing follower: bytes in, bytes out (the same, or a request target fixed).
#[derive(Debug)]
pub struct Framing {
    state: State,
    line: Vec<u8>,
}

impl Default for Framing {
    fn default() -> Self {
        Framing {
            state: State::RequestLine,
            line: Vec::new(),
        }
    }
}

/// Whether a byte may stand in a request target as it is. Control bytes also stay
/// (they are not what a client means to send: the parser refuses them); `#` is
/// encoded (a request target has no fragment, and the URI parser would cut there).
fn allowed(b: u8) -> bool {
    b < 0x20 || b == 0x7f || ((0x21..=0x7e).contains(&b) && !b"\"<>\\^`{|}#".contains(&b))
}

/// The request line with its target's disallowed bytes percent-encoded; `None` when
/// it needs no change (or is not a request line this can read).
fn fix_request_line(line: &[u8]) -> Option<Vec<u8>> {
    let eol = if line.ends_with(b"\r\n") {
        2
    } else if line.ends_with(b"\n") {
        1
    } else {
        0
    };
    let content = &line[..line.len() - eol];
    let first = content.iter().position(|b| *b == b' ')?;
    let last = content.iter().rposition(|b| *b == b' ')?;
    if last <= first || !content[last + 1..].starts_with(b"HTTP/") {
        return None;
    }
    let target = &content[first + 1..last];
    if target.iter().all(|b| allowed(*b)) {
        return None;
    }
    let mut out = Vec::with_capacity(line.len() + 16);
    out.extend_from_slice(&content[..=first]);
    for &b in target {
        if allowed(b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out.extend_from_slice(&content[last..]);
    out.extend_from_slice(&line[line.len() - eol..]);
    Some(out)
}

impl Framing {
    /// Takes bytes read from the client and appends what the parser should see.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match self.state {
                State::Passthrough => {
                    out.extend_from_slice(input);
                    return;
                }
                State::Body(n) | State::ChunkData(n) => {
                    let take = (n.min(input.len() as u64)) as usize;
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    let left = n - take as u64;
                    let body = matches!(self.state, State::Body(_));
                    self.state = match (body, left) {
                        (true, 0) => State::RequestLine,
                        (true, l) => State::Body(l),
                        (false, 0) => State::ChunkSize,
                        (false, l) => State::ChunkData(l),
                    };
                }
                _ => {
                    // A line: gather it up to its newline.
                    let nl = input.iter().position(|b| *b == b'\n');
                    let take = nl.map_or(input.len(), |i| i + 1);
                    self.line.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    // Too long (complete or not): the same verdict however it was cut.
                    if self.line.len() > MAX_LINE {
                        self.give_up(out);
                        continue;
                    }
                    if nl.is_none() {
                        continue;
                    }
                    let line = std::mem::take(&mut self.line);
                    self.on_line(line, out);
                }
            }
        }
    }

    /// The end of the stream: a line held back goes out as it is.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.give_up(out);
    }

    /// Passes what is held and everything after it through unchanged.
    fn give_up(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.line);
        self.state = State::Passthrough;
    }

    fn on_line(&mut self, line: Vec<u8>, out: &mut Vec<u8>) {
        let blank = line == b"\r\n" || line == b"\n";
        match &mut self.state {
            State::RequestLine => {
                if !blank {
                    self.state = State::Headers {
                        seen: 0,
                        length: None,
                        chunked: false,
                        upgrade: line.starts_with(b"CONNECT "),
                    };
                }
                match fix_request_line(&line) {
                    Some(fixed) => out.extend_from_slice(&fixed),
                    None => out.extend_from_slice(&line),
                }
            }
            State::Headers {
                seen,
                length,
                chunked,
                upgrade,
            } => {
                out.extend_from_slice(&line);
                *seen += line.len();
                if *seen > MAX_HEADERS {
                    self.state = State::Passthrough;
                    return;
                }
                if blank {
                    self.state = match (*upgrade, *chunked, *length) {
                        (true, ..) => State::Passthrough,
                        (false, true, _) => State::ChunkSize,
                        (false, false, Some(n)) if n > 0 => State::Body(n),
                        _ => State::RequestLine,
                    };
                    return;
                }
                let Some(colon) = line.iter().position(|b| *b == b':') else {
                    return;
                };
                let name = line[..colon].trim_ascii();
                let value = line[colon + 1..].trim_ascii();
                if name.eq_ignore_ascii_case(b"content-length") {
                    let parsed = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok());
                    match (parsed, *length) {
                        (Some(n), None) => *length = Some(n),
                        (Some(n), Some(m)) if n == m => {}
                        // Malformed or conflicting: the parser will refuse it.
                        _ => self.state = State::Passthrough,
                    }
                } else if name.eq_ignore_ascii_case(b"upgrade") {
                    *upgrade = true;
                } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                    let v = String::from_utf8_lossy(value).to_ascii_lowercase();
                    if v.split(',').any(|t| t.trim() == "chunked") {
                        *chunked = true;
                    }
                }
            }
            // The chunked decoder ends these lines only at CRLF (a bare LF stays
            // inside the line): anything else is framed differently by the parser,
            // so from here on everything passes unchanged.
            State::ChunkSize | State::Trailers if !line.ends_with(b"\r\n") => {
                out.extend_from_slice(&line);
                self.state = State::Passthrough;
            }
            State::ChunkSize => {
                out.extend_from_slice(&line);
                let text = String::from_utf8_lossy(&line);
                let size = text.split(';').next().unwrap_or("").trim();
                match u64::from_str_radix(size, 16) {
                    Ok(0) => self.state = State::Trailers,
                    // The data, then its CRLF.
                    Ok(n) => self.state = State::ChunkData(n.saturating_add(2)),
                    Err(_) => self.state = State::Passthrough,
                }
            }
            State::Trailers => {
                out.extend_from_slice(&line);
                if line == b"\r\n" {
                    self.state = State::RequestLine;
                }
            }
            State::Body(_) | State::ChunkData(_) | State::Passthrough => {
                out.extend_from_slice(&line)
            }
        }
    }
}

/// A stream whose request lines are made acceptable to the HTTP parser, and whose
/// parser-made refusals carry a ProblemDetails body.
pub struct Lenient<S> {
    inner: S,
    framing: Framing,
    /// Bytes ready for the parser, and how many of them it has taken.
    ready: Vec<u8>,
    taken: usize,
    /// A rewritten answer still to be written to the client, and how much of it was.
    answer: Vec<u8>,
    written: usize,
}

impl<S> Lenient<S> {
    pub fn new(inner: S) -> Lenient<S> {
        Lenient {
            inner,
            framing: Framing::default(),
            ready: Vec::new(),
            taken: 0,
            answer: Vec::new(),
            written: 0,
        }
    }
}

/// Statuses the HTTP parser answers by itself, with an empty body, when it cannot
/// read a request: the application never sends these without a body.
const PARSER_STATUSES: [(&str, &str); 5] = [
    (
        "400",
        "the request could not be read as HTTP/1.1 (malformed request line or headers)",
    ),
    ("414", "the request target is too long"),
    ("431", "the request's header section is too large"),
    (
        "501",
        "the request uses a transfer coding this server does not implement",
    ),
    ("505", "the HTTP version is not supported"),
];

/// The parser's own refusal (`HTTP/1.1 400 Bad Request`, no body) with a
/// ProblemDetails body instead; `None` for anything else.
pub fn with_problem_body(head: &[u8]) -> Option<Vec<u8>> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != head.len() {
        return None; // more than a bare head: not the parser's canned answer
    }
    let text = std::str::from_utf8(&head[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let code = status_line.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let (_, detail) = PARSER_STATUSES.iter().find(|(c, _)| *c == code)?;
    let headers: Vec<&str> = lines.collect();
    let empty = headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case("content-length: 0"));
    let typed = headers
        .iter()
        .any(|h| h.len() >= 13 && h.as_bytes()[..13].eq_ignore_ascii_case(b"content-type:"));
    if !empty || typed {
        return None;
    }
    let (ty, title) = match code {
        "400" => (
            "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
            "Bad request data",
        ),
        _ => (
            "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest",
            "Invalid request",
        ),
    };
    tracing::info!(status = code, detail, "request refused by the HTTP parser");
    let body = serde_json::json!({
        "type": ty,
        "title": title,
        "status": code.parse::<u16>().unwrap_or(400),
        "detail": detail,
    })
    .to_string();
    let mut out = format!("{status_line}\r\n");
    for h in headers {
        if !h.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    Some(out.into_bytes())
}

impl<S: AsyncWrite + Unpin> Lenient<S> {
    /// Writes what is left of a rewritten answer; `Ready` once none is left.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.answer.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.answer[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.answer.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lenient<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        loop {
            // Bodies go straight to the parser's buffer, without a copy.
            if me.taken >= me.ready.len() && me.framing.line.is_empty() {
                match me.framing.state {
                    State::Passthrough => return Pin::new(&mut me.inner).poll_read(cx, buf),
                    State::Body(n) if n > 0 && buf.remaining() > 0 => {
                        // Capped: the part handed over is zeroed first.
                        let limit = (n.min(buf.remaining().min(DIRECT_READ) as u64)) as usize;
                        let mut direct = ReadBuf::new(buf.initialize_unfilled_to(limit));
                        let polled = Pin::new(&mut me.inner).poll_read(cx, &mut direct);
                        let got = direct.filled().len();
                        if let Poll::Ready(Ok(())) = polled {
                            buf.advance(got);
                            let left = n - got as u64;
                            me.framing.state = if left == 0 {
                                State::RequestLine
                            } else {
                                State::Body(left)
                            };
                        }
                        return polled;
                    }
                    _ => {}
                }
            }
            if me.taken < me.ready.len() {
                let n = (me.ready.len() - me.taken).min(buf.remaining());
                buf.put_slice(&me.ready[me.taken..me.taken + n]);
                me.taken += n;
                if me.taken == me.ready.len() {
                    me.ready.clear();
                    me.taken = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut raw = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut raw);
            match Pin::new(&mut me.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let got = rb.filled();
                    if got.is_empty() {
                        // End of stream: a line held back goes out as it is.
                        if me.framing.line.is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        me.framing.give_up(&mut me.ready);
                        continue;
                    }
                    me.framing.feed(got, &mut me.ready);
                    // A partial line yields nothing yet: read on.
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Lenient<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.poll_answer(cx)?.is_pending() {
            return Poll::Pending;
        }
        if buf.starts_with(b"HTTP/1.1 ") {
            if let Some(answer) = with_problem_body(buf) {
                me.answer = answer;
                me.written = 0;
                // Taken whole; what is left of the answer goes out with the flush.
                let _ = me.poll_answer(cx)?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut me.inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.poll_answer(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut me.inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.poll_answer(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut me.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `size` bytes.
    fn run(input: &[u8], size: usize) -> Vec<u8> {
        let mut f = Framing::default();
        let mut out = Vec::new();
        for piece in input.chunks(size.max(1)) {
            f.feed(piece, &mut out);
        }
        f.give_up(&mut out);
        out
    }

    #[test]
    fn raw_query_characters_are_percent_encoded_in_the_target_only() {
        let req = b"GET /ngsi-ld/v1/entities?q=speed>5&q2=name==\"a b\"|<x> HTTP/1.1\r\nHost: h\r\nX-Q: a>b\r\n\r\n";
        let want = b"GET /ngsi-ld/v1/entities?q=speed%3E5&q2=name==%22a%20b%22%7C%3Cx%3E HTTP/1.1\r\nHost: h\r\nX-Q: a>b\r\n\r\n";
        for size in [1, 3, 7, 1000] {
            assert_eq!(run(req, size), want.to_vec(), "pieces of {size}");
        }
        // Non-ASCII bytes too (raw UTF-8).
        assert_eq!(
            run("GET /a?n=é HTTP/1.1\r\n\r\n".as_bytes(), 5),
            b"GET /a?n=%C3%A9 HTTP/1.1\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn valid_requests_and_bodies_pass_byte_for_byte() {
        // A body holding what would be fixed in a request line, then a second request.
        let body = b"GET /x?a>b HTTP/1.1\r\n";
        let mut req =
            format!("POST /e HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        req.extend_from_slice(body);
        req.extend_from_slice(b"GET /y?q=a>1 HTTP/1.1\r\n\r\n");
        let mut want = req.clone();
        let n = want.len();
        want.truncate(n - b"GET /y?q=a>1 HTTP/1.1\r\n\r\n".len());
        want.extend_from_slice(b"GET /y?q=a%3E1 HTTP/1.1\r\n\r\n");
        for size in [1, 4, 64] {
            assert_eq!(run(&req, size), want, "pieces of {size}");
        }
        let plain = b"GET /ok?q=a%3E1 HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(run(plain, 2), plain.to_vec());
    }

    #[test]
    fn chunked_bodies_are_followed_to_the_next_request() {
        let req = b"POST /e HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nGET /\r\n3\r\na>b\r\n0\r\nT: 1\r\n\r\nGET /z?a>1 HTTP/1.1\r\n\r\n";
        let mut want = req[..req.len() - b"GET /z?a>1 HTTP/1.1\r\n\r\n".len()].to_vec();
        want.extend_from_slice(b"GET /z?a%3E1 HTTP/1.1\r\n\r\n");
        for size in [1, 2, 9, 500] {
            assert_eq!(run(req, size), want, "pieces of {size}");
        }
    }

    proptest::proptest! {
        /// Any sequence of valid requests (plain, with a length, chunked), cut
        /// anywhere, passes byte for byte; the same with raw `>` in their targets
        /// differs only by those bytes encoded.
        #[test]
        fn valid_traffic_passes_and_raw_targets_are_only_encoded(
            reqs in proptest::collection::vec(
                ("[a-z0-9/?=&%.-]{1,40}", proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0u8..3),
                1..6,
            ),
            cut in 1usize..64,
        ) {
            let mut valid = Vec::new();
            let mut raw = Vec::new();
            for (target, body, kind) in &reqs {
                let head = |t: &str| -> Vec<u8> {
                    match kind {
                        0 => format!("GET /{t} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes(),
                        1 => {
                            let mut v = format!("PUT /{t} HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
                            v.extend_from_slice(body);
                            v
                        }
                        _ => {
                            let mut v = format!("POST /{t} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
                            for c in body.chunks(7) {
                                v.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                                v.extend_from_slice(c);
                                v.extend_from_slice(b"\r\n");
                            }
                            v.extend_from_slice(b"0\r\n\r\n");
                            v
                        }
                    }
                };
                valid.extend(head(target));
                raw.extend(head(&format!("{target}>")));
            }
            proptest::prop_assert_eq!(run(&valid, cut), valid.clone());
            let fixed = run(&raw, cut);
            // Every target's `>` encoded (random bodies practically never hold the
            // ten bytes `> HTTP/1.1`).
            let mut want = Vec::new();
            let mut rest = &raw[..];
            while let Some(i) = rest.windows(10).position(|w| w == b"> HTTP/1.1") {
                want.extend_from_slice(&rest[..i]);
                want.extend_from_slice(b"%3E HTTP/1.1");
                rest = &rest[i + 10..];
            }
            want.extend_from_slice(rest);
            proptest::prop_assert_eq!(fixed, want);
        }
    }

    #[test]
    fn framing_the_parser_reads_differently_is_passed_through() {
        // A trailer or chunk-size line ended by a bare LF: the parser's chunked
        // decoder does not end the line there. Nothing after it is touched.
        for req in [
            &b"POST /e HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\nX / HTTP/1.1\r\nContent-Length: 5\r\n\r\nGET /a?b>c HTTP/1.1\r\n\r\n"[..],
            &b"POST /e HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\n\r\nGET /a?b>c HTTP/1.1\r\n\r\n"[..],
            &b"POST /e HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\nGET /a?b>c HTTP/1.1\r\n\r\n"[..],
        ] {
            assert_eq!(run(req, 5), req.to_vec());
        }
        // After an upgrade request, the bytes are another protocol's.
        let up = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET /a?b>c HTTP/1.1\r\n\r\n";
        assert_eq!(run(up, 4), up.to_vec());
        // Control bytes stay for the parser to refuse; '#' is encoded.
        assert_eq!(
            run(b"GET /a?b\x01c HTTP/1.1\r\n\r\n", 3),
            b"GET /a?b\x01c HTTP/1.1\r\n\r\n".to_vec()
        );
        assert_eq!(
            run(b"GET /a?q=x==\"#1\"&type=B HTTP/1.1\r\n\r\n", 3),
            b"GET /a?q=x==%22%231%22&type=B HTTP/1.1\r\n\r\n".to_vec()
        );
        // A line over the limit is passed through however it arrives.
        let mut long = b"GET /".to_vec();
        long.extend(vec![b'>'; MAX_LINE]);
        long.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(run(&long, 7), long);
        assert_eq!(run(&long, long.len()), long);
    }

    #[test]
    fn the_parsers_own_refusals_get_a_problem_body() {
        let canned = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 09:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(with_problem_body(canned).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("date: Mon, 07 Dec 2026"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], 400);
        assert!(v["type"].as_str().unwrap().ends_with("BadRequestData"));
        let big = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert!(String::from_utf8(with_problem_body(big).unwrap())
            .unwrap()
            .contains("header section"));
        // The application's own answers are left alone.
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            &b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"[..],
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}"[..],
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"[..],
        ] {
            assert_eq!(with_problem_body(other), None);
        }
    }

    #[test]
    fn what_it_does_not_understand_passes_unchanged() {
        // Conflicting lengths: passthrough from there on (the parser refuses it).
        let req = b"POST /e HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcGET /?a>b HTTP/1.1\r\n\r\n";
        assert_eq!(run(req, 3), req.to_vec());
        // Not a request line (no version): unchanged.
        assert_eq!(run(b"GET /a>b\r\n\r\n", 4), b"GET /a>b\r\n\r\n".to_vec());
        // A line without its end at the end of the stream.
        assert_eq!(run(b"GET /a>b HTTP/1.1", 4), b"GET /a>b HTTP/1.1".to_vec());
        // An endless line.
        let long = vec![b'a'; MAX_LINE + 10];
        assert_eq!(run(&long, 1000), long);
    }
}
