//! The engine's transport: one HTTP/1.1 exchange per connection over a unix socket or
//! TCP (no TLS). Response heads are parsed by `httparse`; bodies are framed by
//! `Content-Length`, chunked encoding or the end of the connection, and read as streams
//! so a tar archive or the event stream is never held in memory.
//!
//! Errors are `io::Error`s: `InvalidData` for a peer that does not speak HTTP the way
//! it should, `TimedOut`/`WouldBlock` for a read timeout; the engine turns them into
//! its own error.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::Host;

/// A response head larger than this is not a Docker daemon talking.
const MAX_HEAD: usize = 64 * 1024;
/// A chunk-size or trailer line longer than this is garbage.
const MAX_LINE: usize = 4096;
/// Request bodies streamed from a reader go out in chunks of this size.
const UPLOAD_CHUNK: usize = 64 * 1024;

/// A connected socket to the daemon.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    /// Connect to `host`. A unix socket connects at once or fails (no timeout needed);
    /// TCP tries each resolved address within `timeout`.
    pub(crate) fn connect(host: &Host, timeout: Duration) -> io::Result<Stream> {
        match host {
            Host::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
            Host::Tcp(addr) => {
                let mut last = None;
                for a in addr.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&a, timeout) {
                        Ok(s) => {
                            // Requests are small and latency matters more than packing.
                            let _ = s.set_nodelay(true);
                            return Ok(Stream::Tcp(s));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("`{addr}` has no address"))
                }))
            }
        }
    }

    pub(crate) fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        // A zero timeout means "none" to the OS; never ask for that by accident.
        let timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
        match self {
            Stream::Unix(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)
            }
            Stream::Tcp(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)
            }
        }
    }

    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
        }
    }

    /// Wake a reader blocked on this socket (in any thread): its read returns end of
    /// file.
    pub(crate) fn shutdown(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// What a request carries after its head.
pub(crate) enum RequestBody<'a> {
    None,
    /// A JSON document.
    Json(Vec<u8>),
    /// A stream of unknown length, sent chunked, with its content type.
    Stream(&'a mut dyn Read, &'static str),
}

/// Write one request: head, then body. `Connection: close`, so each exchange has its
/// own connection and a body without framing ends with the connection.
pub(crate) fn write_request<W: Write>(
    out: &mut W,
    method: &str,
    target: &str,
    body: RequestBody<'_>,
) -> io::Result<()> {
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: kinfra/{}\r\nConnection: close\r\n",
        env!("CARGO_PKG_VERSION")
    );
    match body {
        RequestBody::None => {
            if method != "GET" && method != "HEAD" {
                head.push_str("Content-Length: 0\r\n");
            }
            head.push_str("\r\n");
            out.write_all(head.as_bytes())?;
        }
        RequestBody::Json(bytes) => {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                bytes.len()
            ));
            // One write: the head and a small body in a single packet.
            let mut all = head.into_bytes();
            all.extend_from_slice(&bytes);
            out.write_all(&all)?;
        }
        RequestBody::Stream(reader, content_type) => {
            head.push_str(&format!(
                "Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
            ));
            out.write_all(head.as_bytes())?;
            write_chunked(out, reader)?;
        }
    }
    out.flush()
}

/// Copy `reader` to `out` in chunked encoding, ending with the last (empty) chunk.
fn write_chunked<W: Write>(out: &mut W, reader: &mut dyn Read) -> io::Result<()> {
    let mut buf = vec![0u8; UPLOAD_CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The caller marks its source's errors to tell them from the socket's.
            Err(e) => return Err(e),
        };
        out.write_all(format!("{n:x}\r\n").as_bytes())?;
        out.write_all(&buf[..n])?;
        out.write_all(b"\r\n")?;
    }
    out.write_all(b"0\r\n\r\n")
}

/// A response's status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header called `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn is_chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("chunked"))
        })
    }
}

fn invalid(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.into())
}

/// Read a response head (through the blank line) and parse it. Bytes after the head
/// stay in `reader` for the body.
pub(crate) fn read_head<R: BufRead>(reader: &mut R) -> io::Result<Head> {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        let n = reader
            .by_ref()
            .take((MAX_HEAD + 1 - raw.len()) as u64)
            .read_until(b'\n', &mut raw)?;
        if n == 0 {
            return Err(if raw.is_empty() {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection closed without a response",
                )
            } else {
                invalid("the connection closed inside the response head")
            });
        }
        if raw.len() > MAX_HEAD {
            return Err(invalid("the response head is too large"));
        }
        let line = &raw[before..];
        if line == b"\r\n" || line == b"\n" {
            let head = parse_head(&raw)?;
            // A 1xx interim response is followed by the real one.
            if (100..200).contains(&head.status) {
                raw.clear();
                continue;
            }
            return Ok(head);
        }
    }
}

/// Parse a complete response head with `httparse`.
pub(crate) fn parse_head(raw: &[u8]) -> io::Result<Head> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(invalid("incomplete response head")),
        Err(e) => {
            let first = String::from_utf8_lossy(raw.split(|b| *b == b'\n').next().unwrap_or(raw));
            return Err(invalid(format!(
                "not an HTTP response ({e}): `{}`",
                first.trim()
            )));
        }
    }
    let status = response
        .code
        .ok_or_else(|| invalid("response without a status"))?;
    let headers = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    Ok(Head { status, headers })
}

/// A response body as a stream, framed the way the head says.
pub(crate) enum Body<R> {
    Empty,
    Length(io::Take<R>),
    Chunked(Chunked<R>),
    /// Neither length nor chunking: the body ends with the connection.
    Close(R),
}

impl<R: BufRead> Body<R> {
    /// The body that follows `head` (for a request made with `method`).
    pub(crate) fn new(head: &Head, method: &str, reader: R) -> io::Result<Body<R>> {
        if method == "HEAD" || head.status == 204 || head.status == 304 {
            return Ok(Body::Empty);
        }
        if head.is_chunked() {
            return Ok(Body::Chunked(Chunked::new(reader)));
        }
        match head.header("content-length") {
            Some(v) => {
                let len: u64 = v
                    .parse()
                    .map_err(|_| invalid(format!("bad Content-Length `{v}`")))?;
                Ok(Body::Length(reader.take(len)))
            }
            None => Ok(Body::Close(reader)),
        }
    }
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Empty => Ok(0),
            Body::Length(r) => {
                let n = r.read(buf)?;
                if n == 0 && !buf.is_empty() && r.limit() > 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection closed before the end of the response",
                    ));
                }
                Ok(n)
            }
            Body::Chunked(r) => r.read(buf),
            Body::Close(r) => r.read(buf),
        }
    }
}

/// Where a chunked decoder stands. Kept between reads so that a read timeout in the
/// middle of a chunk-size line loses nothing (the event stream relies on this).
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line (the bytes so far).
    Size(Vec<u8>),
    /// Inside a chunk, with this many bytes left.
    Data(u64),
    /// After a chunk's data, with this many bytes of its CRLF already read.
    DataEnd(usize),
    /// After the last chunk: trailer lines until an empty one (the bytes so far).
    Trailer(Vec<u8>),
    Done,
}

/// A chunked transfer-encoding decoder over a buffered reader.
pub(crate) struct Chunked<R> {
    inner: R,
    state: ChunkState,
}

impl<R: BufRead> Chunked<R> {
    pub(crate) fn new(inner: R) -> Chunked<R> {
        Chunked {
            inner,
            state: ChunkState::Size(Vec::new()),
        }
    }

    /// Move `line` forward with what the reader has; `Some(line)` once it is complete
    /// (without its line ending).
    fn fill_line(inner: &mut R, line: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
        loop {
            let available = inner.fill_buf()?;
            if available.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection closed inside a chunked body",
                ));
            }
            let (take, done) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            line.extend_from_slice(&available[..take]);
            inner.consume(take);
            if line.len() > MAX_LINE {
                return Err(invalid("a chunk-size line is too long"));
            }
            if done {
                let mut complete = std::mem::take(line);
                complete.pop();
                if complete.last() == Some(&b'\r') {
                    complete.pop();
                }
                return Ok(Some(complete));
            }
        }
    }
}

/// The size a chunk-size line announces (extensions after `;` ignored).
pub(crate) fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = std::str::from_utf8(line).map_err(|_| invalid("a chunk-size line is not text"))?;
    let digits = text.split(';').next().unwrap_or_default().trim();
    if digits.is_empty() || digits.len() > 15 {
        return Err(invalid(format!("bad chunk size `{}`", text.trim())));
    }
    u64::from_str_radix(digits, 16)
        .map_err(|_| invalid(format!("bad chunk size `{}`", text.trim())))
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match &mut self.state {
                ChunkState::Done => return Ok(0),
                ChunkState::Size(line) => {
                    if let Some(line) = Self::fill_line(&mut self.inner, line)? {
                        let size = parse_chunk_size(&line)?;
                        self.state = if size == 0 {
                            ChunkState::Trailer(Vec::new())
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                }
                ChunkState::Data(left) => {
                    let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the connection closed inside a chunk",
                        ));
                    }
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = ChunkState::DataEnd(0);
                    }
                    return Ok(n);
                }
                ChunkState::DataEnd(seen) => {
                    let available = self.inner.fill_buf()?;
                    let Some(&byte) = available.first() else {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the connection closed inside a chunked body",
                        ));
                    };
                    let expected = if *seen == 0 { b'\r' } else { b'\n' };
                    if byte != expected {
                        return Err(invalid("a chunk does not end with CRLF"));
                    }
                    self.inner.consume(1);
                    *seen += 1;
                    if *seen == 2 {
                        self.state = ChunkState::Size(Vec::new());
                    }
                }
                ChunkState::Trailer(line) => {
                    if let Some(line) = Self::fill_line(&mut self.inner, line)?
                        && line.is_empty()
                    {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
    }
}

/// One exchange's reader: the socket behind a buffer.
pub(crate) type Reader = BufReader<Stream>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A reader that hands out at most `step` bytes per read, and a `WouldBlock` error
    /// between reads, like a socket whose read timeout fires between packets.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
        stall: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.stall = !self.stall;
            if self.stall && self.pos < self.data.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.step).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn read_all_retrying(r: &mut impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    const CHUNKED: &[u8] =
        b"5;ext=1\r\nhello\r\n1\r\n \r\n0000000B\r\nworld, wide\r\n0\r\nX-Trailer: yes\r\n\r\nNEXT";

    #[test]
    fn decodes_chunked_bodies_with_extensions_and_trailers() {
        let mut r = Chunked::new(Cursor::new(CHUNKED));
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello world, wide");
        // Nothing after the body is consumed.
        let mut rest = String::new();
        r.inner.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
    }

    #[test]
    fn decodes_chunked_bodies_split_across_reads_and_timeouts() {
        for step in 1..6 {
            let source = Trickle {
                data: CHUNKED.to_vec(),
                pos: 0,
                step,
                stall: false,
            };
            let mut r = Chunked::new(BufReader::with_capacity(3, source));
            assert_eq!(
                read_all_retrying(&mut r).unwrap(),
                b"hello world, wide",
                "step {step}"
            );
        }
    }

    #[test]
    fn rejects_broken_chunked_bodies() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"\r\n",
            b"5\r\nhel",
            b"5\r\nhello\r\n",
        ] {
            let mut r = Chunked::new(Cursor::new(bad));
            let mut out = Vec::new();
            assert!(
                r.read_to_end(&mut out).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse_chunk_size(b"1f").unwrap(), 31);
        assert_eq!(parse_chunk_size(b"A ; name=v").unwrap(), 10);
        assert!(parse_chunk_size(b"").is_err());
        assert!(parse_chunk_size(b"ffffffffffffffffff").is_err());
    }

    #[test]
    fn reads_heads_and_frames_bodies() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\nApi-Version: 1.41\r\n\r\n[1,2]tail";
        let mut r = BufReader::new(Cursor::new(&raw[..]));
        let head = read_head(&mut r).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("api-version"), Some("1.41"));
        assert_eq!(head.header("CONTENT-TYPE"), Some("application/json"));
        let mut body = String::new();
        Body::new(&head, "GET", r)
            .unwrap()
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!(body, "[1,2");

        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        let mut r = BufReader::new(Cursor::new(&raw[..]));
        let head = read_head(&mut r).unwrap();
        let mut body = String::new();
        Body::new(&head, "GET", r)
            .unwrap()
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!(body, "ok");

        let raw = b"HTTP/1.0 200 OK\r\n\r\nto the end";
        let mut r = BufReader::new(Cursor::new(&raw[..]));
        let head = read_head(&mut r).unwrap();
        let mut body = String::new();
        Body::new(&head, "GET", r)
            .unwrap()
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!(body, "to the end");

        let raw = b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n";
        let mut r = BufReader::new(Cursor::new(&raw[..]));
        let head = read_head(&mut r).unwrap();
        let mut body = Vec::new();
        Body::new(&head, "POST", r)
            .unwrap()
            .read_to_end(&mut body)
            .unwrap();
        assert!(body.is_empty());
    }

    #[test]
    fn a_short_body_or_a_broken_head_is_an_error() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
        let mut r = BufReader::new(Cursor::new(&raw[..]));
        let head = read_head(&mut r).unwrap();
        let mut body = Vec::new();
        let e = Body::new(&head, "GET", r)
            .unwrap()
            .read_to_end(&mut body)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);

        let e = read_head(&mut BufReader::new(Cursor::new(
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
        )))
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("SSH-2.0"), "{e}");
        let e = read_head(&mut BufReader::new(Cursor::new(&b""[..]))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = read_head(&mut BufReader::new(Cursor::new(
            &b"HTTP/1.1 200 OK\r\n"[..],
        )))
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let bad_len = b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n";
        let mut r = BufReader::new(Cursor::new(&bad_len[..]));
        let head = read_head(&mut r).unwrap();
        assert!(Body::new(&head, "GET", r).is_err());
        let huge = [
            b"HTTP/1.1 200 OK\r\nX: ".as_slice(),
            &[b'a'; MAX_HEAD],
            b"\r\n\r\n",
        ]
        .concat();
        let e = read_head(&mut BufReader::new(Cursor::new(huge))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn writes_requests_with_json_and_chunked_bodies() {
        let mut out = Vec::new();
        write_request(&mut out, "GET", "/v1.41/containers/json", RequestBody::None).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");

        let mut out = Vec::new();
        write_request(&mut out, "POST", "/x", RequestBody::Json(b"{}".to_vec())).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Length: 2\r\n\r\n{}"), "{text}");

        let mut out = Vec::new();
        let mut source = Cursor::new(vec![b'x'; UPLOAD_CHUNK + 3]);
        write_request(
            &mut out,
            "PUT",
            "/y",
            RequestBody::Stream(&mut source, "application/x-tar"),
        )
        .unwrap();
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&out[..split]);
        assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
        let mut decoded = Vec::new();
        Chunked::new(Cursor::new(&out[split..]))
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded.len(), UPLOAD_CHUNK + 3);
    }
}
