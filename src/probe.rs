//! The gate's probes: a TCP connect and a minimal HTTP/1.1 GET, always to 127.0.0.1.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Per-attempt limit, so one hung connection cannot eat the whole deadline.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bodies beyond this are cut; the gate only needs small JSON documents.
const MAX_BODY: usize = 1 << 20;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Connect to 127.0.0.1:`port`.
pub fn tcp(port: u16) -> Result<(), String> {
    TcpStream::connect_timeout(&addr(port), ATTEMPT_TIMEOUT)
        .map(|_| ())
        .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))
}

/// A response's status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET path` on 127.0.0.1:`port`.
pub fn http_get(port: u16, path: &str) -> Result<Response, String> {
    let mut stream = TcpStream::connect_timeout(&addr(port), ATTEMPT_TIMEOUT)
        .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
    let _ = stream.set_read_timeout(Some(ATTEMPT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(ATTEMPT_TIMEOUT));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUser-Agent: kinfra\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send to 127.0.0.1:{port}: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_BODY {
                    break;
                }
            }
            Err(e) if raw.is_empty() => return Err(format!("read from 127.0.0.1:{port}: {e}")),
            Err(_) => break,
        }
    }
    parse_response(&raw)
}

/// Parse a raw HTTP/1.x response (content-length, chunked, or read-to-close bodies).
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| "incomplete HTTP response".to_string())?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| format!("not an HTTP response: `{status_line}`"))?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(body)
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body[..len.min(body.len())].to_vec()
    } else {
        body.to_vec()
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    out
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

    #[test]
    fn parses_content_length_and_chunked_bodies() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
        let r = parse_response(
            b"HTTP/1.1 302 Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (302, "abcde"));
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "nope"));
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn counts_lists_and_wrapped_lists() {
        assert_eq!(json_count("[1,2,3]", None), Ok(3));
        assert_eq!(json_count(r#"{"workers":[1,2]}"#, Some("workers")), Ok(2));
        assert!(json_count(r#"{"x":1}"#, Some("workers")).is_err());
        assert!(json_count("nope", None).is_err());
    }

    #[test]
    fn probes_a_real_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
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
}
