//! Command-line options shared by the channel tools: the `--rotate-…` policy flags and
//! durations given in seconds.

use std::time::Duration;

use crate::channel::{RotationPolicy, parse_byte_size};

/// The `--rotate-…` options.
#[derive(Debug, clap::Args)]
pub struct RotationArgs {
    /// Rotate the traffic keys after this many bytes in one direction (65536, 64K, 1M; 0: never).
    /// Default 64M.
    #[arg(long, value_name = "N", value_parser = parse_byte_size)]
    pub rotate_bytes: Option<u64>,
    /// Rotate after this many messages in one direction (0: never). Off by default.
    #[arg(long, value_name = "N", value_parser = rotate_messages_value, allow_negative_numbers = true)]
    pub rotate_messages: Option<u64>,
    /// Rotate keys that have carried traffic after this many seconds (0: never). Default 600.
    #[arg(long, value_name = "S", value_parser = rotate_seconds_value, allow_negative_numbers = true)]
    pub rotate_secs: Option<f64>,
    /// Never rotate twice within this many seconds. Off by default.
    #[arg(long, value_name = "S", value_parser = rotate_seconds_value, allow_negative_numbers = true)]
    pub rotate_min_interval: Option<f64>,
    /// No policy rotation at all.
    #[arg(long, conflicts_with_all = ["rotate_bytes", "rotate_messages", "rotate_secs"])]
    pub no_rotate: bool,
}

impl RotationArgs {
    /// The policy: defaults, with each given option replacing its own default.
    pub fn policy(&self) -> Result<RotationPolicy, String> {
        if self.no_rotate {
            return Ok(RotationPolicy::never());
        }
        let mut policy = RotationPolicy::default();
        if let Some(bytes) = self.rotate_bytes {
            policy = policy.with_bytes(bytes);
        }
        if let Some(messages) = self.rotate_messages {
            policy = policy.with_messages(messages);
        }
        if let Some(secs) = self.rotate_secs {
            policy = policy.with_interval(interval_seconds(secs, "--rotate-secs")?);
        }
        if let Some(secs) = self.rotate_min_interval {
            policy = policy.with_min_interval(interval_seconds(secs, "--rotate-min-interval")?);
        }
        Ok(policy)
    }
}

/// A flag's whole-number value from `min` to `max` (both included), for clap's `value_parser`
/// (in place of Rust's "invalid digit found in string"): text that is no whole number, or a
/// number outside the range, is refused saying the range (clap then exits 2).
///
/// # Errors
/// `expected a whole number from MIN to MAX, not "TEXT"` (`MIN or more` when `max` is
/// `u64::MAX`).
pub fn whole_number(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let range = if max == u64::MAX {
        format!("{min} or more")
    } else {
        format!("from {min} to {max}")
    };
    match text.trim().parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(format!(
            "expected a whole number {range}, not \"{}\"",
            super::printable(text)
        )),
    }
}

/// A flag's number of seconds, for clap's `value_parser` (in place of Rust's "invalid float
/// literal"): text that is no number is refused saying the range, `min` to `max` (`0` also when
/// `zero_means_never`). A number out of range is returned as is, for the tool's own check
/// ([`timeout_seconds`], [`seconds`]) to report.
///
/// # Errors
/// `expected a number of seconds from MIN to MAX, not "TEXT"`.
pub fn seconds_value(text: &str, min: f64, max: u64, zero_means_never: bool) -> Result<f64, String> {
    let range = if zero_means_never {
        format!("0 (never) or a number of seconds from {min} to {max}")
    } else {
        format!("a number of seconds from {min} to {max}")
    };
    match text.trim().parse::<f64>() {
        Ok(value) => Ok(value),
        Err(_) => Err(format!("expected {range}, not \"{}\"", super::printable(text))),
    }
}

/// A flag's `HOST:PORT` (`127.0.0.1:4433`, `[::1]:4433`, `localhost:4433`), for clap's
/// `value_parser`: HOST an IP address (IPv6 in brackets) or a DNS name, PORT from `min_port`
/// (0 lets a listener pick one) to 65535. Returned as given, trimmed.
///
/// # Errors
/// What is wrong and the expected form.
pub fn host_port(text: &str, min_port: u16) -> Result<String, String> {
    let trimmed = text.trim();
    let shown = super::printable(text);
    let form = format!(
        "expected HOST:PORT such as 127.0.0.1:4433, [::1]:4433 or localhost:4433, with a port from {min_port} to 65535"
    );
    let Some((host, port)) = trimmed.rsplit_once(':') else {
        return Err(format!("\"{shown}\" has no port: {form}"));
    };
    match port.parse::<u32>() {
        Ok(port) if port >= u32::from(min_port) && port <= 65535 => {}
        Ok(port) => return Err(format!("port {port} in \"{shown}\" is out of range: {form}")),
        Err(_) => return Err(format!("\"{shown}\" does not end in a port number: {form}")),
    }
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        host.parse::<std::net::Ipv4Addr>().is_ok()
            || (!host.contains(':') && rustls_pki_types::DnsName::try_from(host).is_ok())
    };
    if !host_ok {
        return Err(format!(
            "\"{}\" in \"{shown}\" is not an IP address or host name: {form}",
            super::printable(host)
        ));
    }
    Ok(trimmed.to_string())
}

/// `--rotate-messages`: 0 (never) or more.
fn rotate_messages_value(text: &str) -> Result<u64, String> {
    whole_number(text, 0, u64::MAX).map_err(|e| e.replace("0 or more", "0 (never) or more"))
}

/// `--rotate-secs` and `--rotate-min-interval`.
fn rotate_seconds_value(text: &str) -> Result<f64, String> {
    seconds_value(text, MIN_ROTATE_INTERVAL.as_secs_f64(), MAX_SECONDS, true)
}

/// The shortest rotation interval accepted (other than 0, "never"): 1 ms.
pub const MIN_ROTATE_INTERVAL: Duration = Duration::from_millis(1);

/// A rotation interval: 0 (never), or from [`MIN_ROTATE_INTERVAL`] to [`MAX_SECONDS`].
fn interval_seconds(value: f64, flag: &str) -> Result<Duration, String> {
    let duration = seconds(value, flag)?;
    if value != 0.0 && duration < MIN_ROTATE_INTERVAL {
        return Err(format!(
            "{flag} is 0 (never) or at least {} seconds, not {value}",
            MIN_ROTATE_INTERVAL.as_secs_f64()
        ));
    }
    Ok(duration)
}

/// The shortest time limit the channel tools accept: 10 ms (less cannot complete a handshake
/// or an echo even on loopback).
pub const MIN_TIMEOUT: Duration = Duration::from_millis(10);

/// The longest limit for one phase (handshake, connect, shutdown, reload): one hour.
pub const MAX_PHASE_SECONDS: u64 = 3600;

/// A time limit in seconds, from [`MIN_TIMEOUT`] to `max_secs`: zero, a fraction too small to
/// let anything complete, or more than `max_secs` is refused.
///
/// # Errors
/// A message naming `flag`, the range and the value given.
pub fn timeout_seconds(value: f64, flag: &str, max_secs: u64) -> Result<Duration, String> {
    let range = format!(
        "{flag} takes a number of seconds from {} to {max_secs}",
        MIN_TIMEOUT.as_secs_f64()
    );
    let duration = Duration::try_from_secs_f64(value).map_err(|_| format!("{range}, not {value}"))?;
    if duration < MIN_TIMEOUT || duration > Duration::from_secs(max_secs) {
        return Err(format!("{range}, not {value}"));
    }
    Ok(duration)
}

/// A count from 1 to `max`.
///
/// # Errors
/// A message naming `flag`, the range and the value given.
pub fn count(value: u64, flag: &str, max: u64) -> Result<u64, String> {
    if value == 0 || value > max {
        return Err(format!("{flag} takes a number from 1 to {max}, not {value}"));
    }
    Ok(value)
}

/// The largest duration [`seconds`] accepts: ten years (365-day years).
pub const MAX_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// A non-negative, finite number of seconds, at most [`MAX_SECONDS`].
///
/// # Errors
/// A message naming `flag` for a negative, non-finite or too large value.
pub fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    let duration = Duration::try_from_secs_f64(value)
        .map_err(|_| format!("{flag} needs a non-negative number of seconds, not {value}"))?;
    if duration > Duration::from_secs(MAX_SECONDS) {
        return Err(format!(
            "{flag} is at most {MAX_SECONDS} seconds (ten years), not {value}"
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn seconds_never_panic_and_bound_the_value(value in proptest::num::f64::ANY) {
            match seconds(value, "--x") {
                Ok(duration) => {
                    prop_assert!(value >= 0.0 && value <= MAX_SECONDS as f64, "accepted {}", value);
                    prop_assert!(duration <= Duration::from_secs(MAX_SECONDS));
                }
                Err(message) => {
                    prop_assert!(message.starts_with("--x "), "{}", message);
                    prop_assert!(!(value >= 0.0 && value <= MAX_SECONDS as f64), "refused {}", value);
                }
            }
        }

        #[test]
        fn seconds_in_range_are_kept(value in 0.0..=(MAX_SECONDS as f64)) {
            let duration = seconds(value, "--x").map_err(TestCaseError::fail)?;
            prop_assert!((duration.as_secs_f64() - value).abs() < 1e-6);
        }

        #[test]
        fn rotation_options_never_panic(
            secs in proptest::option::of(proptest::num::f64::ANY),
            min in proptest::option::of(proptest::num::f64::ANY),
            bytes in proptest::option::of(any::<u64>()),
            messages in proptest::option::of(any::<u64>()),
        ) {
            let args = RotationArgs {
                rotate_bytes: bytes,
                rotate_messages: messages,
                rotate_secs: secs,
                rotate_min_interval: min,
                no_rotate: false,
            };
            let _ = args.policy();
        }

        #[test]
        fn byte_sizes_never_panic(text in "\\PC*|[0-9]{1,25}[kKmMgGtT]?") {
            let _ = parse_byte_size(&text);
        }
    }

    #[test]
    fn seconds_are_bounded() {
        assert_eq!(seconds(1.5, "--x"), Ok(Duration::from_millis(1500)));
        assert_eq!(seconds(0.0, "--x"), Ok(Duration::ZERO));
        assert!(seconds(MAX_SECONDS as f64, "--x").is_ok());
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e19, MAX_SECONDS as f64 + 1.0] {
            let error = seconds(bad, "--x").expect_err("refused");
            assert!(error.starts_with("--x "), "{error}");
        }
    }

    #[test]
    fn timeouts_are_neither_zero_nor_absurd() {
        assert_eq!(timeout_seconds(10.0, "--t", 3600), Ok(Duration::from_secs(10)));
        assert_eq!(timeout_seconds(0.01, "--t", 3600), Ok(Duration::from_millis(10)));
        for bad in [0.0, -0.0, 0.001, -1.0, 3600.5, 1e19, f64::NAN, f64::INFINITY] {
            let error = timeout_seconds(bad, "--t", 3600).expect_err("refused");
            assert!(
                error.starts_with("--t takes a number of seconds from 0.01 to 3600"),
                "{error}"
            );
        }
        assert_eq!(count(1, "--n", 5), Ok(1));
        assert!(count(0, "--n", 5).is_err());
        assert!(count(6, "--n", 5).is_err());
    }

    #[test]
    fn whole_numbers_keep_to_their_range() {
        assert_eq!(whole_number("1", 1, 604_800), Ok(1));
        assert_eq!(whole_number(" 604800 ", 1, 604_800), Ok(604_800));
        assert_eq!(whole_number("0", 0, u64::MAX), Ok(0));
        for bad in ["0", "604801", "-1", "1.5", "", "18446744073709551616", "7d"] {
            assert_eq!(
                whole_number(bad, 1, 604_800),
                Err(format!("expected a whole number from 1 to 604800, not \"{bad}\"")),
            );
        }
        assert_eq!(
            whole_number("x", 2, u64::MAX),
            Err("expected a whole number 2 or more, not \"x\"".to_string())
        );
        assert!(whole_number("1", 2, u64::MAX).is_err());
    }

    #[test]
    fn rotation_intervals_are_never_or_at_least_a_millisecond() {
        assert_eq!(interval_seconds(0.0, "--r"), Ok(Duration::ZERO));
        assert_eq!(interval_seconds(0.5, "--r"), Ok(Duration::from_millis(500)));
        assert!(interval_seconds(1e-9, "--r").is_err());
        assert!(
            interval_seconds(1e-12, "--r").is_err(),
            "rounds to zero nanoseconds, yet is not 0"
        );
        assert!(interval_seconds(1e19, "--r").is_err());
    }
}
