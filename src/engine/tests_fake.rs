//! The client against a fake daemon: a thread on a unix socket in a temp dir speaking
//! canned HTTP, for failures a real engine cannot be made to produce (an old API, a
//! response cut into pieces, a daemon that never answers, garbage).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// A fake daemon: answers each connection with `handler(request line, stream)`.
struct FakeDaemon {
    _dir: tempfile::TempDir,
    path: PathBuf,
    requests: mpsc::Receiver<String>,
}

impl FakeDaemon {
    fn start(handler: impl Fn(&str, &mut UnixStream) + Send + Sync + 'static) -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake-docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, requests) = mpsc::channel();
        let handler = std::sync::Arc::new(handler);
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let handler = std::sync::Arc::clone(&handler);
                let tx = tx.clone();
                // One thread per connection, so an event stream does not block others.
                thread::spawn(move || {
                    let line = read_request_head(&mut conn);
                    let _ = tx.send(line.clone());
                    handler(&line, &mut conn);
                });
            }
        });
        FakeDaemon {
            _dir: dir,
            path,
            requests,
        }
    }

    fn options(&self) -> Options {
        Options::new(Host::Unix(self.path.clone()))
    }

    fn connect(&self) -> Result<Engine, EngineError> {
        Engine::connect_with(self.options())
    }

    /// The request lines received so far.
    fn requests(&self) -> Vec<String> {
        self.requests.try_iter().collect()
    }
}

/// The request line; the rest of the head is read and dropped.
fn read_request_head(conn: &mut UnixStream) -> String {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut first = String::new();
    let _ = reader.read_line(&mut first);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    first.trim().to_string()
}

fn json_response(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// `/_ping`'s answer naming the API version, as a daemon sends it.
fn ping(api: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nApi-Version: {api}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK"
    )
}

fn version(api: &str) -> String {
    json_response(
        "200 OK",
        &format!(r#"{{"Version":"20.10.24","ApiVersion":"{api}","MinAPIVersion":"1.12"}}"#),
    )
}

/// Answers `/_ping` with API 1.41, everything else with `rest`.
fn daemon(rest: impl Fn(&str, &mut UnixStream) + Send + Sync + 'static) -> FakeDaemon {
    FakeDaemon::start(move |line, conn| {
        if line.starts_with("GET /_ping ") {
            let _ = conn.write_all(ping("1.41").as_bytes());
        } else {
            rest(line, conn);
        }
    })
}

#[test]
fn a_daemon_older_than_api_1_40_is_refused() {
    let fake = FakeDaemon::start(|_, conn| {
        let _ = conn.write_all(ping("1.39").as_bytes());
    });
    let e = fake.connect().unwrap_err();
    assert!(matches!(e, EngineError::TooOld { .. }), "{e}");
    assert!(e.to_string().contains("speaks Docker API 1.39"), "{e}");
    assert_eq!(e.exit(), Exit::External);
    assert_eq!(fake.requests(), vec!["GET /_ping HTTP/1.1"]);
}

#[test]
fn a_newer_daemon_is_spoken_to_in_our_newest_version_and_version_is_the_fallback() {
    // No `Api-Version` header on `/_ping`: `/version` says it.
    let fake = FakeDaemon::start(|line, conn| {
        let answer = if line.starts_with("GET /version ") {
            version("1.47")
        } else {
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK".to_string()
        };
        let _ = conn.write_all(answer.as_bytes());
    });
    let engine = fake.connect().unwrap();
    assert_eq!(engine.api_version(), MAX_API);
    engine.ping().unwrap();
    assert_eq!(
        fake.requests(),
        vec![
            "GET /_ping HTTP/1.1",
            "GET /version HTTP/1.1",
            "GET /v1.45/_ping HTTP/1.1"
        ]
    );

    let fake = FakeDaemon::start(|_, conn| {
        let _ = conn.write_all(ping("one.two").as_bytes());
    });
    let e = fake.connect().unwrap_err();
    assert!(matches!(e, EngineError::Protocol { .. }), "{e}");
}

#[test]
fn a_chunked_response_split_across_reads_is_put_back_together() {
    let fake = daemon(|_, conn| {
        let body = br#"[{"Id":"abc","Names":["/one"],"Image":"busybox","Labels":{"kinfra.test":"x"},"State":"exited","Status":"Exited (2) 1 second ago","Created":5,"Ports":[]}]"#;
        let (a, b) = body.split_at(40);
        let pieces: Vec<Vec<u8>> = vec![
            b"HTTP/1.1 200 OK\r\nContent-Type: applic".to_vec(),
            b"ation/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            format!("{:x}", a.len()).into_bytes(),
            b"\r\n".to_vec(),
            a[..7].to_vec(),
            [&a[7..], b"\r\n".as_slice()].concat(),
            format!("{:x}\r\n", b.len()).into_bytes(),
            b.to_vec(),
            b"\r".to_vec(),
            b"\n0\r\n".to_vec(),
            b"\r\n".to_vec(),
        ];
        for piece in pieces {
            let _ = conn.write_all(&piece);
            let _ = conn.flush();
            thread::sleep(Duration::from_millis(15));
        }
    });
    let engine = fake.connect().unwrap();
    let rows = engine
        .containers(&Filters::new().label("kinfra.test"), true)
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name(), "one");
    assert_eq!(rows[0].exit_code(), Some(2));
    let requests = fake.requests();
    assert_eq!(
        requests[1],
        "GET /v1.41/containers/json?all=1&filters=%7B%22label%22%3A%5B%22kinfra.test%22%5D%7D HTTP/1.1"
    );
}

#[test]
fn a_daemon_that_never_answers_times_out() {
    let fake = daemon(|_, _conn| thread::sleep(Duration::from_secs(3)));
    let engine = fake
        .connect()
        .unwrap()
        .with_read_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let e = engine.containers(&Filters::new(), false).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(
            e,
            EngineError::Unreachable {
                timed_out: true,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.exit(), Exit::TimedOut);
    assert!(
        e.to_string()
            .ends_with("no answer to `GET /containers/json` within 200ms"),
        "{e}"
    );

    // The same during negotiation.
    let silent = FakeDaemon::start(|_, _conn| thread::sleep(Duration::from_secs(3)));
    let mut options = silent.options();
    options.read_timeout = Duration::from_millis(100);
    let e = Engine::connect_with(options).unwrap_err();
    assert_eq!(e.exit(), Exit::TimedOut, "{e}");
}

#[test]
fn a_refused_or_missing_socket_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.sock");
    // Bound then closed: the file stays, nobody listens.
    drop(UnixListener::bind(&path).unwrap());
    for path in [path, dir.path().join("missing.sock")] {
        let e = Engine::connect_with(Options::new(Host::Unix(path.clone()))).unwrap_err();
        assert!(
            matches!(
                e,
                EngineError::Unreachable {
                    timed_out: false,
                    ..
                }
            ),
            "{e}"
        );
        let message = e.to_string();
        assert!(
            message.starts_with(&format!(
                "the Docker daemon is not reachable at `unix://{}`: ",
                path.display()
            )),
            "{message}"
        );
        assert_eq!(e.exit(), Exit::External);
        assert_eq!(
            e.hint().as_deref(),
            Some("start the Docker daemon (or check DOCKER_HOST), then retry")
        );
    }
}

#[test]
fn a_refused_tcp_port_is_unreachable() {
    // Bind, note the port, close: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = Engine::connect_with(Options::new(Host::Tcp(format!("127.0.0.1:{port}")))).unwrap_err();
    assert!(matches!(e, EngineError::Unreachable { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("at `tcp://127.0.0.1:{port}`")),
        "{e}"
    );
}

#[test]
fn api_errors_carry_the_engines_message() {
    let fake = daemon(|line, conn| {
        let answer = if line.contains("/containers/nope/json") {
            json_response("404 Not Found", r#"{"message":"No such container: nope"}"#)
        } else if line.contains("/volumes/busy") {
            json_response(
                "409 Conflict",
                r#"{"message":"remove busy: volume is in use - [abc]"}"#,
            )
        } else if line.contains("/containers/create") {
            json_response(
                "404 Not Found",
                r#"{"message":"No such image: kinfra-test/none:latest"}"#,
            )
        } else if line.contains("/info") {
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nboom\n".to_string()
        } else {
            json_response("404 Not Found", r#"{"message":"page not found"}"#)
        };
        let _ = conn.write_all(answer.as_bytes());
    });
    let engine = fake.connect().unwrap();
    let e = engine.container_inspect("nope").unwrap_err();
    assert_eq!(e.to_string(), "container `nope` does not exist");
    assert_eq!(e.exit(), Exit::NotFound);
    let e = engine.volume_remove("busy").unwrap_err();
    assert_eq!(
        e.to_string(),
        "`DELETE /volumes/busy` failed (HTTP 409): remove busy: volume is in use - [abc]"
    );
    let e = engine
        .container_create(&NewContainer::new("c", "kinfra-test/none:latest"))
        .unwrap_err();
    assert!(matches!(e, EngineError::ImageMissing(_)), "{e}");
    assert!(e.hint().unwrap().contains("`kinfra-test/none:latest`"));
    let e = engine.info().unwrap_err();
    assert_eq!(e.to_string(), "`GET /info` failed (HTTP 500): boom");
    // An endpoint the daemon does not know is not a missing object.
    let e = engine.container_start("x").unwrap_err();
    assert!(matches!(e, EngineError::Api { status: 404, .. }), "{e}");
}

#[test]
fn garbage_is_a_protocol_error() {
    let fake = daemon(|line, conn| {
        let answer = if line.contains("/info") {
            "SSH-2.0-OpenSSH_9.2\r\n\r\n".to_string()
        } else {
            json_response("200 OK", "{not json")
        };
        let _ = conn.write_all(answer.as_bytes());
    });
    let engine = fake.connect().unwrap();
    let e = engine.info().unwrap_err();
    assert!(matches!(e, EngineError::Protocol { .. }), "{e}");
    assert!(e.to_string().contains("SSH-2.0"), "{e}");
    let e = engine.volumes(&Filters::new()).unwrap_err();
    assert!(e.to_string().contains("not the expected JSON"), "{e}");
}

#[test]
fn a_failing_upload_source_is_not_blamed_on_the_daemon() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let fake = daemon(|_, _conn| thread::sleep(Duration::from_secs(3)));
    let engine = fake.connect().unwrap();
    let started = Instant::now();
    let e = engine.archive_put("c", "/data", Broken).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        e.to_string(),
        "cannot read what `PUT /containers/c/archive` uploads: disk on fire"
    );
    assert_eq!(e.exit(), Exit::Failure);
}

/// An event stream answering with `events`, each `(pause before, bytes)`, then
/// holding the connection open (or closing it when `close`).
fn event_daemon(events: Vec<(u64, Vec<u8>)>, close: bool) -> FakeDaemon {
    let events = std::sync::Mutex::new(Some(events));
    daemon(move |_, conn| {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
        let events = events.lock().unwrap().take().unwrap_or_default();
        for (pause, bytes) in events {
            thread::sleep(Duration::from_millis(pause));
            let chunk = [format!("{:x}\r\n", bytes.len()).as_bytes(), &bytes, b"\r\n"].concat();
            if conn.write_all(&chunk).is_err() {
                return;
            }
        }
        if close {
            let _ = conn.write_all(b"0\r\n\r\n");
        } else {
            thread::sleep(Duration::from_secs(5));
        }
    })
}

const DIE: &str = r#"{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"exitCode":"1","com.docker.compose.project":"p"}},"timeNano":7}"#;

#[test]
fn events_arrive_one_by_one_and_a_timeout_keeps_a_half_read_one() {
    let (a, b) = DIE.split_at(30);
    let fake = event_daemon(
        vec![
            (0, format!("{DIE}\n{a}").into_bytes()),
            (400, format!("{b}\n").into_bytes()),
        ],
        true,
    );
    let engine = fake.connect().unwrap();
    let mut events = engine
        .events(&Filters::new().of_type("container"), None)
        .unwrap();
    let first = events
        .next_timeout(Duration::from_secs(2))
        .unwrap()
        .unwrap();
    assert_eq!((first.verb(), first.exit_code()), ("die", Some(1)));
    // Half an event is there; the rest comes after the timeout.
    assert_eq!(
        events.next_timeout(Duration::from_millis(100)).unwrap(),
        None
    );
    let second = events
        .next_timeout(Duration::from_secs(2))
        .unwrap()
        .unwrap();
    assert_eq!(second, first);
    // The daemon ends the stream: an error, then the iterator is done.
    let e = events.next_timeout(Duration::from_secs(2)).unwrap_err();
    assert!(matches!(e, EngineError::EventsEnded { .. }), "{e}");
    assert!(events.next().is_none());
    assert!(fake.requests()[1].starts_with(
        "GET /v1.41/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D HTTP/1.1"
    ));
}

#[test]
fn an_event_stream_stops_from_another_thread() {
    let fake = event_daemon(vec![], false);
    let engine = fake.connect().unwrap();
    let since = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5);
    let mut events = engine.events(&Filters::new(), Some(since)).unwrap();
    let stopper = events.stopper().unwrap();
    let stopping = thread::spawn(move || {
        thread::sleep(Duration::from_millis(150));
        stopper.stop();
    });
    let started = Instant::now();
    // Blocking iteration ends when stopped.
    assert!(events.next().is_none());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(events.is_stopped());
    assert_eq!(events.next_timeout(Duration::from_secs(5)).unwrap(), None);
    stopping.join().unwrap();
    assert!(fake.requests()[1].starts_with("GET /v1.41/events?since=1700000000.000000005 "));
}
