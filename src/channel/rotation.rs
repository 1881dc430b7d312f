//! When to rotate the traffic keys of a TLS 1.3 connection.
//!
//! A [`RotationPolicy`] says how much a key may be used (bytes, messages, time) before the
//! channel sends a TLS 1.3 `KeyUpdate` (rustls' `refresh_traffic_keys()`). A `KeyUpdate` that
//! requests an update replaces our sending key at once and makes the peer replace its sending
//! key (our receiving key) in reply, so one rotation renews both directions.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// 64 MiB: the default byte budget of one key.
pub const DEFAULT_ROTATE_BYTES: u64 = 64 * 1024 * 1024;
/// 10 minutes: the default lifetime of one key.
pub const DEFAULT_ROTATE_INTERVAL: Duration = Duration::from_secs(600);
/// At most this many rotations triggered by received data or by the interval are made without
/// application data sent in between; later ones are postponed until this side sends. (Each
/// sends a `KeyUpdate` requesting an update, possibly preceded by rustls' answer to one of the
/// peer's, and rustls, like BoringSSL, closes a connection that receives more than 32
/// `KeyUpdate`s of either kind without application data in between: 8 rotations send at most
/// 16, half the limit.)
pub const MAX_ROTATIONS_WITHOUT_SENDING: u32 = 8;

/// How much traffic one set of keys may protect before it is replaced. Every limit is
/// optional; the first one reached triggers a rotation.
///
/// - `bytes`: application bytes sent, or received, under the current keys (counted per
///   direction). On the sending side the limit is exact: a write that would cross it is cut
///   short, the keys are rotated, and the rest goes under the new keys.
/// - `messages`: messages sent or received (frames of the message API, or what the
///   application marks with [`super::ChannelStream::mark_message_sent`]).
/// - `interval`: the age of the keys, counted only when traffic has used them (an idle
///   connection is rotated once after its last traffic, then left alone: a key that protects
///   nothing needs no renewal, and peers limit `KeyUpdate`s without data in between).
/// - `min_interval`: never rotate more often than this (off by default), for peers that
///   rate-limit `KeyUpdate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RotationPolicy {
    /// Rotate after this many application bytes in one direction.
    pub bytes: Option<u64>,
    /// Rotate after this many messages in one direction.
    pub messages: Option<u64>,
    /// Rotate keys that have protected traffic and are this old. (JSON: seconds, a number.)
    #[serde(serialize_with = "seconds")]
    pub interval: Option<Duration>,
    /// Leave at least this long between two rotations. (JSON: seconds, a number.)
    #[serde(serialize_with = "seconds")]
    pub min_interval: Option<Duration>,
}

/// A duration as a JSON number of seconds (an integer when whole), `null` when absent.
fn seconds<S: serde::Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match duration {
        None => serializer.serialize_none(),
        Some(d) if d.subsec_nanos() == 0 => serializer.serialize_u64(d.as_secs()),
        Some(d) => serializer.serialize_f64(d.as_secs_f64()),
    }
}

/// A duration for people: `600 s`, `0.25 s`.
fn human_seconds(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} s", duration.as_secs_f64())
    }
}

/// A byte count for people: `64 MiB`, `1000 bytes`.
fn human_bytes(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// `every 64 MiB or 600 s of use, at most every 1 s`; `never`.
impl std::fmt::Display for RotationPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut limits = Vec::new();
        if let Some(bytes) = self.bytes {
            limits.push(human_bytes(bytes));
        }
        if let Some(messages) = self.messages {
            limits.push(format!("{messages} messages"));
        }
        if let Some(interval) = self.interval {
            limits.push(format!("{} of use", human_seconds(interval)));
        }
        if limits.is_empty() {
            return f.write_str("never");
        }
        write!(f, "every {}", limits.join(" or "))?;
        if let Some(min) = self.min_interval {
            write!(f, ", at most once per {}", human_seconds(min))?;
        }
        Ok(())
    }
}

impl Default for RotationPolicy {
    /// Every 64 MiB or 10 minutes, whichever comes first.
    fn default() -> Self {
        Self {
            bytes: Some(DEFAULT_ROTATE_BYTES),
            messages: None,
            interval: Some(DEFAULT_ROTATE_INTERVAL),
            min_interval: None,
        }
    }
}

impl RotationPolicy {
    /// No rotation by policy (rustls still rotates when a cipher's confidentiality limit nears).
    pub fn never() -> Self {
        Self {
            bytes: None,
            messages: None,
            interval: None,
            min_interval: None,
        }
    }

    /// True when no limit is set.
    pub fn is_never(&self) -> bool {
        self.bytes.is_none() && self.messages.is_none() && self.interval.is_none()
    }

    /// Sets the byte limit (`0` is treated as "no limit").
    #[must_use]
    pub fn with_bytes(mut self, bytes: u64) -> Self {
        self.bytes = (bytes > 0).then_some(bytes);
        self
    }

    /// Sets the message limit (`0` is treated as "no limit").
    #[must_use]
    pub fn with_messages(mut self, messages: u64) -> Self {
        self.messages = (messages > 0).then_some(messages);
        self
    }

    /// Sets the interval (zero is treated as "no limit").
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = (!interval.is_zero()).then_some(interval);
        self
    }

    /// Sets the minimum interval between rotations.
    #[must_use]
    pub fn with_min_interval(mut self, min_interval: Duration) -> Self {
        self.min_interval = (!min_interval.is_zero()).then_some(min_interval);
        self
    }
}

/// What made a rotation due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RotationTrigger {
    /// Traffic we sent reached a limit.
    Sent,
    /// Traffic we received reached a limit.
    Received,
    /// The keys reached the interval.
    Interval,
    /// The application asked for a rotation.
    Requested,
}

/// `sent`, `received`, `interval`, `requested`.
impl std::fmt::Display for RotationTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sent => "sent",
            Self::Received => "received",
            Self::Interval => "interval",
            Self::Requested => "requested",
        })
    }
}

/// Rotation counters of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RotationStats {
    /// Rotations triggered by the sending direction (bytes or messages sent).
    pub by_sent: u64,
    /// Rotations triggered by the receiving direction (bytes or messages received).
    pub by_received: u64,
    /// Rotations triggered by the interval.
    pub by_interval: u64,
    /// Rotations the application asked for.
    pub requested: u64,
    /// Rotations that were due but postponed: by `min_interval`, or because this side has sent
    /// no application data since [`MAX_ROTATIONS_WITHOUT_SENDING`] rotations (counted once per
    /// postponement, not per check).
    pub postponed: u64,
}

impl RotationStats {
    /// The number of `KeyUpdate`s this side sent (each renews both directions).
    pub fn total(&self) -> u64 {
        self.by_sent
            .saturating_add(self.by_received)
            .saturating_add(self.by_interval)
            .saturating_add(self.requested)
    }
}

/// Tracks usage of the current keys against a policy.
#[derive(Clone, Debug)]
pub(crate) struct RotationState {
    policy: RotationPolicy,
    bytes_sent: u64,
    bytes_received: u64,
    messages_sent: u64,
    messages_received: u64,
    keys_since: Instant,
    last_rotation: Option<Instant>,
    pub(crate) stats: RotationStats,
    postponed_noted: bool,
    /// Rotations made since application data was last sent.
    rotations_since_sent: u32,
}

impl RotationState {
    pub(crate) fn new(policy: RotationPolicy, now: Instant) -> Self {
        Self {
            policy,
            bytes_sent: 0,
            bytes_received: 0,
            messages_sent: 0,
            messages_received: 0,
            keys_since: now,
            last_rotation: None,
            stats: RotationStats::default(),
            postponed_noted: false,
            rotations_since_sent: 0,
        }
    }

    pub(crate) fn policy(&self) -> &RotationPolicy {
        &self.policy
    }

    /// How many bytes may still be sent under the current keys (`u64::MAX` without a limit).
    pub(crate) fn send_budget(&self) -> u64 {
        self.policy
            .bytes
            .map_or(u64::MAX, |limit| limit.saturating_sub(self.bytes_sent))
    }

    pub(crate) fn record_sent(&mut self, bytes: u64) {
        self.bytes_sent = self.bytes_sent.saturating_add(bytes);
        if bytes > 0 {
            self.rotations_since_sent = 0;
        }
    }

    /// True when rotations not caused by sending must wait until this side sends data.
    fn held_until_sent(&self) -> bool {
        self.rotations_since_sent >= MAX_ROTATIONS_WITHOUT_SENDING
    }

    pub(crate) fn record_received(&mut self, bytes: u64) {
        self.bytes_received = self.bytes_received.saturating_add(bytes);
    }

    pub(crate) fn record_message_sent(&mut self) {
        self.messages_sent = self.messages_sent.saturating_add(1);
    }

    pub(crate) fn record_message_received(&mut self) {
        self.messages_received = self.messages_received.saturating_add(1);
    }

    fn used(&self) -> bool {
        self.bytes_sent > 0 || self.bytes_received > 0 || self.messages_sent > 0 || self.messages_received > 0
    }

    /// Is a rotation due at `now`, and why? Honours `min_interval` (counting a postponement).
    ///
    /// `sending`: application data follows the rotation at once (the write path), so it is
    /// never held for [`MAX_ROTATIONS_WITHOUT_SENDING`].
    pub(crate) fn due(&mut self, now: Instant, sending: bool) -> Option<RotationTrigger> {
        let trigger = self.trigger(now)?;
        if !sending
            && matches!(trigger, RotationTrigger::Received | RotationTrigger::Interval)
            && self.held_until_sent()
        {
            if !self.postponed_noted {
                self.stats.postponed = self.stats.postponed.saturating_add(1);
                self.postponed_noted = true;
            }
            return None;
        }
        if let (Some(min), Some(last)) = (self.policy.min_interval, self.last_rotation)
            && now.saturating_duration_since(last) < min
        {
            if !self.postponed_noted {
                self.stats.postponed = self.stats.postponed.saturating_add(1);
                self.postponed_noted = true;
            }
            return None;
        }
        Some(trigger)
    }

    fn trigger(&self, now: Instant) -> Option<RotationTrigger> {
        let over = |used: u64, limit: Option<u64>| limit.is_some_and(|l| used >= l);
        if over(self.bytes_sent, self.policy.bytes) || over(self.messages_sent, self.policy.messages) {
            return Some(RotationTrigger::Sent);
        }
        if over(self.bytes_received, self.policy.bytes) || over(self.messages_received, self.policy.messages) {
            return Some(RotationTrigger::Received);
        }
        if self.used()
            && self
                .policy
                .interval
                .is_some_and(|i| now.saturating_duration_since(self.keys_since) >= i)
        {
            return Some(RotationTrigger::Interval);
        }
        None
    }

    /// When the next time-based check is worth making (interval expiry or the end of a
    /// `min_interval` postponement), if any.
    ///
    /// A deadline too far away to represent is no deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.held_until_sent() {
            // Only sending can make a rotation possible again; no timer helps.
            return None;
        }
        if self.trigger(self.keys_since).is_some() || self.postponed_noted {
            // Due by volume but postponed: wake up when min_interval has passed.
            let (min, last) = self.policy.min_interval.zip(self.last_rotation)?;
            return last.checked_add(min);
        }
        if !self.used() {
            return None;
        }
        let interval = self.policy.interval?;
        let at = self.keys_since.checked_add(interval)?;
        match (self.policy.min_interval, self.last_rotation) {
            (Some(min), Some(last)) => last.checked_add(min).map(|earliest| at.max(earliest)),
            _ => Some(at),
        }
    }

    /// Records a rotation made at `now`.
    pub(crate) fn rotated(&mut self, trigger: RotationTrigger, now: Instant) {
        match trigger {
            RotationTrigger::Sent => self.stats.by_sent = self.stats.by_sent.saturating_add(1),
            RotationTrigger::Received => self.stats.by_received = self.stats.by_received.saturating_add(1),
            RotationTrigger::Interval => self.stats.by_interval = self.stats.by_interval.saturating_add(1),
            RotationTrigger::Requested => self.stats.requested = self.stats.requested.saturating_add(1),
        }
        self.bytes_sent = 0;
        self.bytes_received = 0;
        self.messages_sent = 0;
        self.messages_received = 0;
        self.keys_since = now;
        self.last_rotation = Some(now);
        self.postponed_noted = false;
        self.rotations_since_sent = self.rotations_since_sent.saturating_add(1);
    }
}

/// Parses a byte count as command lines take it: `65536`, `64K`, `64KiB`, `1M`, `1GiB`
/// (K, M, G, T are powers of 1024).
///
/// # Errors
/// A message saying what form is expected.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let bad = || {
        format!(
            "\"{}\" is not a size like 65536, 64K or 1GiB",
            super::text::escape(text)
        )
    };
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("\"{}\" is more than 2^64 bytes", super::text::escape(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("65536"), Ok(65536));
        assert_eq!(parse_byte_size("64K"), Ok(65536));
        assert_eq!(parse_byte_size("64KiB"), Ok(65536));
        assert_eq!(parse_byte_size("1g"), Ok(1 << 30));
        assert!(parse_byte_size("").is_err());
        assert!(parse_byte_size("1X").is_err());
        assert!(parse_byte_size("-1").is_err());
        assert!(parse_byte_size("99999999999T").is_err());
    }

    #[test]
    fn default_is_64_mib_or_10_minutes() {
        let p = RotationPolicy::default();
        assert_eq!(p.bytes, Some(64 << 20));
        assert_eq!(p.interval, Some(Duration::from_secs(600)));
        assert_eq!(p.min_interval, None);
        assert!(RotationPolicy::never().is_never());
        assert!(RotationPolicy::never().with_bytes(0).is_never());
    }

    #[test]
    fn bytes_limit_is_exact_per_direction() {
        let now = Instant::now();
        let mut s = RotationState::new(RotationPolicy::never().with_bytes(100), now);
        assert_eq!(s.send_budget(), 100);
        s.record_sent(99);
        assert_eq!(s.due(now, false), None);
        assert_eq!(s.send_budget(), 1);
        s.record_sent(1);
        assert_eq!(s.due(now, false), Some(RotationTrigger::Sent));
        s.rotated(RotationTrigger::Sent, now);
        assert_eq!(s.send_budget(), 100);
        assert_eq!(s.due(now, false), None);
        s.record_received(100);
        assert_eq!(s.due(now, false), Some(RotationTrigger::Received));
        s.rotated(RotationTrigger::Received, now);
        assert_eq!(s.stats.total(), 2);
        assert_eq!(s.stats.by_sent, 1);
        assert_eq!(s.stats.by_received, 1);
    }

    #[test]
    fn messages_limit() {
        let now = Instant::now();
        let mut s = RotationState::new(RotationPolicy::never().with_messages(2), now);
        s.record_message_received();
        assert_eq!(s.due(now, false), None);
        s.record_message_received();
        assert_eq!(s.due(now, false), Some(RotationTrigger::Received));
    }

    #[test]
    fn interval_only_counts_used_keys() {
        let start = Instant::now();
        let mut s = RotationState::new(RotationPolicy::never().with_interval(Duration::from_secs(10)), start);
        let later = start + Duration::from_secs(11);
        assert_eq!(s.due(later, false), None, "unused keys are not rotated");
        assert_eq!(s.next_deadline(), None);
        s.record_sent(1);
        assert_eq!(s.next_deadline(), Some(start + Duration::from_secs(10)));
        assert_eq!(s.due(later, false), Some(RotationTrigger::Interval));
        s.rotated(RotationTrigger::Interval, later);
        assert_eq!(
            s.due(later + Duration::from_secs(60), false),
            None,
            "idle after rotation"
        );
    }

    #[test]
    fn min_interval_postpones() {
        let start = Instant::now();
        let policy = RotationPolicy::never()
            .with_bytes(10)
            .with_min_interval(Duration::from_secs(5));
        let mut s = RotationState::new(policy, start);
        s.record_sent(10);
        assert_eq!(
            s.due(start, false),
            Some(RotationTrigger::Sent),
            "first rotation is not limited"
        );
        s.rotated(RotationTrigger::Sent, start);
        s.record_sent(10);
        let soon = start + Duration::from_secs(1);
        assert_eq!(s.due(soon, false), None);
        assert_eq!(s.due(soon, false), None);
        assert_eq!(s.stats.postponed, 1);
        assert_eq!(s.next_deadline(), Some(start + Duration::from_secs(5)));
        assert_eq!(
            s.due(start + Duration::from_secs(5), false),
            Some(RotationTrigger::Sent)
        );
    }

    #[test]
    fn rotations_without_sending_are_limited() {
        let now = Instant::now();
        let mut s = RotationState::new(RotationPolicy::never().with_bytes(10), now);
        for _ in 0..MAX_ROTATIONS_WITHOUT_SENDING {
            s.record_received(10);
            let trigger = s.due(now, false);
            assert_eq!(trigger, Some(RotationTrigger::Received));
            s.rotated(RotationTrigger::Received, now);
        }
        s.record_received(10);
        assert_eq!(s.due(now, false), None, "held until this side sends");
        assert_eq!(s.due(now, false), None);
        assert_eq!(s.stats.postponed, 1);
        assert_eq!(s.next_deadline(), None);
        assert_eq!(
            s.due(now, true),
            Some(RotationTrigger::Received),
            "a rotation that application data follows at once is never held"
        );
        s.record_sent(1);
        assert_eq!(s.due(now, false), Some(RotationTrigger::Received));
    }

    #[test]
    fn huge_durations_mean_no_deadline() {
        let start = Instant::now();
        let mut s = RotationState::new(RotationPolicy::never().with_interval(Duration::MAX), start);
        s.record_sent(1);
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.due(start, false), None);
        let policy = RotationPolicy::never().with_bytes(1).with_min_interval(Duration::MAX);
        let mut s = RotationState::new(policy, start);
        s.record_sent(1);
        s.rotated(RotationTrigger::Sent, start);
        s.record_sent(1);
        assert_eq!(s.due(start, false), None);
        assert_eq!(s.next_deadline(), None);
    }
}
