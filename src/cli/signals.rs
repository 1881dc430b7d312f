//! The one-shot tools' signals: a signal that ends the process first removes the temporary
//! files of the writes under way, then ends it as the signal's default action would.
//!
//! Handled: SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGXFSZ (sent when a write passes the file
//! size limit, `ulimit -f`). A signal the process inherited as ignored stays ignored: `nohup
//! sign …` (SIGHUP) and a shell's `trap '' SIG` mean "do not stop on it", and a handler would
//! undo that. Which ones were ignored is read from `/proc/self/status` (`SigIgn`) before any
//! handler is installed; without a `/proc`, every signal listed is handled.
//!
//! A write that fails because a file grew too large (`EFBIG`: SIGXFSZ ignored, or the file
//! system's own limit) is reported with a hint by [`super::verdict`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGXFSZ};

/// The signals [`remove_temporaries_on_signal`] handles.
const HANDLED: [i32; 5] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGXFSZ];

/// The number of the first handled signal received (0: none yet), set by the signal handler
/// itself, so that a thread that sees the signal's effect (a write failing with `EFBIG` after
/// SIGXFSZ) sees the signal too.
static RECEIVED: OnceLock<std::sync::Arc<AtomicUsize>> = OnceLock::new();

/// Makes SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGXFSZ (those not inherited as ignored) remove
/// the temporary files of the writes under way (`.NAME.tmp-PID-…` beside each output, and the
/// SQLite companions of a backup's) before the process ends as the signal's default action
/// would (exit status 128 + the signal's number, as seen by a shell). For the one-shot tools
/// (`sign`, `verify`, `ca` except `ca serve`, which drains on SIGTERM): an interrupted `sign
/// -o`, `sign --embed`, `verify --extract` or `ca backup` leaves no hidden partial file.
/// A handler that cannot be installed is logged and skipped (the next write of the same file
/// removes what a killed one left).
pub fn remove_temporaries_on_signal() {
    let ignored = ignored_at_start();
    let wanted: Vec<i32> = HANDLED.into_iter().filter(|s| !ignored.contains(s)).collect();
    if !ignored.is_empty() {
        tracing::debug!(?ignored, "signals inherited as ignored stay ignored");
    }
    let received = RECEIVED.get_or_init(|| std::sync::Arc::new(AtomicUsize::new(0)));
    for &signal in &wanted {
        if let Ok(number) = usize::try_from(signal)
            && let Err(error) = signal_hook::flag::register_usize(signal, std::sync::Arc::clone(received), number)
        {
            tracing::debug!(%error, signal, "no signal flag");
        }
    }
    let mut signals = match signal_hook::iterator::Signals::new(&wanted) {
        Ok(signals) => signals,
        Err(error) => {
            tracing::debug!(%error, "no signal handler: temporary files stay until the next write");
            return;
        }
    };
    let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            die_of(signal);
        }
    });
    if let Err(error) = spawned {
        tracing::debug!(%error, "no signal thread: temporary files stay until the next write");
    }
}

/// If a handled signal has arrived, removes the temporary files and ends the process by it now
/// (the signal thread would, a moment later): a tool about to report an error that the signal
/// caused (a write refused with `EFBIG` after SIGXFSZ, a rename of a temporary file the signal
/// thread removed) dies of the signal instead, as it would without a handler.
pub fn die_if_signalled() {
    let received = RECEIVED.get().map_or(0, |flag| flag.load(Ordering::SeqCst));
    if let Ok(signal) = i32::try_from(received)
        && signal != 0
    {
        die_of(signal);
    }
}

fn die_of(signal: i32) -> ! {
    crate::fsutil::remove_temporaries_in_progress();
    let _ = signal_hook::low_level::emulate_default_handler(signal);
    std::process::exit(128 + signal);
}

/// The signals of [`HANDLED`] this process was started with set to be ignored.
fn ignored_at_start() -> Vec<i32> {
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| ignored_mask(&status))
        .unwrap_or(0);
    HANDLED.into_iter().filter(|&signal| is_in(mask, signal)).collect()
}

/// The `SigIgn:` line of a `/proc/PID/status`: a hexadecimal mask, bit N−1 for signal N.
fn ignored_mask(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
}

fn is_in(mask: u64, signal: i32) -> bool {
    u32::try_from(signal)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|bit| 1u64.checked_shl(bit))
        .is_some_and(|bit| mask & bit != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ignored_mask_is_read_from_proc_status() {
        let status = "Name:\tsign\nSigBlk:\t0000000000000000\nSigIgn:\t0000000001001001\nSigCgt:\t0\n";
        let mask = ignored_mask(status).unwrap();
        // SIGHUP (1), SIGPIPE (13), SIGXFSZ (25).
        assert!(is_in(mask, SIGHUP) && is_in(mask, 13) && is_in(mask, SIGXFSZ));
        assert!(!is_in(mask, SIGINT) && !is_in(mask, SIGTERM) && !is_in(mask, SIGQUIT));
        assert!(!is_in(mask, 0) && !is_in(mask, -1) && !is_in(mask, 65));
        assert_eq!(ignored_mask("Name:\tx\n"), None);
        assert_eq!(ignored_mask("SigIgn:\tzz\n"), None);
        // This test process ignores none of them unless it was started so.
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(ignored_mask(&own).is_some(), "{own}");
    }
}
