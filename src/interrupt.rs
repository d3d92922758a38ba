//! Ctrl-C and SIGTERM as state kinfra polls, instead of a sudden death: the signal
//! handlers (installed by `signal-hook`, whose flag handlers keep `unsafe` out of this
//! crate) only raise a flag; loops call [`check`], and the subprocess runner forwards
//! the signal to its child and returns an error, so lock guards and temp files are
//! cleaned up and the state of things is reported before kinfra exits.
//!
//! Signals are counted in events: a handler raises a flag, and whoever polls first turns
//! a raised flag into one more event. The runner compares counts from before and after
//! a child ran, so a signal reaches the children running when it arrived, a second one
//! during the grace period kills them at once, and cleanup commands started after an
//! interruption was reported still run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// The user (Ctrl-C) or the system (SIGTERM) asked kinfra to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

impl crate::error::Diagnostic for Interrupted {
    fn exit(&self) -> crate::error::Exit {
        crate::error::Exit::Interrupted
    }
}

/// Which signal a simulated interruption stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT, what Ctrl-C sends to the terminal's foreground process group.
    Int,
    /// SIGTERM, sent to kinfra alone (by `kill`, a service manager, a CI runner).
    Term,
}

/// How many signals of each kind have been seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Events {
    pub ints: u64,
    pub terms: u64,
}

impl Events {
    pub fn total(self) -> u64 {
        self.ints + self.terms
    }
}

#[derive(Debug, Default)]
struct State {
    // Raised by the signal handlers; turned into events by `poll`.
    int_raised: Arc<AtomicBool>,
    term_raised: Arc<AtomicBool>,
    ints: AtomicU64,
    terms: AtomicU64,
    // Ctrl-Cs that went to an interactive child, not to kinfra.
    absorbed: AtomicU64,
    // Events somebody has already been told about (an `Interrupted` was returned).
    reported: AtomicU64,
}

/// A source of interruptions: the process-wide one fed by signals ([`Interrupt::global`]),
/// or a detached one that tests trigger with [`Interrupt::simulate`].
#[derive(Debug, Clone)]
pub struct Interrupt(Arc<State>);

impl Interrupt {
    /// The process-wide source, fed by SIGINT and SIGTERM once [`install`] ran.
    pub fn global() -> &'static Interrupt {
        static GLOBAL: OnceLock<Interrupt> = OnceLock::new();
        GLOBAL.get_or_init(Interrupt::detached)
    }

    /// A source no signal reaches; tests raise it with [`Interrupt::simulate`] without
    /// disturbing anything else running in the same process.
    pub fn detached() -> Interrupt {
        Interrupt(Arc::new(State::default()))
    }

    /// Act as if `signal` had just arrived.
    pub fn simulate(&self, signal: Signal) {
        match signal {
            Signal::Int => self.0.int_raised.store(true, Ordering::SeqCst),
            Signal::Term => self.0.term_raised.store(true, Ordering::SeqCst),
        }
    }

    /// The signals seen so far (turning raised flags into events).
    pub fn events(&self) -> Events {
        let s = &self.0;
        if s.int_raised.swap(false, Ordering::SeqCst) {
            s.ints.fetch_add(1, Ordering::SeqCst);
        }
        if s.term_raised.swap(false, Ordering::SeqCst) {
            s.terms.fetch_add(1, Ordering::SeqCst);
        }
        Events {
            ints: s.ints.load(Ordering::SeqCst),
            terms: s.terms.load(Ordering::SeqCst),
        }
    }

    /// Whether kinfra has been asked to stop (Ctrl-Cs meant for an interactive child
    /// do not count). Stays true.
    pub fn requested(&self) -> bool {
        let e = self.events();
        e.terms > 0 || e.ints > self.0.absorbed.load(Ordering::SeqCst)
    }

    /// `Err(Interrupted)` once kinfra has been asked to stop, for loops that wait.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.requested() {
            self.mark_reported(self.events());
            Err(Interrupted)
        } else {
            Ok(())
        }
    }

    /// Whether a request to stop arrived that nobody has acted on yet (no check or
    /// command has returned [`Interrupted`] for it). The runner does not start a new
    /// command then; once reported, cleanup commands may run.
    pub fn unreported(&self) -> bool {
        self.requested() && self.events().total() > self.0.reported.load(Ordering::SeqCst)
    }

    /// Somebody returned [`Interrupted`] for every event up to `events`.
    pub fn mark_reported(&self, events: Events) {
        self.0.reported.fetch_max(events.total(), Ordering::SeqCst);
    }

    /// `n` more Ctrl-Cs reached an interactive child rather than kinfra.
    pub fn absorb(&self, n: u64) {
        self.0.absorbed.fetch_add(n, Ordering::SeqCst);
        // An absorbed Ctrl-C needs no report either.
        self.0.reported.fetch_add(n, Ordering::SeqCst);
    }
}

/// Route SIGINT and SIGTERM into [`Interrupt::global`]; from then on they no longer
/// kill kinfra outright. Safe to call more than once.
pub fn install() -> std::io::Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let state = &Interrupt::global().0;
        signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&state.int_raised))
            .and_then(|_| {
                signal_hook::flag::register(
                    signal_hook::consts::SIGTERM,
                    Arc::clone(&state.term_raised),
                )
            })
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    result.clone().map_err(std::io::Error::other)
}

/// Whether kinfra has been asked to stop (see [`Interrupt::requested`]).
pub fn requested() -> bool {
    Interrupt::global().requested()
}

/// `Err(Interrupted)` once kinfra has been asked to stop; call it in waiting loops.
pub fn check() -> Result<(), Interrupted> {
    Interrupt::global().check()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_requested_until_a_signal() {
        let i = Interrupt::detached();
        assert!(!i.requested());
        assert_eq!(i.check(), Ok(()));
        i.simulate(Signal::Int);
        assert!(i.requested());
        assert_eq!(i.check(), Err(Interrupted));
        // It stays requested.
        assert_eq!(i.check(), Err(Interrupted));
    }

    #[test]
    fn each_signal_is_one_event() {
        let i = Interrupt::detached();
        i.simulate(Signal::Int);
        assert_eq!(i.events(), Events { ints: 1, terms: 0 });
        // Polling again does not count it twice.
        assert_eq!(i.events().total(), 1);
        i.simulate(Signal::Term);
        i.simulate(Signal::Int);
        assert_eq!(i.events(), Events { ints: 2, terms: 1 });
    }

    #[test]
    fn a_reported_interruption_lets_cleanup_run_until_the_next_signal() {
        let i = Interrupt::detached();
        i.simulate(Signal::Term);
        assert!(i.unreported());
        assert!(i.check().is_err());
        assert!(!i.unreported());
        i.simulate(Signal::Int);
        assert!(i.unreported());
    }

    #[test]
    fn ctrl_c_absorbed_by_an_interactive_child_is_not_a_request() {
        let i = Interrupt::detached();
        i.simulate(Signal::Int);
        let n = i.events().ints;
        i.absorb(n);
        assert!(!i.requested());
        assert!(!i.unreported());
        i.simulate(Signal::Term);
        assert!(i.requested());
    }
}
