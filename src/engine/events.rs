//! The engine's event stream (`GET /events`): typed events read as they arrive, with a
//! per-call timeout so a caller can watch a deadline or Ctrl-C between events, and a
//! stopper that ends a blocked read from another thread.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::http::{Body, Reader, Stream};
use super::types::{Health, Labels, PROJECT_LABEL, SERVICE_LABEL};
use super::{EngineError, is_timeout};

/// A line longer than this is not an event; the stream is broken.
const MAX_EVENT: usize = 1 << 20;

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    Container,
    Network,
    Volume,
    Image,
    /// Any other kind (`plugin`, `daemon`, …), as the engine names it.
    Other(String),
}

impl EventKind {
    fn parse(text: &str) -> EventKind {
        match text {
            "container" => EventKind::Container,
            "network" => EventKind::Network,
            "volume" => EventKind::Volume,
            "image" => EventKind::Image,
            other => EventKind::Other(other.to_string()),
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// `create`, `start`, `die`, `destroy`, `health_status: healthy`, `exec_start: …`.
    pub action: String,
    /// The container id, or the volume's or network's name or id.
    pub actor_id: String,
    /// Container events carry the container's labels, `name`, `image`, and on `die`
    /// `exitCode`.
    pub attributes: Labels,
    /// Nanoseconds since the Unix epoch.
    pub time_nano: i64,
}

#[derive(Deserialize)]
struct RawActor {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Attributes", default)]
    attributes: Option<Labels>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(rename = "Action", default)]
    action: String,
    #[serde(rename = "Actor", default)]
    actor: Option<RawActor>,
    #[serde(rename = "timeNano", default)]
    time_nano: i64,
}

impl Event {
    /// One event from its JSON.
    pub fn parse(json: &[u8]) -> Result<Event, serde_json::Error> {
        let raw: RawEvent = serde_json::from_slice(json)?;
        let (actor_id, attributes) = raw
            .actor
            .map(|a| (a.id, a.attributes.unwrap_or_default()))
            .unwrap_or_default();
        Ok(Event {
            kind: EventKind::parse(&raw.kind),
            action: raw.action,
            actor_id,
            attributes,
            time_nano: raw.time_nano,
        })
    }

    /// The action without its detail: `health_status: healthy` → `health_status`.
    pub fn verb(&self) -> &str {
        self.action
            .split_once(':')
            .map_or(self.action.as_str(), |(verb, _)| verb)
    }

    /// The new health, on a `health_status` event.
    pub fn health(&self) -> Option<Health> {
        let (verb, detail) = self.action.split_once(':')?;
        (verb == "health_status")
            .then(|| Health::parse(detail))
            .flatten()
    }

    /// The exit code, on a container's `die` event.
    pub fn exit_code(&self) -> Option<i64> {
        self.attributes.get("exitCode")?.parse().ok()
    }

    /// The object's name (containers, volumes and networks carry one).
    pub fn name(&self) -> Option<&str> {
        self.attributes.get("name").map(String::as_str)
    }

    pub fn project(&self) -> Option<&str> {
        self.attributes.get(PROJECT_LABEL).map(String::as_str)
    }

    pub fn service(&self) -> Option<&str> {
        self.attributes.get(SERVICE_LABEL).map(String::as_str)
    }
}

/// Events as they arrive. Each event is one JSON line; a line cut by a timeout is kept
/// and completed by the next read.
pub struct EventStream {
    body: Body<Reader>,
    control: Stream,
    stopped: Arc<AtomicBool>,
    pending: Vec<u8>,
    ended: bool,
    host: String,
}

/// Ends an [`EventStream`] from another thread (a Ctrl-C handler, a deadline watcher).
#[derive(Debug)]
pub struct EventStopper {
    control: Stream,
    stopped: Arc<AtomicBool>,
}

impl EventStopper {
    /// Stop the stream: a blocked read returns at once, and the stream yields nothing
    /// more.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // The socket may be closed already; stopping twice is fine.
        let _ = self.control.shutdown();
    }
}

impl EventStream {
    pub(crate) fn new(body: Body<Reader>, control: Stream, host: String) -> EventStream {
        EventStream {
            body,
            control,
            stopped: Arc::new(AtomicBool::new(false)),
            pending: Vec::new(),
            ended: false,
            host,
        }
    }

    /// A handle that stops this stream from another thread.
    pub fn stopper(&self) -> Result<EventStopper, EngineError> {
        let control = self
            .control
            .try_clone()
            .map_err(|e| EngineError::Unreachable {
                host: self.host.clone(),
                reason: format!("cannot share the event stream's socket: {e}"),
                timed_out: false,
                denied: false,
            })?;
        Ok(EventStopper {
            control,
            stopped: Arc::clone(&self.stopped),
        })
    }

    /// Whether [`EventStopper::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The next event, waiting at most `timeout`: `Ok(None)` when none came in time or
    /// the stream was stopped (check [`EventStream::is_stopped`]), an error when the
    /// daemon closed the stream or broke it.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Event>, EngineError> {
        self.next_until(Some(Instant::now() + timeout))
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Result<Option<Event>, EngineError> {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(event) = self.take_event()? {
                return Ok(Some(event));
            }
            if self.is_stopped() {
                return Ok(None);
            }
            if self.ended {
                return Err(EngineError::EventsEnded {
                    host: self.host.clone(),
                });
            }
            let timeout = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    Some(left)
                }
                None => None,
            };
            // Shares the socket with the body's reader: the timeout applies to it.
            if let Err(e) = self.control.set_timeouts(timeout)
                && !self.is_stopped()
            {
                return Err(self.broken(&e));
            }
            match self.body.read(&mut buf) {
                Ok(0) => self.ended = true,
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    if self.pending.len() > MAX_EVENT && !self.pending.contains(&b'\n') {
                        self.ended = true;
                        return Err(EngineError::Protocol {
                            host: self.host.clone(),
                            request: "GET /events".into(),
                            reason: "an event longer than 1 MiB".into(),
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
                Err(_) if self.is_stopped() => return Ok(None),
                Err(e) => {
                    self.ended = true;
                    return Err(self.broken(&e));
                }
            }
        }
    }

    /// The first complete event line in the buffer, if any (blank lines skipped).
    fn take_event(&mut self) -> Result<Option<Event>, EngineError> {
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            return Event::parse(line)
                .map(Some)
                .map_err(|e| EngineError::Protocol {
                    host: self.host.clone(),
                    request: "GET /events".into(),
                    reason: format!("an event is not the expected JSON: {e}"),
                });
        }
        Ok(None)
    }

    fn broken(&self, e: &io::Error) -> EngineError {
        EngineError::Unreachable {
            host: self.host.clone(),
            reason: format!("the event stream broke: {e}"),
            timed_out: false,
            denied: false,
        }
    }
}

/// Blocking iteration: waits for each event as long as it takes; ends when the stream
/// is stopped, or after yielding the error that ended it.
impl Iterator for EventStream {
    type Item = Result<Event, EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended && self.pending.is_empty() {
            return None;
        }
        match self.next_until(None) {
            Ok(Some(event)) => Some(Ok(event)),
            Ok(None) => None,
            Err(e) => {
                self.ended = true;
                self.pending.clear();
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_with_their_labels_and_details() {
        let json = br#"{"status":"die","id":"abc","from":"busybox","Type":"container","Action":"die",
            "Actor":{"ID":"abc","Attributes":{"com.docker.compose.project":"ktrdr--a",
            "com.docker.compose.service":"db","exitCode":"137","image":"busybox","name":"ktrdr--a-db-1"}},
            "scope":"local","time":1700000000,"timeNano":1700000000123456789}"#;
        let e = Event::parse(json).unwrap();
        assert_eq!(e.kind, EventKind::Container);
        assert_eq!((e.verb(), e.actor_id.as_str()), ("die", "abc"));
        assert_eq!(e.exit_code(), Some(137));
        assert_eq!(e.project(), Some("ktrdr--a"));
        assert_eq!(e.service(), Some("db"));
        assert_eq!(e.name(), Some("ktrdr--a-db-1"));
        assert_eq!(e.time_nano, 1_700_000_000_123_456_789);
        assert_eq!(e.health(), None);

        let e = Event::parse(
            br#"{"Type":"container","Action":"health_status: unhealthy","Actor":{"ID":"x","Attributes":null}}"#,
        )
        .unwrap();
        assert_eq!(e.verb(), "health_status");
        assert_eq!(e.health(), Some(Health::Unhealthy));
        assert!(e.attributes.is_empty());

        let e = Event::parse(br#"{"Type":"plugin","Action":"enable"}"#).unwrap();
        assert_eq!(e.kind, EventKind::Other("plugin".into()));
        assert_eq!(e.actor_id, "");
        assert!(Event::parse(b"not json").is_err());
    }
}
