//! Data per instance with real containers (the example stack of `stack.rs`, its helpers
//! and slot locks): `--data-from local-prod` copies byte for byte and leaves local-prod
//! unchanged; snapshot and restore round trip; a killed snapshot is never listed and a
//! killed restore is reported; restore refuses a damaged or unfitting snapshot;
//! `local-prod destroy` keeps a snapshot (or the volumes) a new local-prod gets back.

use std::path::{Path, PathBuf};

use crate::common::exit;
use crate::stack::{
    IMAGE, SLOT_PAIR_A, SLOT_PAIR_B, Stack, container_of, docker, docker_ok, running, volumes,
};

/// Data written into `/data` of a running backend: a text file, a file with its own mode
/// and owner, and random bytes in a subdirectory.
const SEED: &str = "echo one > /data/f && mkdir -p /data/d && head -c 300000 /dev/urandom > /data/d/r \
     && echo secret > /data/p && chmod 600 /data/p && chown 123:456 /data/p";

/// What the tests compare: every file kinfra's tests wrote (not the backend's own
/// `boot.log`, which each start appends to), with checksums, modes and owners.
const LISTING: &str = "cd /x && for f in f p d/r g; do \
     if [ -e $f ]; then echo \"$f $(md5sum < $f | cut -c1-32) $(stat -c '%a %u:%g' $f)\"; \
     else echo \"$f missing\"; fi; done";

/// The listing of the volume `volume`, read by a throwaway container of the test image.
fn listing(volume: &str) -> String {
    docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/x"),
        IMAGE,
        "sh",
        "-c",
        LISTING,
    ])
}

fn exec(project: &str, script: &str) {
    let backend = container_of(project, "backend");
    docker_ok(&["exec", &backend.id, "sh", "-c", script]);
}

fn data_volume(project: &str) -> String {
    format!("{project}_data")
}

fn snapshots(st: &Stack) -> serde_json::Value {
    let run = st.kinfra(&st.main, &["snapshot", "list", "--json"]);
    run.assert_code(0);
    crate::schemas::assert_valid("snapshot-list", &run.stdout);
    let list = st.json(&st.main, &["snapshot", "list", "--json"]);
    assert_eq!(list["schema_version"], 1, "{list}");
    list["snapshots"].clone()
}

fn snapshot_dir(st: &Stack, name: &str) -> PathBuf {
    st.env.home.join(".kinfra-hello/snapshots").join(name)
}

/// A sandbox created from the main repository with extra arguments; registered for the
/// cleanup before it runs.
fn create_with(
    st: &mut Stack,
    name: &str,
    slot: Option<u32>,
    extra: &[&str],
) -> (String, crate::common::Run) {
    let name = format!("{}-{name}", st.tag);
    let id = format!("hello--{name}");
    st.sandboxes.push(id.clone());
    let slot = slot.map(|s| s.to_string());
    let mut args = vec!["sandbox", "create", name.as_str()];
    if let Some(slot) = &slot {
        args.extend(["--slot", slot.as_str()]);
    }
    args.extend_from_slice(extra);
    let main = st.main.clone();
    (id, st.kinfra(&main, &args))
}

fn start_local_prod(st: &mut Stack) -> (String, PathBuf) {
    st.claim_local_prod();
    st.kinfra(&st.main, &["local-prod", "create"])
        .assert_code(0);
    let prod = st.env.dev().join("hello-prod");
    st.kinfra(&prod, &["local-prod", "up", "--timeout", "60"])
        .assert_code(0);
    (st.local_prod_id.clone(), prod)
}

/// `sandbox create --data-from local-prod`: the sandbox's volume holds local-prod's
/// files byte for byte (modes and owners too), local-prod's files are unchanged and its
/// backend runs again; a source that is the sandbox itself or unknown changes nothing.
#[test]
fn data_from_local_prod_is_a_byte_for_byte_copy_and_local_prod_is_unchanged() {
    let mut st = Stack::new("dfl", &[0, SLOT_PAIR_A]);
    let (lp, _prod) = start_local_prod(&mut st);
    exec(&lp, SEED);
    let before = listing(&data_volume(&lp));
    assert!(
        before.contains("p ") && before.contains("600 123:456"),
        "{before}"
    );

    // Bad input first: nothing is created.
    let own = format!("{}-copy", st.tag);
    let (id, run) = create_with(&mut st, "copy", Some(SLOT_PAIR_A), &["--data-from", &own]);
    run.assert_code(exit::USAGE)
        .assert_stderr_contains("from itself");
    assert!(
        !st.env.dev().join(&id).exists(),
        "nothing may be created: {run:?}"
    );
    let (_, run) = create_with(
        &mut st,
        "copy",
        Some(SLOT_PAIR_A),
        &["--data-from", "no-such-instance"],
    );
    run.assert_code(exit::NOT_FOUND);
    assert!(!st.env.dev().join(&id).exists());
    let (_, run) = create_with(
        &mut st,
        "copy",
        Some(SLOT_PAIR_A),
        &["--data-from", "snapshot:nope"],
    );
    run.assert_code(exit::NOT_FOUND);

    let (id, run) = create_with(
        &mut st,
        "copy",
        Some(SLOT_PAIR_A),
        &["--data-from", "local-prod"],
    );
    run.assert_code(0);
    assert_eq!(
        listing(&data_volume(&id)),
        before,
        "the copy differs from local-prod"
    );
    // Compose's own labels, so `down -v` and destroy remove it like compose's own.
    let labels = docker_ok(&[
        "volume",
        "inspect",
        "--format",
        "{{json .Labels}}",
        &data_volume(&id),
    ]);
    assert!(
        labels.contains(&format!("\"com.docker.compose.project\":\"{id}\"")),
        "{labels}"
    );
    assert!(
        labels.contains("\"com.docker.compose.volume\":\"data\""),
        "{labels}"
    );

    // local-prod: same files, backend running again.
    assert_eq!(
        listing(&data_volume(&lp)),
        before,
        "local-prod's data changed"
    );
    assert_eq!(container_of(&lp, "backend").state, "running");

    // The sandbox starts on its copy.
    let path = st.env.dev().join(&id);
    st.kinfra(&path, &["sandbox", "up", "--timeout", "60"])
        .assert_code(0);
    let backend = container_of(&id, "backend");
    assert_eq!(
        docker_ok(&["exec", &backend.id, "cat", "/data/f"]).trim(),
        "one"
    );
    // Its destroy removes the volume kinfra made.
    st.kinfra(&path, &["sandbox", "destroy", "--yes"])
        .assert_code(0);
    assert_eq!(volumes(&id), Vec::<String>::new());
}

/// Snapshot, change the data, restore: the data is back exactly (an added file gone, a
/// removed one back), the backend runs again; restore refuses without confirmation, a
/// damaged archive and an unfitting snapshot, changing nothing.
#[test]
fn snapshot_and_restore_round_trip_and_refusals() {
    let mut st = Stack::new("snap", &[SLOT_PAIR_B]);
    let sb = st.create("s", SLOT_PAIR_B);
    st.up(&sb);
    exec(&sb.id, SEED);
    let v1 = listing(&data_volume(&sb.id));

    // Bad names and an instance without volumes are refused.
    st.kinfra(&sb.path, &["snapshot", "create", "--name", "a/b"])
        .assert_code(exit::USAGE);
    st.kinfra(&sb.path, &["snapshot", "create", "--instance", "nope"])
        .assert_code(exit::NOT_FOUND);

    let run = st.kinfra(&sb.path, &["snapshot", "create", "--name", "v1"]);
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), "v1");
    assert_eq!(container_of(&sb.id, "backend").state, "running");
    st.kinfra(&sb.path, &["snapshot", "create", "--name", "v1"])
        .assert_code(exit::CONFLICT);
    let list = snapshots(&st);
    let snap = &list[0];
    assert_eq!(snap["name"], "v1");
    assert_eq!(snap["source_instance"], sb.id.as_str());
    assert_eq!(snap["volumes"][0]["key"], "data");
    assert_eq!(snap["volumes"][0]["sha256"].as_str().unwrap().len(), 64);

    exec(
        &sb.id,
        "echo two > /data/f && rm /data/d/r && echo new > /data/g",
    );
    let v2 = listing(&data_volume(&sb.id));
    assert_ne!(v1, v2);

    // No terminal, no --yes: refused, nothing changed.
    st.kinfra(&sb.path, &["snapshot", "restore", "v1"])
        .assert_code(exit::REFUSED);
    assert_eq!(listing(&data_volume(&sb.id)), v2);
    st.kinfra(&sb.path, &["snapshot", "restore", "nope", "--yes"])
        .assert_code(exit::NOT_FOUND);

    let run = st.kinfra(&sb.path, &["snapshot", "restore", "v1", "--yes"]);
    run.assert_code(0);
    assert_eq!(
        listing(&data_volume(&sb.id)),
        v1,
        "restore did not bring v1 back"
    );
    assert_eq!(container_of(&sb.id, "backend").state, "running");

    // A new sandbox can start from the snapshot.
    let (copy, run) = create_with(&mut st, "fromsnap", None, &["--data-from", "snapshot:v1"]);
    run.assert_code(0);
    assert_eq!(listing(&data_volume(&copy)), v1);

    // A snapshot of other volumes does not fit.
    let dir = snapshot_dir(&st, "v1");
    let other = snapshot_dir(&st, "other");
    copy_dir(&dir, &other);
    let manifest = other.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("\"key\": \"data\"", "\"key\": \"pg\"")
            .replace("\"name\": \"v1\"", "\"name\": \"other\""),
    )
    .unwrap();
    exec(&sb.id, "echo three > /data/f");
    let v3 = listing(&data_volume(&sb.id));
    st.kinfra(&sb.path, &["snapshot", "restore", "other", "--yes"])
        .assert_code(exit::REFUSED)
        .assert_stderr_contains("pg");
    assert_eq!(listing(&data_volume(&sb.id)), v3);

    // A damaged archive fails its checksum before anything is touched.
    let tar = dir.join("data.tar");
    let mut bytes = std::fs::read(&tar).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&tar, bytes).unwrap();
    st.kinfra(&sb.path, &["snapshot", "restore", "v1", "--yes"])
        .assert_code(exit::FAILURE)
        .assert_stderr_contains("checksum");
    assert_eq!(
        listing(&data_volume(&sb.id)),
        v3,
        "a refused restore changed data"
    );
    assert_eq!(container_of(&sb.id, "backend").state, "running");

    st.kinfra(&st.main, &["snapshot", "rm", "other", "--yes"])
        .assert_code(0);
    st.kinfra(&st.main, &["snapshot", "rm", "other", "--yes"])
        .assert_code(exit::NOT_FOUND);

    // `sandbox destroy --snapshot` keeps the data as a snapshot first.
    st.kinfra(
        &st.main,
        &["sandbox", "destroy", &sb.id, "--yes", "--snapshot"],
    )
    .assert_code(0);
    assert_eq!(volumes(&sb.id), Vec::<String>::new());
    let kept: Vec<serde_json::Value> = snapshots(&st)
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["source_instance"] == sb.id.as_str() && s["name"] != "v1")
        .cloned()
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A `snapshot create` killed half-way is never listed (doctor names what it left, and
/// the next create clears it); a killed restore is reported by the next command on the
/// instance and by `doctor` with the command that finishes it, which does.
#[test]
fn killed_snapshot_is_not_listed_and_killed_restore_is_reported() {
    let mut st = Stack::new("kill", &[SLOT_PAIR_B]);
    let sb = st.create("k", SLOT_PAIR_B);
    st.up(&sb);
    exec(&sb.id, SEED);

    let run = st.kinfra_with(
        &sb.path,
        &["snapshot", "create", "--name", "half"],
        &[("KINFRA_TEST_CRASH_AT", "snapshot:after-volume")],
    );
    assert_ne!(run.code, 0, "{run:?}");
    assert_eq!(snapshots(&st), serde_json::json!([]));
    let doctor = st.kinfra(&st.main, &["doctor", "--json"]);
    assert!(doctor.stdout.contains("leftover-snapshot"), "{doctor:?}");
    // The services it stopped are still stopped, and status and doctor say so with the
    // command that starts them.
    let up_again = format!("kinfra sandbox up {}", sb.id);
    st.kinfra(&sb.path, &["sandbox", "status"])
        .assert_stderr_contains("the services it stopped for the copy are stopped")
        .assert_stderr_contains(&up_again);
    assert!(doctor.stdout.contains(&up_again), "{doctor:?}");
    // `up` starts them (and says nothing about it); the next create clears the leftover.
    st.up(&sb);
    let status = st.kinfra(&sb.path, &["sandbox", "status"]);
    assert!(!status.stderr.contains("interrupted"), "{status:?}");
    st.kinfra(&sb.path, &["snapshot", "create", "--name", "whole"])
        .assert_code(0);
    let names: Vec<String> = std::fs::read_dir(st.env.home.join(".kinfra-hello/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["whole"]);
    // The helper container the killed create left is gone too.
    let helpers = docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=kinfra.data-helper={}", sb.id),
    ]);
    assert_eq!(
        helpers.trim(),
        "",
        "a killed create's helper container is left"
    );
    let v1 = listing(&data_volume(&sb.id));

    exec(&sb.id, "echo two > /data/f");
    let run = st.kinfra_with(
        &sb.path,
        &["snapshot", "restore", "whole", "--yes"],
        &[("KINFRA_TEST_CRASH_AT", "restore:after-volume")],
    );
    assert_ne!(run.code, 0, "{run:?}");
    let status = st.kinfra(&sb.path, &["sandbox", "status"]);
    status
        .assert_stderr_contains("interrupted")
        .assert_stderr_contains("kinfra snapshot restore whole");
    let doctor = st.kinfra(&st.main, &["doctor", "--json"]);
    assert!(
        doctor.stdout.contains("interrupted-data-operation")
            && doctor.stdout.contains("kinfra snapshot restore whole"),
        "{doctor:?}"
    );
    st.kinfra(&sb.path, &["snapshot", "restore", "whole", "--yes"])
        .assert_code(0);
    assert_eq!(listing(&data_volume(&sb.id)), v1);
    let doctor = st.kinfra(&st.main, &["doctor", "--json"]);
    assert!(
        !doctor.stdout.contains("interrupted-data-operation"),
        "{doctor:?}"
    );
    let status = st.kinfra(&sb.path, &["sandbox", "status"]);
    assert!(!status.stderr.contains("interrupted"), "{status:?}");

    // A killed `--data-from` copy: the new sandbox's next command and doctor say so.
    // (`--live`: the source is not stopped, so the kill leaves it running.)
    let from = sb.id.clone();
    let (copy, run) = create_with(&mut st, "half", None, &["--data-from", &from, "--live"]);
    run.assert_code(0);
    st.kinfra(&st.main, &["sandbox", "destroy", &copy, "--yes"])
        .assert_code(0);
    let name = format!("{}-half", st.tag);
    let run = st.kinfra_with(
        &st.main,
        &["sandbox", "create", &name, "--data-from", &sb.id, "--live"],
        &[("KINFRA_TEST_CRASH_AT", "copy:after-volume")],
    );
    assert_ne!(run.code, 0, "{run:?}");
    st.kinfra(&st.main, &["sandbox", "status", &copy])
        .assert_stderr_contains("interrupted")
        .assert_stderr_contains(&format!("--data-from {}", sb.id));
    let doctor = st.kinfra(&st.main, &["doctor", "--json"]);
    assert!(
        doctor.stdout.contains("interrupted-data-operation"),
        "{doctor:?}"
    );
}

/// `local-prod destroy` snapshots first (the plan lists the volume with its size); a new
/// local-prod restores that snapshot. `--keep-volumes` leaves the volume, which the next
/// `local-prod create` adopts and `up` runs on.
#[test]
fn local_prod_destroy_keeps_a_snapshot_a_new_local_prod_restores() {
    let mut st = Stack::new("lpd", &[0]);
    let (lp, prod) = start_local_prod(&mut st);
    exec(&lp, SEED);
    let before = listing(&data_volume(&lp));

    let plan = st.kinfra(&st.main, &["local-prod", "destroy", "--dry-run"]);
    plan.assert_code(0);
    assert!(
        plan.stdout.contains(&format!("volume {}_data (", lp))
            && plan.stdout.contains("snapshot the volumes first"),
        "{plan:?}"
    );
    st.kinfra(&st.main, &["local-prod", "destroy", "--yes"])
        .assert_code(0);
    assert_eq!(volumes(&lp), Vec::<String>::new());
    let list = snapshots(&st);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["source_instance"], lp.as_str());
    assert_eq!(list[0]["kind"], "local-prod");
    let name = list[0]["name"].as_str().unwrap().to_string();

    st.kinfra(&st.main, &["local-prod", "create"])
        .assert_code(0);
    st.kinfra(&prod, &["local-prod", "up", "--timeout", "60"])
        .assert_code(0);
    assert_ne!(
        listing(&data_volume(&lp)),
        before,
        "a new local-prod starts empty"
    );
    st.kinfra(
        &st.main,
        &[
            "snapshot",
            "restore",
            &name,
            "--instance",
            "local-prod",
            "--yes",
        ],
    )
    .assert_code(0);
    assert_eq!(listing(&data_volume(&lp)), before);
    assert_eq!(running(&lp).len(), 5, "local-prod runs again");

    // --keep-volumes: the volume stays and is adopted.
    st.kinfra(
        &st.main,
        &[
            "local-prod",
            "destroy",
            "--yes",
            "--no-snapshot",
            "--keep-volumes",
        ],
    )
    .assert_code(0);
    assert_eq!(volumes(&lp), vec![data_volume(&lp)]);
    assert_eq!(
        snapshots(&st).as_array().unwrap().len(),
        1,
        "--no-snapshot took one"
    );
    let run = st.kinfra(&st.main, &["local-prod", "create"]);
    run.assert_code(0).assert_stderr_contains("adopted");
    st.kinfra(&prod, &["local-prod", "up", "--timeout", "60"])
        .assert_code(0);
    assert_eq!(listing(&data_volume(&lp)), before);
    let out = docker(&["volume", "inspect", &data_volume(&lp)]);
    assert!(out.status.success());
}
