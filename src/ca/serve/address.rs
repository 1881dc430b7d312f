//! Special-purpose IP addresses, and how `ca serve` reads an address's text.
//!
//! One rule decides which addresses the validation authority may dial, which ip identifiers
//! (RFC 8738) newOrder accepts and which `--allow-ip` networks make sense. These are the
//! special-purpose addresses ([`special_purpose`]; RFC 6890's registry, the part that matters
//! to a CA that dials what a client names):
//!
//! | kind | IPv4 | IPv6 |
//! |---|---|---|
//! | unspecified | `0.0.0.0/8` | `::/128` |
//! | loopback | `127.0.0.0/8` | `::1/128` |
//! | link-local | `169.254.0.0/16` | `fe80::/10` |
//! | multicast | `224.0.0.0/4` | `ff00::/8` |
//! | broadcast | `255.255.255.255/32` | |
//! | reserved | `240.0.0.0/4` | |
//!
//! **Embedded IPv4.** An IPv6 address that embeds an IPv4 address — IPv4-mapped
//! (`::ffff:0:0/96`), IPv4-compatible (`::/96`, other than `::` and `::1`) or NAT64
//! (`64:ff9b::/96`, RFC 6052) — reaches that IPv4 address, so it is judged by the IPv4 address
//! it embeds ([`embedded_ipv4`]): `::ffff:169.254.169.254` is link-local, `64:ff9b::7f00:1`
//! loopback. Other embeddings (6to4, Teredo, the local-use NAT64 prefix `64:ff9b:1::/48`) are
//! not read.
//!
//! **Loopback** is the one kind an operator may allow: an ip identifier inside an `--allow-ip`
//! network that names it (`127.0.0.0/8`, `::1`), or an address `--va-resolve` gives. It must
//! be written as loopback ([`Special::is_plain_loopback`]): an embedded loopback address is
//! refused like every other special-purpose address. Every other kind is never dialled, never
//! ordered, and is no `--allow-ip` network ([`allow_ip_network_refusal`]).
//!
//! **Text.** An ip identifier is written canonically (RFC 8738 §3: RFC 1123 §2.1's dotted
//! decimal for IPv4, RFC 5952 §4 for IPv6). Software that reads addresses leniently (C's
//! `inet_aton`, browsers' URL parsers) also takes `127.1`, `0x7f.0.0.1` or `0177.0.0.1` (a
//! leading 0 meaning octal) for addresses; [`read_address`] reads them the same way so that
//! `ca serve` can say what the canonical text is.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::channel::Cidr;

/// A kind of special-purpose address (the module docs' table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpecialPurpose {
    /// `0.0.0.0/8`, `::`: "this host"; dialling it reaches the local machine.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `169.254.0.0/16`, `fe80::/10` (cloud metadata services live here).
    LinkLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `240.0.0.0/4` (other than the broadcast address).
    Reserved,
}

impl SpecialPurpose {
    /// The kind in words: `unspecified`, `loopback`, `link-local`, `multicast`, `broadcast`,
    /// `reserved`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecialPurpose::Unspecified => "unspecified",
            SpecialPurpose::Loopback => "loopback",
            SpecialPurpose::LinkLocal => "link-local",
            SpecialPurpose::Multicast => "multicast",
            SpecialPurpose::Broadcast => "broadcast",
            SpecialPurpose::Reserved => "reserved",
        }
    }
}

impl fmt::Display for SpecialPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an IPv6 address embeds an IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Embedding {
    /// `::ffff:0:0/96` (RFC 4291 §2.5.5.2): the IPv4 address itself, as an IPv6 socket sees it.
    Mapped,
    /// `::/96` other than `::` and `::1` (RFC 4291 §2.5.5.1, deprecated).
    Compatible,
    /// `64:ff9b::/96` (RFC 6052 §2.1): the IPv4 address behind a NAT64 translator.
    Nat64,
}

impl Embedding {
    /// `IPv4-mapped`, `IPv4-compatible` or `NAT64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Embedding::Mapped => "IPv4-mapped",
            Embedding::Compatible => "IPv4-compatible",
            Embedding::Nat64 => "NAT64",
        }
    }
}

/// What makes an address special-purpose: its kind, the special-purpose network it lies in (for
/// an embedding address, the one its IPv4 address lies in), and the embedding, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Special {
    /// The kind.
    pub kind: SpecialPurpose,
    /// The special-purpose network, as CIDR text (`169.254.0.0/16`).
    pub network: &'static str,
    /// For an IPv6 address that embeds an IPv4 address: how, and that IPv4 address.
    pub embeds: Option<(Embedding, Ipv4Addr)>,
}

impl Special {
    /// Loopback written as loopback (`127.0.0.0/8`, `::1`), not embedded in IPv6: the one
    /// special-purpose address an operator may allow (module docs).
    pub fn is_plain_loopback(&self) -> bool {
        self.kind == SpecialPurpose::Loopback && self.embeds.is_none()
    }
}

impl fmt::Display for Special {
    /// `link-local (169.254.0.0/16)`, or for an embedding address `the IPv4-mapped form of
    /// 169.254.169.254, link-local (169.254.0.0/16)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((embedding, ipv4)) = self.embeds {
            write!(f, "the {} form of {ipv4}, ", embedding.as_str())?;
        }
        write!(f, "{} ({})", self.kind, self.network)
    }
}

/// Whether `ip` is a special-purpose address (module docs), and why. An IPv6 address that
/// embeds an IPv4 address is judged by that IPv4 address.
pub fn special_purpose(ip: IpAddr) -> Option<Special> {
    let plain = |(kind, network)| Special {
        kind,
        network,
        embeds: None,
    };
    match ip {
        IpAddr::V4(v4) => special_ipv4(v4).map(plain),
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some((embedding, v4)) => special_ipv4(v4).map(|(kind, network)| Special {
                kind,
                network,
                embeds: Some((embedding, v4)),
            }),
            None => ipv6_network_kind(v6, 128).map(plain),
        },
    }
}

/// The special-purpose IPv4 networks (the module docs' table), the broadcast address before
/// the reserved network that holds it: kind, network address, prefix length, CIDR text.
const SPECIAL_IPV4: [(SpecialPurpose, [u8; 4], u8, &str); 6] = [
    (SpecialPurpose::Unspecified, [0, 0, 0, 0], 8, "0.0.0.0/8"),
    (SpecialPurpose::Loopback, [127, 0, 0, 0], 8, "127.0.0.0/8"),
    (SpecialPurpose::LinkLocal, [169, 254, 0, 0], 16, "169.254.0.0/16"),
    (SpecialPurpose::Multicast, [224, 0, 0, 0], 4, "224.0.0.0/4"),
    (
        SpecialPurpose::Broadcast,
        [255, 255, 255, 255],
        32,
        "255.255.255.255/32",
    ),
    (SpecialPurpose::Reserved, [240, 0, 0, 0], 4, "240.0.0.0/4"),
];

/// The special-purpose IPv6 networks that embed no IPv4 address (the module docs' table):
/// kind, network address, prefix length, CIDR text.
const SPECIAL_IPV6: [(SpecialPurpose, u128, u8, &str); 4] = [
    (SpecialPurpose::Unspecified, 0, 128, "::/128"),
    (SpecialPurpose::Loopback, 1, 128, "::1/128"),
    (SpecialPurpose::LinkLocal, 0xfe80 << 112, 10, "fe80::/10"),
    (SpecialPurpose::Multicast, 0xff00 << 112, 8, "ff00::/8"),
];

/// The special-purpose kind and network of an IPv4 address.
fn special_ipv4(v4: Ipv4Addr) -> Option<(SpecialPurpose, &'static str)> {
    ipv4_network_kind(v4, 32)
}

/// The entry of [`SPECIAL_IPV4`] that holds the whole IPv4 network `v4/prefix` (for a single
/// address, `prefix` 32); `224.0.0.0/3` and its subnets across both ranges count as multicast
/// and reserved together.
fn ipv4_network_kind(v4: Ipv4Addr, prefix: u8) -> Option<(SpecialPurpose, &'static str)> {
    let bits = u32::from(v4);
    let within = |range: [u8; 4], range_prefix: u8| {
        let mask = u32::MAX.checked_shl(32 - u32::from(range_prefix)).unwrap_or(0);
        prefix >= range_prefix && bits & mask == u32::from(Ipv4Addr::from(range)) & mask
    };
    SPECIAL_IPV4
        .iter()
        .find(|(_, range, range_prefix, _)| within(*range, *range_prefix))
        .map(|(kind, _, _, network)| (*kind, *network))
        .or_else(|| {
            within([224, 0, 0, 0], 3).then_some((SpecialPurpose::Multicast, "224.0.0.0/4 and reserved 240.0.0.0/4"))
        })
}

/// The entry of [`SPECIAL_IPV6`] that holds the whole IPv6 network `v6/prefix` (for a single
/// address, `prefix` 128).
fn ipv6_network_kind(v6: Ipv6Addr, prefix: u8) -> Option<(SpecialPurpose, &'static str)> {
    let bits = u128::from(v6);
    SPECIAL_IPV6
        .iter()
        .find(|(_, range, range_prefix, _)| {
            prefix >= *range_prefix && bits & mask128(*range_prefix) == range & mask128(*range_prefix)
        })
        .map(|(kind, _, _, network)| (*kind, *network))
}

/// The IPv4 address an IPv6 address embeds (IPv4-mapped, IPv4-compatible other than `::` and
/// `::1`, NAT64 `64:ff9b::/96`), and how.
pub fn embedded_ipv4(v6: Ipv6Addr) -> Option<(Embedding, Ipv4Addr)> {
    let [_, _, _, _, _, _, _, _, _, _, _, _, a, b, c, d] = v6.octets();
    let v4 = Ipv4Addr::new(a, b, c, d);
    match v6.segments() {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some((Embedding::Mapped, v4)),
        [0, 0, 0, 0, 0, 0, _, _] if !v6.is_unspecified() && !v6.is_loopback() => Some((Embedding::Compatible, v4)),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some((Embedding::Nat64, v4)),
        _ => None,
    }
}

/// Why `network` cannot be an `--allow-ip` network, or `None`:
/// - an IPv4-mapped network (`::ffff:127.0.0.1/128`): ip identifiers and the addresses the
///   validation authority dials are written as IPv4 (RFC 8738 §3), so it would admit nothing;
///   the message names the IPv4 network to give instead;
/// - every address of it is special-purpose and not plain loopback (`169.254.0.0/16`,
///   `224.0.0.0/3`, `fe80::/64`, `64:ff9b::a9fe:0/112`): nothing in it could be validated.
///
/// A network that only contains such addresses among others (`0.0.0.0/0`, `::/0`) is accepted:
/// its special-purpose addresses are refused one by one.
pub fn allow_ip_network_refusal(network: &Cidr) -> Option<String> {
    let prefix = network.prefix();
    match network.address() {
        IpAddr::V4(v4) => ipv4_network_special(v4, prefix, false).map(|special| {
            format!(
                "every address of it is {special}, which the validation authority never dials: give the networks \
                 of the hosts that ask for certificates"
            )
        }),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let within = |range: u128, range_prefix: u8| {
                prefix >= range_prefix && bits & mask128(range_prefix) == range & mask128(range_prefix)
            };
            let embedded = |embedding: Embedding| {
                let v4 = Ipv4Addr::from(u32::try_from(bits & 0xffff_ffff).unwrap_or(0));
                (embedding, v4, prefix.saturating_sub(96))
            };
            if within(0xffff_0000_0000, 96) {
                let (_, v4, v4_prefix) = embedded(Embedding::Mapped);
                return Some(format!(
                    "{network} is an IPv4-mapped IPv6 network, which admits nothing: ip identifiers are written \
                     as IPv4 (RFC 8738 §3): give {v4}/{v4_prefix}"
                ));
            }
            // ::/96 holds :: and ::1 besides the IPv4-compatible addresses.
            let compatible = within(0, 96)
                && !network.contains(IpAddr::V6(Ipv6Addr::LOCALHOST))
                && !(prefix == 128 && v6.is_unspecified());
            let nat64 = within(0x0064_ff9b_u128 << 96, 96);
            if compatible || nat64 {
                let (embedding, v4, v4_prefix) = embedded(if nat64 { Embedding::Nat64 } else { Embedding::Compatible });
                return ipv4_network_special(v4, v4_prefix, true).map(|special| {
                    let give = if special.is_plain_loopback() {
                        format!(": give {v4}/{v4_prefix} to validate on loopback")
                    } else {
                        String::new()
                    };
                    format!(
                        "every address of it is the {} form of {special}, which the validation authority never \
                         dials{give}",
                        embedding.as_str()
                    )
                });
            }
            let refused = ipv6_network_kind(v6, prefix).filter(|(kind, _)| *kind != SpecialPurpose::Loopback);
            refused.map(|(kind, range)| {
                format!(
                    "every address of it is {kind} ({range}), which the validation authority never dials: give the \
                     networks of the hosts that ask for certificates"
                )
            })
        }
    }
}

/// The special-purpose kind every address of the IPv4 network `v4/prefix` has, when they all
/// have one that is refused (loopback only when `loopback_refused`); `224.0.0.0/3` counts as
/// multicast and reserved together.
fn ipv4_network_special(v4: Ipv4Addr, prefix: u8, loopback_refused: bool) -> Option<Special> {
    let found = ipv4_network_kind(v4, prefix).filter(|(kind, _)| loopback_refused || *kind != SpecialPurpose::Loopback);
    found.map(|(kind, network)| Special {
        kind,
        network,
        embeds: None,
    })
}

/// The mask of an IPv6 prefix of `prefix` bits.
fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// The address some software takes a text for ([`read_address`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// One address: the text's canonical form (RFC 8738 §3) is this address's.
    Address(IpAddr),
    /// A dotted IPv4 text with a leading 0 that means octal to `inet_aton` and browsers and is
    /// ignored by others: the two addresses differ (`010.0.0.1`: 8.0.0.1 or 10.0.0.1).
    Ambiguous {
        /// The address a leading 0 read as octal gives.
        octal: Ipv4Addr,
        /// The address a leading 0 ignored gives.
        decimal: Ipv4Addr,
    },
}

impl Reading {
    /// What to write instead: `write it 127.0.0.1`, or for an ambiguous text both readings.
    pub fn advice(&self) -> String {
        match self {
            Reading::Address(ip) => format!("write it {ip}"),
            Reading::Ambiguous { octal, decimal } => format!(
                "a leading 0 means octal to some software ({octal}) and nothing to others ({decimal}): write the \
                 address you mean as four decimal numbers without leading zeros"
            ),
        }
    }
}

impl fmt::Display for Reading {
    /// The canonical text, or `127.0.0.1 or 177.0.0.1` for an ambiguous one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reading::Address(ip) => write!(f, "{ip}"),
            Reading::Ambiguous { octal, decimal } => write!(f, "{octal} or {decimal}"),
        }
    }
}

/// The IP address `text` would be taken for by software that reads addresses leniently, or
/// `None` when it is no address to any of them:
/// - an IPv4 or IPv6 address in any form Rust reads (an IPv4-mapped IPv6 address reads as its
///   IPv4 address), an IPv6 address in brackets (`[::1]`);
/// - `inet_aton`'s and the WHATWG URL standard's IPv4 forms: one to four parts separated by
///   dots, each decimal, octal with a leading `0` or hexadecimal with `0x`, the last filling
///   the bytes left (`127.1`, `2130706433`, `0x7f.0.0.1`, `0177.0.0.1`), and one trailing dot.
pub fn read_address(text: &str) -> Option<Reading> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(Reading::Address(ip.to_canonical()));
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| Reading::Address(IpAddr::V6(v6).to_canonical()));
    }
    let body = text.strip_suffix('.').unwrap_or(text);
    let parts: Vec<&str> = body.split('.').collect();
    if parts.is_empty() || parts.len() > 4 || parts.iter().any(|part| part.is_empty()) {
        return None;
    }
    let octal = lenient_ipv4(&parts, true);
    let decimal = lenient_ipv4(&parts, false);
    match (octal, decimal) {
        (Some(octal), Some(decimal)) if octal != decimal => Some(Reading::Ambiguous { octal, decimal }),
        (Some(address), _) | (None, Some(address)) => Some(Reading::Address(IpAddr::V4(address))),
        (None, None) => None,
    }
}

/// `parts` read as `inet_aton` does (`octal`: a leading 0 means octal) or with leading zeros
/// ignored; `None` when a part is not a number of that base or a value does not fit.
fn lenient_ipv4(parts: &[&str], octal: bool) -> Option<Ipv4Addr> {
    let mut values = Vec::with_capacity(parts.len());
    for part in parts {
        let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if let Some(rest) = part.strip_prefix('0').filter(|rest| octal && !rest.is_empty()) {
            (rest, 8)
        } else {
            (*part, 10)
        };
        if digits.is_empty() || digits.len() > 32 || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        values.push(u64::from_str_radix(digits, radix).ok()?);
    }
    let (last, leading) = values.split_last()?;
    if leading.iter().any(|value| *value > 255) {
        return None;
    }
    let last_bytes = 4 - leading.len();
    if *last >= 1u64 << (8 * last_bytes) {
        return None;
    }
    let mut address: u64 = 0;
    for value in leading {
        address = (address << 8) | value;
    }
    address = (address << (8 * last_bytes)) | last;
    u32::try_from(address).ok().map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn kind(text: &str) -> Option<SpecialPurpose> {
        special_purpose(text.parse().unwrap()).map(|special| special.kind)
    }

    #[test]
    fn every_special_purpose_kind_in_ipv4_and_ipv6() {
        use SpecialPurpose::*;
        for (address, expected) in [
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("::", Some(Unspecified)),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("::1", Some(Loopback)),
            ("169.254.169.254", Some(LinkLocal)),
            ("169.254.0.0", Some(LinkLocal)),
            ("fe80::1", Some(LinkLocal)),
            ("febf:ffff::1", Some(LinkLocal)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.255", Some(Multicast)),
            ("ff02::1", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.254", Some(Reserved)),
            // Ordinary: public, private, documentation, the edges of the ranges above.
            ("1.1.1.1", None),
            ("10.0.0.1", None),
            ("192.168.1.1", None),
            ("192.0.2.1", None),
            ("169.253.255.255", None),
            ("169.255.0.0", None),
            ("126.255.255.255", None),
            ("128.0.0.0", None),
            ("223.255.255.255", None),
            ("1.0.0.0", None),
            ("fec0::1", None),
            ("fe7f::1", None),
            ("fd00::1", None),
            ("2001:db8::1", None),
            ("::2:0:0:1", None),
        ] {
            assert_eq!(kind(address), expected, "{address}");
        }
    }

    #[test]
    fn an_embedded_ipv4_address_is_judged_by_itself_and_is_never_plain_loopback() {
        use SpecialPurpose::*;
        for (address, embedding, expected) in [
            ("::ffff:127.0.0.1", Embedding::Mapped, Some(Loopback)),
            ("::ffff:169.254.169.254", Embedding::Mapped, Some(LinkLocal)),
            ("::ffff:0.0.0.0", Embedding::Mapped, Some(Unspecified)),
            ("::ffff:224.0.0.1", Embedding::Mapped, Some(Multicast)),
            ("::ffff:255.255.255.255", Embedding::Mapped, Some(Broadcast)),
            ("::ffff:8.8.8.8", Embedding::Mapped, None),
            ("::127.0.0.1", Embedding::Compatible, Some(Loopback)),
            ("::169.254.1.1", Embedding::Compatible, Some(LinkLocal)),
            ("::0.0.0.2", Embedding::Compatible, Some(Unspecified)),
            ("::10.0.0.1", Embedding::Compatible, None),
            ("64:ff9b::7f00:1", Embedding::Nat64, Some(Loopback)),
            ("64:ff9b::a9fe:a9fe", Embedding::Nat64, Some(LinkLocal)),
            ("64:ff9b::f000:1", Embedding::Nat64, Some(Reserved)),
            ("64:ff9b::808:808", Embedding::Nat64, None),
        ] {
            let ip: IpAddr = address.parse().unwrap();
            let IpAddr::V6(v6) = ip else { unreachable!() };
            assert_eq!(embedded_ipv4(v6).map(|(e, _)| e), Some(embedding), "{address}");
            let special = special_purpose(ip);
            assert_eq!(special.map(|s| s.kind), expected, "{address}");
            assert!(!special.is_some_and(|s| s.is_plain_loopback()), "{address}");
        }
        assert!(
            special_purpose("127.0.0.2".parse().unwrap())
                .unwrap()
                .is_plain_loopback()
        );
        assert!(special_purpose("::1".parse().unwrap()).unwrap().is_plain_loopback());
        for address in ["::", "::1", "64:ff9b:1::1", "2002:7f00:1::1"] {
            let IpAddr::V6(v6) = address.parse().unwrap() else {
                unreachable!()
            };
            assert_eq!(embedded_ipv4(v6), None, "{address}");
        }
        assert_eq!(
            special_purpose("::ffff:169.254.169.254".parse().unwrap())
                .unwrap()
                .to_string(),
            "the IPv4-mapped form of 169.254.169.254, link-local (169.254.0.0/16)"
        );
        assert_eq!(
            special_purpose("fe80::1".parse().unwrap()).unwrap().to_string(),
            "link-local (fe80::/10)"
        );
    }

    #[test]
    fn allow_ip_refuses_mapped_networks_and_networks_of_special_addresses_only() {
        let refusal = |text: &str| allow_ip_network_refusal(&Cidr::parse(text).unwrap());
        for (network, says) in [
            ("::ffff:127.0.0.1/128", "give 127.0.0.1/32"),
            ("::ffff:10.0.0.0/104", "give 10.0.0.0/8"),
            ("::ffff:0:0/96", "give 0.0.0.0/0"),
            ("169.254.0.0/16", "link-local"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0/8", "unspecified"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.0/4", "multicast"),
            ("239.1.2.3", "multicast"),
            ("240.0.0.0/4", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.0/3", "multicast"),
            ("fe80::/10", "link-local"),
            ("fe80::/64", "link-local"),
            ("ff00::/8", "multicast"),
            ("ff02::1", "multicast"),
            ("::", "unspecified"),
            ("::127.0.0.1", "give 127.0.0.1/32"),
            ("64:ff9b::7f00:0/104", "give 127.0.0.0/8"),
            ("64:ff9b::a9fe:0/112", "link-local"),
            ("::169.254.0.0/112", "IPv4-compatible form of link-local"),
        ] {
            let why = refusal(network).unwrap_or_else(|| panic!("{network} accepted"));
            assert!(why.contains(says), "{network}: {why}");
        }
        for network in [
            "127.0.0.0/8",
            "127.0.0.1",
            "::1",
            "10.0.0.0/8",
            "192.168.0.0/16",
            "fd00::/8",
            "2001:db8::/32",
            "0.0.0.0/0",
            "::/0",
            "::/96",
            "::/127",
            "169.0.0.0/8",
            "192.0.0.0/2",
            "64:ff9b::/96",
            "64:ff9b::a00:0/104",
            "fc00::/7",
        ] {
            assert_eq!(refusal(network), None, "{network}");
        }
    }

    #[test]
    fn addresses_are_read_as_lenient_software_reads_them() {
        let one = |text: &str| match read_address(text) {
            Some(Reading::Address(ip)) => ip.to_string(),
            other => panic!("{text}: {other:?}"),
        };
        for (text, canonical) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.000.0.1", "127.0.0.1"),
            ("127.00.00.01", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x7f.0.0.1", "127.0.0.1"),
            ("0X7F.0x0.0.0x1", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("127.0.0.1.", "127.0.0.1"),
            ("0377.0.0.1", "255.0.0.1"),
            ("09.0.0.1", "9.0.0.1"),
            ("10.0.0.0377", "10.0.0.255"),
            ("[::1]", "::1"),
            ("[2001:DB8::1]", "2001:db8::1"),
            ("::ffff:1.2.3.4", "1.2.3.4"),
            ("2001:DB8:0::1", "2001:db8::1"),
        ] {
            assert_eq!(one(text), canonical, "{text}");
        }
        assert_eq!(
            read_address("0177.0.0.1"),
            Some(Reading::Ambiguous {
                octal: Ipv4Addr::new(127, 0, 0, 1),
                decimal: Ipv4Addr::new(177, 0, 0, 1)
            })
        );
        assert_eq!(read_address("010.0.0.1").unwrap().to_string(), "8.0.0.1 or 10.0.0.1");
        assert!(read_address("010.0.0.1").unwrap().advice().contains("octal"));
        assert_eq!(read_address("127.1").unwrap().advice(), "write it 127.0.0.1");
        for text in [
            "",
            ".",
            "a.test",
            "1.2.3.4.5",
            "256.0.0.1",
            "1.2.3.256",
            "1.2.65536",
            "4294967296",
            "0x",
            "1..2",
            "..",
            "1.2.3.4..",
            "0x1g.0.0.1",
            "1.2.3.a",
            "-1.0.0.1",
            "+1.0.0.1",
            "1 .2.3.4",
            "[::1",
            "[1.2.3.4]",
            "fe80::1%eth0",
            "99999999999999999999999999999999999999.1",
        ] {
            assert_eq!(read_address(text), None, "{text:?}");
        }
    }
}
