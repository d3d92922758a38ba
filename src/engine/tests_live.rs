//! The client against the real engine (`DOCKER_HOST`, or `/var/run/docker.sock`). A
//! missing daemon or test image fails these tests; they never skip. Every object they
//! create is named `kinfra-enginetest-<pid>-<what>`, labelled, and removed by a guard
//! even when an assertion fails; they read nothing else but the default `bridge`
//! network.

use std::io::Read;
use std::time::{Duration, Instant, SystemTime};

use super::*;

const IMAGE: &str = "kinfra-test/busybox:latest";
const LABEL: &str = "kinfra.enginetest";

fn engine() -> Engine {
    Engine::connect().unwrap_or_else(|e| {
        panic!("these tests need the Docker daemon (DOCKER_HOST or /var/run/docker.sock): {e}")
    })
}

fn name(what: &str) -> String {
    format!("kinfra-enginetest-{}-{what}", std::process::id())
}

fn labels(name: &str) -> Labels {
    Labels::from([(LABEL.to_string(), name.to_string())])
}

/// Removes what a test created, whatever happens to the test.
struct Cleanup {
    engine: Engine,
    containers: Vec<String>,
    volumes: Vec<String>,
}

impl Cleanup {
    fn new(engine: &Engine) -> Cleanup {
        Cleanup {
            engine: engine.clone(),
            containers: Vec::new(),
            volumes: Vec::new(),
        }
    }

    fn volume(&mut self, name: &str) -> Volume {
        self.volumes.push(name.to_string());
        self.engine.volume_create(name, &labels(name)).unwrap()
    }

    fn container(&mut self, spec: NewContainer) -> String {
        // Registered before creation, so a half-failed create is still cleaned.
        self.containers.push(spec.name.clone());
        match self.engine.container_create(&spec) {
            Ok(id) => id,
            Err(EngineError::ImageMissing(image)) => {
                panic!("image `{image}` is missing: run scripts/build-test-image.sh first")
            }
            Err(e) => panic!("creating `{}`: {e}", spec.name),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.engine.container_remove(c, true);
        }
        for v in &self.volumes {
            let _ = self.engine.volume_remove(v);
        }
    }
}

fn busybox(name: &str) -> NewContainer {
    NewContainer::new(name, IMAGE).label(LABEL, name)
}

/// A tar holding `files` (`name`, content); names ending in `/` are directories.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let dir = name.ends_with('/');
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let mut octal = |at: usize, width: usize, value: u64| {
            let text = format!("{value:0w$o}\0", w = width - 1);
            h[at..at + width].copy_from_slice(text.as_bytes());
        };
        octal(100, 8, if dir { 0o755 } else { 0o644 });
        octal(108, 8, 0);
        octal(116, 8, 0);
        octal(124, 12, data.len() as u64);
        octal(136, 12, 1_700_000_000);
        h[156] = if dir { b'5' } else { b'0' };
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// The regular files of a tar: (`name`, content).
fn files_of(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let field = |h: &[u8]| {
        String::from_utf8_lossy(h.split(|b| *b == 0).next().unwrap_or_default()).into_owned()
    };
    let mut files = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|b| *b != 0) {
        let h = &tar[at..at + 512];
        let size = u64::from_str_radix(field(&h[124..136]).trim(), 8).unwrap() as usize;
        at += 512;
        if matches!(h[156], b'0' | 0) {
            files.push((field(&h[..100]), tar[at..at + size].to_vec()));
        }
        at += size.div_ceil(512) * 512;
    }
    files
}

#[test]
fn live_the_version_is_negotiated_and_the_host_described() {
    let engine = engine();
    let version = engine.version().unwrap();
    let server = ApiVersion::parse(&version.api_version).unwrap();
    assert_eq!(Some(engine.api_version()), negotiate(server));
    assert!(engine.api_version() >= MIN_API && engine.api_version() <= MAX_API);
    engine.ping().unwrap();
    let info = engine.info().unwrap();
    assert!(info.mem_total > 0 && info.ncpu >= 1, "{info:?}");
    assert_eq!(info.server_version, version.version);
    let bridge = engine
        .networks(&Filters::new().name("bridge"))
        .unwrap()
        .into_iter()
        .find(|n| n.name == "bridge")
        .expect("the default bridge network");
    assert!(!bridge.subnets().is_empty(), "{bridge:?}");
}

#[test]
fn live_volumes_are_found_by_label_and_removed() {
    let engine = engine();
    let mut cleanup = Cleanup::new(&engine);
    let vol = name("vol");
    let created = cleanup.volume(&vol);
    assert_eq!(created.name, vol);
    assert!(!created.mountpoint.is_empty());

    let found = engine
        .volumes(&Filters::new().label_value(LABEL, &vol))
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].name, vol);
    assert_eq!(found[0].labels, labels(&vol));
    // Nothing else carries our label with this value; no network does.
    assert!(
        engine
            .networks(&Filters::new().label_value(LABEL, &vol))
            .unwrap()
            .is_empty()
    );

    engine.volume_remove(&vol).unwrap();
    assert!(
        engine
            .volumes(&Filters::new().label_value(LABEL, &vol))
            .unwrap()
            .is_empty()
    );
    let e = engine.volume_remove(&vol).unwrap_err();
    assert!(
        matches!(e, EngineError::NotFound { kind: "volume", .. }),
        "{e}"
    );
}

#[test]
fn live_volume_events_arrive() {
    let engine = engine();
    let mut cleanup = Cleanup::new(&engine);
    let vol = name("events");
    let since = SystemTime::now() - Duration::from_secs(1);
    let mut events = engine
        .events(&Filters::new().of_type("volume").volume(&vol), Some(since))
        .unwrap();
    cleanup.volume(&vol);
    engine.volume_remove(&vol).unwrap();

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(&"destroy".to_string()) && Instant::now() < deadline {
        if let Some(event) = events.next_timeout(Duration::from_millis(500)).unwrap() {
            assert_eq!(event.kind, EventKind::Volume);
            assert_eq!(event.actor_id, vol);
            assert!(event.time_nano > 0);
            seen.push(event.action);
        }
    }
    assert_eq!(seen, vec!["create", "destroy"]);
    // Nothing more comes: the stream stays quiet until the timeout.
    assert_eq!(
        events.next_timeout(Duration::from_millis(200)).unwrap(),
        None
    );
}

#[test]
fn live_an_archive_goes_into_a_volume_through_a_created_container_and_back() {
    let engine = engine();
    let mut cleanup = Cleanup::new(&engine);
    let vol = name("archive-vol");
    cleanup.volume(&vol);
    let writer = name("archive-in");
    let id = cleanup.container(busybox(&writer).cmd(&["true"]).volume(&vol, "/data"));

    let rows = engine
        .containers(&Filters::new().label_value(LABEL, &writer), true)
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].id.as_str(), rows[0].name()),
        (id.as_str(), writer.as_str())
    );
    assert_eq!(rows[0].state, "created");
    // Not running: only listed with `all`.
    assert!(
        engine
            .containers(&Filters::new().label_value(LABEL, &writer), false)
            .unwrap()
            .is_empty()
    );
    let details = engine.container_inspect(&writer).unwrap();
    assert_eq!(details.id, id);
    assert_eq!(details.state.status, "created");
    assert!(!details.state.running);
    assert_eq!(details.config.labels.get(LABEL), Some(&writer));
    assert!(
        details
            .mounts
            .iter()
            .any(|m| m.name.as_deref() == Some(vol.as_str()) && m.destination == "/data"),
        "{:?}",
        details.mounts
    );

    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let tar = tar_of(&[
        ("hello.txt", b"hello from kinfra\n"),
        ("sub/", b""),
        ("sub/big.bin", &big),
    ]);
    engine
        .archive_put(&id, "/data", std::io::Cursor::new(tar))
        .unwrap();
    engine.container_remove(&id, false).unwrap();

    // A second container sees the files: they went into the volume.
    let reader = name("archive-out");
    let id = cleanup.container(busybox(&reader).cmd(&["true"]).volume(&vol, "/data"));
    let mut tar = Vec::new();
    engine
        .archive_get(&id, "/data/hello.txt")
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(
        files_of(&tar),
        vec![("hello.txt".to_string(), b"hello from kinfra\n".to_vec())]
    );
    let mut tar = Vec::new();
    engine
        .archive_get(&id, "/data/sub")
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(files_of(&tar), vec![("sub/big.bin".to_string(), big)]);

    let e = engine.archive_get(&id, "/data/missing").err().unwrap();
    assert!(
        matches!(e, EngineError::NotFound { kind: "path", .. }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!("path `/data/missing` in container `{id}` does not exist")
    );
}

#[test]
fn live_a_container_runs_exits_and_reports_its_code() {
    let engine = engine();
    let mut cleanup = Cleanup::new(&engine);
    let c = name("exit3");
    let since = SystemTime::now() - Duration::from_secs(1);
    let id = cleanup.container(busybox(&c).cmd(&["sh", "-c", "exit 3"]));
    let mut events = engine
        .events(
            &Filters::new().of_type("container").container(&id),
            Some(since),
        )
        .unwrap();
    engine.container_start(&id).unwrap();
    assert_eq!(
        engine.container_wait(&id, Duration::from_secs(30)).unwrap(),
        3
    );

    let details = engine.container_inspect(&id).unwrap();
    assert_eq!((details.state.running, details.state.exit_code), (false, 3));
    assert_eq!(details.state.status, "exited");
    let rows = engine
        .containers(&Filters::new().label_value(LABEL, &c), true)
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].exit_code(), Some(3), "{}", rows[0].status);
    assert_eq!(rows[0].health(), None);

    let mut actions = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !actions.contains(&"die".to_string()) && Instant::now() < deadline {
        if let Some(event) = events.next_timeout(Duration::from_millis(500)).unwrap() {
            assert_eq!(event.actor_id, id);
            assert_eq!(event.attributes.get(LABEL), Some(&c));
            if event.verb() == "die" {
                assert_eq!(event.exit_code(), Some(3));
                assert_eq!(event.name(), Some(c.as_str()));
            }
            actions.push(event.action);
        }
    }
    assert_eq!(actions, vec!["create", "start", "die"]);
}

#[test]
fn live_a_running_container_has_stats_and_stops() {
    let engine = engine();
    let mut cleanup = Cleanup::new(&engine);
    let c = name("stats");
    let id = cleanup.container(busybox(&c).cmd(&["sleep", "60"]));
    engine.container_start(&id).unwrap();
    // Starting twice is fine.
    engine.container_start(&id).unwrap();
    let stats = engine.stats_once(&id).unwrap();
    assert!(stats.memory_limit > 0, "{stats:?}");
    assert!(stats.memory_usage > 0 && stats.memory_usage <= stats.memory_limit);
    assert!(stats.cpu_percent >= 0.0);
    engine.container_stop(&id, Duration::ZERO).unwrap();
    // Stopping twice is fine too.
    engine.container_stop(&id, Duration::ZERO).unwrap();
    assert_eq!(
        engine.container_wait(&id, Duration::from_secs(30)).unwrap(),
        137
    );
    engine.container_remove(&id, false).unwrap();
    let e = engine.container_inspect(&id).unwrap_err();
    assert!(
        matches!(
            e,
            EngineError::NotFound {
                kind: "container",
                ..
            }
        ),
        "{e}"
    );
    let e = engine.container_remove(&id, true).unwrap_err();
    assert!(matches!(e, EngineError::NotFound { .. }), "{e}");
}

#[test]
fn live_a_missing_image_is_never_pulled() {
    let engine = engine();
    let mut cleanup = Cleanup::new(&engine);
    let c = name("noimage");
    cleanup.containers.push(c.clone());
    let image = format!("kinfra-test/never-built-{}:none", std::process::id());
    let e = engine
        .container_create(&NewContainer::new(&c, &image))
        .unwrap_err();
    assert!(
        matches!(e, EngineError::ImageMissing(ref i) if *i == image),
        "{e}"
    );
    assert!(
        engine
            .containers(&Filters::new().name(&c), true)
            .unwrap()
            .is_empty()
    );
}

/// Prints how long a fresh client and one list take, against `docker ps -a`.
/// Run with `cargo test --lib engine::tests_live::measure -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_connect_and_list_against_the_cli() {
    const RUNS: u32 = 20;
    let time = |f: &mut dyn FnMut()| {
        f(); // warm up
        let started = Instant::now();
        for _ in 0..RUNS {
            f();
        }
        started.elapsed() / RUNS
    };
    let connect_and_list = time(&mut || {
        let engine = engine();
        engine.containers(&Filters::new(), true).unwrap();
    });
    let engine = engine();
    let list = time(&mut || {
        engine.containers(&Filters::new(), true).unwrap();
    });
    let version = time(&mut || {
        engine.version().unwrap();
    });
    let ping = time(&mut || {
        engine.ping().unwrap();
    });
    let cli = time(&mut || {
        let out = std::process::Command::new("docker")
            .args(["ps", "-a"])
            .output()
            .unwrap();
        assert!(out.status.success());
    });
    println!(
        "mean of {RUNS}: Engine::connect + containers: {connect_and_list:?}; containers alone: {list:?}; version: {version:?}; ping: {ping:?}; `docker ps -a`: {cli:?}"
    );
}
