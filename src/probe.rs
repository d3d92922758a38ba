//! The gate's probes: a TCP connect and an HTTP/1.1 GET on the loopback interface, each
//! bounded in time and size, the response head parsed by `httparse`.
//!
//! A probe connects to 127.0.0.1, and to `::1` only when 127.0.0.1 refuses: the spec
//! says `localhost`, Docker publishes on both, and the port preflight has checked that
//! nothing else held the port on either address before `up`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Bounds on one probe, so a hung or chatty service cannot eat the gate's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// For the TCP connect (and for sending the request).
    pub connect: Duration,
    /// For the whole response, from the request sent to the last byte needed.
    pub response: Duration,
    /// The largest body accepted; the gate only needs small JSON documents.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect: Duration::from_secs(2),
            response: Duration::from_secs(5),
            max_body: 1 << 20,
        }
    }
}

/// Status line plus headers beyond this is not a health endpoint talking.
const MAX_HEAD: usize = 64 * 1024;
/// More headers than this is refused (httparse needs the slots up front).
const MAX_HEADERS: usize = 64;

fn connect(port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v4, timeout) {
        Ok(stream) => Ok(stream),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            // The IPv4 error is the one reported: it is the address users think of.
            TcpStream::connect_timeout(&v6, timeout)
                .map_err(|_| format!("connect to 127.0.0.1:{port}: {e}"))
        }
        Err(e) => Err(format!("connect to 127.0.0.1:{port}: {e}")),
    }
}

/// Connect to `port` on the loopback interface.
pub fn tcp(port: u16) -> Result<(), String> {
    connect(port, Limits::default().connect).map(|_| ())
}

/// A response's status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET path` on `port` with the default [`Limits`].
pub fn http_get(port: u16, path: &str) -> Result<Response, String> {
    http_get_with(port, path, &Limits::default())
}

/// `GET path` on `port`. Reading stops as soon as the body is complete (by
/// Content-Length or the last chunk), so a server that keeps the connection open does not
/// cost a timeout.
pub fn http_get_with(port: u16, path: &str, limits: &Limits) -> Result<Response, String> {
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_whitespace() || b < 0x20) {
        return Err(format!("`{path}` is not a valid request path"));
    }
    let mut stream = connect(port, limits.connect)?;
    let _ = stream.set_write_timeout(Some(limits.connect));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUser-Agent: kinfra\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send to 127.0.0.1:{port}: {e}"))?;
    let deadline = Instant::now() + limits.response;
    let mut raw = Vec::new();
    let mut head: Option<Head> = None;
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(slow(port, limits.response));
        }
        let _ = stream.set_read_timeout(Some(left));
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(slow(port, limits.response));
            }
            Err(e) if raw.is_empty() => return Err(format!("read from 127.0.0.1:{port}: {e}")),
            // A reset after some data: judge what arrived, as at the end of the stream.
            Err(_) => 0,
        };
        if n == 0 {
            return parse_response(&raw);
        }
        raw.extend_from_slice(&buf[..n]);
        if head.is_none() {
            head = parse_head(&raw)?;
        }
        let Some(h) = &head else { continue };
        let body = &raw[h.len..];
        if body.len() > limits.max_body {
            return Err(format!(
                "response body from 127.0.0.1:{port} is larger than {} bytes",
                limits.max_body
            ));
        }
        if let Some(body) = decode_body(h.framing, body, false)? {
            return Ok(h.response(&body));
        }
    }
}

fn slow(port: u16, limit: Duration) -> String {
    format!(
        "no complete response from 127.0.0.1:{port} within {}",
        crate::process::format_duration(limit)
    )
}

/// How the body's end is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    framing: Framing,
    /// Bytes of the head, the blank line included.
    len: usize,
}

impl Head {
    fn response(&self, body: &[u8]) -> Response {
        Response {
            status: self.status,
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }
}

/// Parse a whole raw HTTP/1.x response as read until the server closed the connection
/// (Content-Length, chunked, or close-delimited bodies). A body cut short is returned as
/// far as it got; the gate's checks judge its content.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head = parse_head(raw)?.ok_or_else(|| "incomplete HTTP response".to_string())?;
    let body = decode_body(head.framing, &raw[head.len..], true)?.unwrap_or_default();
    Ok(head.response(&body))
}

/// The head, or `None` while it is incomplete.
fn parse_head(raw: &[u8]) -> Result<Option<Head>, String> {
    let Some(eol) = raw.iter().position(|&b| b == b'\n') else {
        return if raw.len() > MAX_HEAD {
            Err(head_too_large())
        } else if raw.len() >= 5 && !raw.starts_with(b"HTTP/") {
            // Not worth waiting for more of something that is not HTTP.
            Err(not_http(raw))
        } else {
            Ok(None)
        };
    };
    let line = raw[..eol].strip_suffix(b"\r").unwrap_or(&raw[..eol]);
    let status = parse_status_line(line).ok_or_else(|| not_http(line))?;
    let rest = &raw[eol + 1..];
    // httparse is strict about header values, but a stray control byte in a header the
    // probe does not read must not fail a health check: blank such bytes in a copy
    // (same length, so offsets still hold). Line breaks stay, so no header is made up.
    let window = &rest[..rest.len().min(MAX_HEAD)];
    let clean: Vec<u8> = window
        .iter()
        .map(|&b| match b {
            b'\t' | b'\r' | b'\n' => b,
            0..=0x1f | 0x7f => b' ',
            _ => b,
        })
        .collect();
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(&clean, &mut slots) {
        Ok(httparse::Status::Complete((len, headers))) => Ok(Some(Head {
            status,
            framing: framing(headers)?,
            len: eol + 1 + len,
        })),
        Ok(httparse::Status::Partial) if rest.len() > MAX_HEAD => Err(head_too_large()),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(format!(
            "more than {MAX_HEADERS} headers in the HTTP response"
        )),
        Err(e) => Err(format!("malformed HTTP response head: {e}")),
    }
}

fn head_too_large() -> String {
    format!("HTTP response head is larger than {MAX_HEAD} bytes")
}

fn not_http(start: &[u8]) -> String {
    let shown: String = String::from_utf8_lossy(&start[..start.len().min(40)])
        .chars()
        .flat_map(char::escape_debug)
        .collect();
    format!("not an HTTP response: `{shown}`")
}

/// `HTTP/<version> <status> [reason]` → status. Any version is accepted (a probe only
/// needs the status), and any reason phrase.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let version = &rest[..space];
    if version.is_empty() || !version.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        return None;
    }
    let after = &rest[space + 1..];
    let end = after.iter().position(|&b| b == b' ').unwrap_or(after.len());
    let code = &after[..end];
    if code.is_empty() || code.len() > 5 || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// RFC 9112 §6.3: Transfer-Encoding ending in `chunked` wins, another Transfer-Encoding
/// reads to the close, then Content-Length (all copies must agree), else to the close.
fn framing(headers: &[httparse::Header<'_>]) -> Result<Framing, String> {
    let values = |name: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
            .collect()
    };
    let codings: Vec<String> = values("transfer-encoding")
        .into_iter()
        .flat_map(|v| {
            v.split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|c| !c.is_empty())
        .collect();
    if let Some(last) = codings.last() {
        return Ok(if last == "chunked" {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    let mut length = None;
    for v in values("content-length") {
        let n = (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<usize>().ok())
            .flatten()
            .ok_or_else(|| format!("invalid Content-Length `{v}` in the HTTP response"))?;
        if length.is_some_and(|l| l != n) {
            return Err("conflicting Content-Length headers in the HTTP response".into());
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

/// The body when complete, `None` while more is needed. At the end of the stream
/// (`at_eof`) whatever arrived is the body.
fn decode_body(framing: Framing, data: &[u8], at_eof: bool) -> Result<Option<Vec<u8>>, String> {
    match framing {
        Framing::Length(n) if data.len() >= n => Ok(Some(data[..n].to_vec())),
        Framing::Length(_) | Framing::Close if at_eof => Ok(Some(data.to_vec())),
        Framing::Length(_) | Framing::Close => Ok(None),
        Framing::Chunked => dechunk(data, at_eof),
    }
}

fn dechunk(mut data: &[u8], at_eof: bool) -> Result<Option<Vec<u8>>, String> {
    let malformed = || "malformed chunked body in the HTTP response".to_string();
    let mut out = Vec::new();
    loop {
        let (used, size) = match httparse::parse_chunk_size(data) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Ok(at_eof.then_some(out)),
            Err(_) => return Err(malformed()),
        };
        data = &data[used..];
        if size == 0 {
            // Trailers, if any, are not needed.
            return Ok(Some(out));
        }
        let size = usize::try_from(size).map_err(|_| malformed())?;
        if data.len() < size {
            out.extend_from_slice(data);
            return Ok(at_eof.then_some(out));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size..];
        match data {
            [b'\r', b'\n', tail @ ..] => data = tail,
            [] | [b'\r'] => return Ok(at_eof.then_some(out)),
            _ => return Err(malformed()),
        }
    }
}

/// How many items a JSON body holds: a list, or an object whose `field` is a list.
pub fn json_count(body: &str, field: Option<&str>) -> Result<usize, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
    match (&value, field) {
        (serde_json::Value::Array(items), _) => Ok(items.len()),
        (serde_json::Value::Object(map), Some(f)) => map
            .get(f)
            .and_then(|v| v.as_array())
            .map(Vec::len)
            .ok_or_else(|| format!("body has no `{f}` list")),
        _ => Err("body is not a JSON list".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    #[test]
    fn parses_content_length_and_chunked_bodies() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
        let r = parse_response(
            b"HTTP/1.1 302 Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (302, "abcde"));
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "nope"));
        // A Transfer-Encoding other than chunked reads to the close.
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 1\r\n\r\nabc",
        )
        .unwrap();
        assert_eq!(r.body, "abc");
    }

    #[test]
    fn refuses_what_is_not_http() {
        for raw in [
            &b"garbage"[..],
            b"SSH-2.0\r\n\r\n",
            b"HTTP/1.1 OK 200\r\n\r\n",
            b"HTTP/1.1 99999999 x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        ] {
            assert!(
                parse_response(raw).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn tolerates_control_bytes_in_headers_it_does_not_read() {
        let r = parse_response(
            b"HTTP/1.1 200 \x01ok\r\nServer: a\x00b\x7f\r\nContent-Length: 1\r\n\r\nxy",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "x"));
    }

    #[test]
    fn a_head_is_incomplete_until_its_blank_line() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-"), Ok(None));
        assert_eq!(parse_head(b"HTT"), Ok(None));
        assert!(parse_head(b"SSH-2.0-OpenSSH").is_err());
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(3));
        assert_eq!(decode_body(h.framing, b"ab", false), Ok(None));
        assert_eq!(
            decode_body(h.framing, b"abc", false),
            Ok(Some(b"abc".to_vec()))
        );
        assert_eq!(decode_body(Framing::Chunked, b"3\r\nab", false), Ok(None));
        assert_eq!(
            decode_body(Framing::Chunked, b"3\r\nabc\r\n0\r\n", false),
            Ok(Some(b"abc".to_vec()))
        );
    }

    #[test]
    fn counts_lists_and_wrapped_lists() {
        assert_eq!(json_count("[1,2,3]", None), Ok(3));
        assert_eq!(json_count(r#"{"workers":[1,2]}"#, Some("workers")), Ok(2));
        assert!(json_count(r#"{"x":1}"#, Some("workers")).is_err());
        assert!(json_count("nope", None).is_err());
    }

    /// A one-connection server on 127.0.0.1 that reads the request, then plays `script`.
    fn serve(script: impl FnOnce(&mut TcpStream) + Send + 'static) -> (u16, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            assert!(req.starts_with(b"GET /x HTTP/1.1\r\n"));
            script(&mut s);
        });
        (port, server)
    }

    fn quick() -> Limits {
        Limits {
            connect: Duration::from_millis(500),
            response: Duration::from_millis(500),
            max_body: 64,
        }
    }

    #[test]
    fn probes_a_real_listener() {
        let (port, server) = serve(|s| {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n[1,2]")
                .unwrap();
        });
        let r = http_get(port, "/x").unwrap();
        server.join().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(json_count(&r.body, None), Ok(2));
        // The listener is gone now.
        assert!(tcp(port).is_err());
    }

    #[test]
    fn reads_a_response_split_into_many_writes() {
        let (port, server) = serve(|s| {
            let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n[1,2\r\n2\r\n,3\r\n1\r\n]\r\n0\r\n\r\n";
            for byte in wire {
                // The client may hang up once it has the last chunk's size line.
                if s.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let r = http_get_with(port, "/x", &quick()).unwrap();
        server.join().unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "[1,2,3]"));
    }

    #[test]
    fn stops_reading_once_the_body_is_complete() {
        // The server keeps the connection open (ignoring `Connection: close`).
        let (port, server) = serve(|s| {
            s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            std::thread::sleep(Duration::from_secs(2));
        });
        let started = Instant::now();
        let r = http_get_with(port, "/x", &quick()).unwrap();
        assert_eq!((r.status, r.body.as_str()), (204, ""));
        assert!(started.elapsed() < Duration::from_millis(400));
        server.join().unwrap();
    }

    #[test]
    fn a_silent_server_times_out() {
        let (port, server) = serve(|_| std::thread::sleep(Duration::from_millis(1500)));
        let started = Instant::now();
        let err = http_get_with(port, "/x", &quick()).unwrap_err();
        let took = started.elapsed();
        assert!(err.contains("no complete response"), "{err}");
        assert!(err.contains("within 0.5s"), "{err}");
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(1),
            "{took:?}"
        );
        server.join().unwrap();
    }

    #[test]
    fn a_trickling_server_times_out_as_a_whole() {
        // Each byte arrives well within a per-read timeout, the whole never does.
        let (port, server) = serve(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
            for _ in 0..30 {
                if s.write_all(b"X: y\r\n").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = Instant::now();
        let err = http_get_with(port, "/x", &quick()).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(err.contains("no complete response"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn garbage_and_oversized_bodies_are_errors() {
        let (port, server) = serve(|s| {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
            std::thread::sleep(Duration::from_millis(300));
        });
        let err = http_get_with(port, "/x", &quick()).unwrap_err();
        assert!(err.starts_with("not an HTTP response: `SSH-2.0"), "{err}");
        server.join().unwrap();

        let (port, server) = serve(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
            let _ = s.write_all(&[b'x'; 100]);
        });
        let err = http_get_with(port, "/x", &quick()).unwrap_err();
        assert!(err.contains("larger than 64 bytes"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn a_bad_path_is_refused_before_connecting() {
        let err = http_get(1, "/x HTTP/1.1\r\nHost: evil").unwrap_err();
        assert!(err.contains("not a valid request path"), "{err}");
        assert!(http_get(1, "x").is_err());
    }

    #[test]
    fn a_refused_port_names_the_ipv4_address() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = tcp(port).unwrap_err();
        assert!(
            err.starts_with(&format!("connect to 127.0.0.1:{port}:")),
            "{err}"
        );
    }
}
