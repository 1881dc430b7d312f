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
    #[arg(long, value_name = "N")]
    pub rotate_messages: Option<u64>,
    /// Rotate keys that have carried traffic after this many seconds (0: never). Default 600.
    #[arg(long, value_name = "S")]
    pub rotate_secs: Option<f64>,
    /// Never rotate twice within this many seconds. Off by default.
    #[arg(long, value_name = "S")]
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
            policy = policy.with_interval(seconds(secs, "--rotate-secs")?);
        }
        if let Some(secs) = self.rotate_min_interval {
            policy = policy.with_min_interval(seconds(secs, "--rotate-min-interval")?);
        }
        Ok(policy)
    }
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
}
