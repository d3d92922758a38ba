//! Named crash points for the crash-safety tests: when `KINFRA_TEST_CRASH_AT` names a
//! point, the process kills itself there with SIGKILL, exactly as a user's `kill -9`
//! or a power cut would stop it. Unset (always, outside tests), this does nothing.

/// Environment variable the crash tests set; not meant for users.
pub const ENV: &str = "KINFRA_TEST_CRASH_AT";

/// Die here if the tests asked for it.
pub fn hit(point: &str) {
    if std::env::var_os(ENV).is_some_and(|v| v == point) {
        use nix::sys::signal::{Signal, raise};
        let _ = raise(Signal::SIGKILL);
    }
}
