//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2): a load balancer that
//! passes TCP through states, before the first byte of the client's stream, which client
//! connected to which address.
//!
//! [`read_proxy_header`] reads one header from the start of a stream, exactly: not one byte of
//! what follows (the client's TLS ClientHello) is consumed, whatever the reads deliver. The
//! parsing itself is the `ppp` crate's; this module frames the header (so that it never reads
//! too far), bounds its size, and turns the result into [`ProxyHeader`]. [`ProxySources`] says
//! which peers must send one.
//!
//! What the header's addresses mean: a v2 `PROXY` command with TCP over IPv4 or IPv6, or a v1
//! `TCP4` / `TCP6` line, names the client ([`ProxyHeader::addresses`]). A v2 `LOCAL` command
//! (HAProxy's health checks, or a client that reached the balancer through a unix socket), a
//! v1 `UNKNOWN` line, and a v2 header of another address family mean "use the socket's own
//! endpoints" (§2.1–2.2): [`ProxyHeader::addresses`] is `None` and the connection goes on. The
//! type-length-value fields of a v2 header are skipped.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::ChannelError;

/// The longest v1 header, `\r\n` included (proxy-protocol.txt §2.1).
pub const MAX_PROXY_V1_HEADER: usize = 107;
/// The longest v2 header accepted: its 16 fixed bytes and up to 2048 bytes of addresses and
/// TLVs (HAProxy's own headers, every TLV included, are far shorter).
pub const MAX_PROXY_V2_HEADER: usize = 16 + 2048;

/// The 12-byte signature that opens a v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The shortest v1 header: `PROXY UNKNOWN\r\n`.
const MIN_V1_HEADER: usize = 15;

/// The version of a PROXY protocol header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyVersion {
    /// The text form (`PROXY TCP4 …\r\n`); nginx's `proxy_protocol on` sends it.
    V1,
    /// The binary form; HAProxy's `send-proxy-v2`.
    V2,
}

impl fmt::Display for ProxyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        })
    }
}

/// The addresses a proxy states for the connection it passes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxiedAddresses {
    /// The client, as the proxy saw it.
    pub source: SocketAddr,
    /// The address the client connected to (the proxy's frontend).
    pub destination: SocketAddr,
}

/// A PROXY protocol header, read and parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Its version.
    pub version: ProxyVersion,
    /// The client's addresses; `None` for a v2 `LOCAL` command, a v1 `UNKNOWN` line, or an
    /// address family other than IPv4 and IPv6: the socket's own endpoints stand.
    pub addresses: Option<ProxiedAddresses>,
    /// Its length in bytes, as read from the stream.
    pub length: usize,
}

impl ProxyHeader {
    /// True for a v2 `LOCAL` command or a v1 `UNKNOWN` line (and the address families that mean
    /// the same): the connection is the proxy's own, or its client's address is unknown.
    pub fn is_local(&self) -> bool {
        self.addresses.is_none()
    }
}

/// What is wrong with the start of a connection that should, or should not, carry a PROXY
/// protocol header (see [`ChannelError::ProxyHeader`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyProblem {
    /// The connection does not start with a header; `first_byte` is what it starts with
    /// (`0x16`: a TLS handshake).
    Missing {
        /// The first byte received.
        first_byte: u8,
    },
    /// The peer closed the connection in the middle of the header (`received` 0: before
    /// sending anything).
    Truncated {
        /// Bytes of the header received.
        received: usize,
    },
    /// The header is longer than this side accepts ([`MAX_PROXY_V1_HEADER`],
    /// [`MAX_PROXY_V2_HEADER`]).
    TooLarge {
        /// Its version.
        version: ProxyVersion,
        /// Its length, as announced (v2) or read so far (v1).
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The header is not a valid one.
    Malformed {
        /// Its version.
        version: ProxyVersion,
        /// Why, in words.
        reason: String,
    },
    /// A header from a peer that is not allowed to send one (not in [`ProxySources`]): nobody
    /// outside that list may claim another address.
    Unexpected {
        /// The peer.
        peer: IpAddr,
    },
}

impl ProxyProblem {
    /// True when the peer closed the connection before sending a single byte: a TCP health
    /// check, not a failure worth a warning.
    pub fn is_silent_close(&self) -> bool {
        matches!(self, Self::Truncated { received: 0 })
    }
}

impl fmt::Display for ProxyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { first_byte: 0x16 } => {
                f.write_str("no PROXY protocol header: the connection starts with a TLS handshake")
            }
            Self::Missing { first_byte } => {
                write!(
                    f,
                    "no PROXY protocol header: the connection starts with byte 0x{first_byte:02x}"
                )
            }
            Self::Truncated { received: 0 } => f.write_str("the peer closed the connection before sending anything"),
            Self::Truncated { received } => write!(
                f,
                "the peer closed the connection {received} bytes into the PROXY protocol header"
            ),
            Self::TooLarge { version, length, max } => write!(
                f,
                "the PROXY protocol {version} header is {length} bytes or more, longer than the {max} bytes accepted"
            ),
            Self::Malformed { version, reason } => {
                write!(f, "the PROXY protocol {version} header is malformed: {reason}")
            }
            Self::Unexpected { peer } => write!(
                f,
                "a PROXY protocol header from {peer}, which is not a listed proxy (--proxy-from)"
            ),
        }
    }
}

fn problem(problem: ProxyProblem) -> ChannelError {
    ChannelError::ProxyHeader { problem }
}

/// Reads `buf.len()` bytes, or reports how far the header got (`already` bytes before these).
async fn read_exactly<R: AsyncRead + Unpin>(io: &mut R, buf: &mut [u8], already: usize) -> Result<(), ChannelError> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else { break };
        filled += read_some(io, rest, already + filled).await?;
    }
    Ok(())
}

/// Reads what has arrived, 1 to `buf.len()` bytes, or reports how far the header got
/// (`already` bytes before these).
async fn read_some<R: AsyncRead + Unpin>(io: &mut R, buf: &mut [u8], already: usize) -> Result<usize, ChannelError> {
    let n = match io.read(buf).await {
        Ok(n) => n,
        // A reset before the first byte is a close too (health checkers reset).
        Err(error)
            if already == 0
                && matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                ) =>
        {
            0
        }
        Err(source) => {
            return Err(ChannelError::Io {
                operation: "PROXY header read",
                source,
            });
        }
    };
    if n == 0 && !buf.is_empty() {
        return Err(problem(ProxyProblem::Truncated { received: already }));
    }
    Ok(n)
}

/// Reads one PROXY protocol header (v1 or v2) from the start of `io`, exactly: the bytes after
/// it are left unread. The caller bounds the time (the handshake timeout).
///
/// # Errors
/// [`ChannelError::ProxyHeader`] when the stream does not start with a valid header of at most
/// [`MAX_PROXY_V1_HEADER`] / [`MAX_PROXY_V2_HEADER`] bytes, or ends inside it;
/// [`ChannelError::Io`] when reading fails.
pub async fn read_proxy_header<R: AsyncRead + Unpin>(io: &mut R) -> Result<ProxyHeader, ChannelError> {
    let mut first = [0u8; 1];
    read_exactly(io, &mut first, 0).await?;
    match first {
        [b'P'] => read_v1(io).await,
        [b'\r'] => read_v2(io).await,
        [first_byte] => Err(problem(ProxyProblem::Missing { first_byte })),
    }
}

/// The rest of a v1 line, judged byte by byte as it arrives: what has arrived, up to the length
/// of the shortest header, then a byte at a time up to the line feed, so that nothing after a
/// valid line is read, and a line that cannot be a header (a byte that is not printable text, a
/// wrong prefix, a line feed without its carriage return) is refused at once, not after waiting
/// for more bytes.
async fn read_v1<R: AsyncRead + Unpin>(io: &mut R) -> Result<ProxyHeader, ChannelError> {
    let mut line = Vec::with_capacity(MAX_PROXY_V1_HEADER);
    line.push(b'P');
    let mut chunk = [0u8; MIN_V1_HEADER];
    loop {
        if line.len() >= MAX_PROXY_V1_HEADER {
            return Err(problem(ProxyProblem::TooLarge {
                version: ProxyVersion::V1,
                length: line.len(),
                max: MAX_PROXY_V1_HEADER,
            }));
        }
        // A valid line ends with its first line feed, at MIN_V1_HEADER bytes or later.
        let want = MIN_V1_HEADER.saturating_sub(line.len()).max(1);
        let Some(buf) = chunk.get_mut(..want) else {
            break;
        };
        let n = read_some(io, buf, line.len()).await?;
        for &byte in buf.get(..n).unwrap_or_default() {
            line.push(byte);
            if v1_byte(&line)? {
                return parse_v1(&line);
            }
        }
    }
    parse_v1(&line)
}

/// Checks the last byte of a v1 line being read: `true` when it ends the line (`\r\n`).
fn v1_byte(line: &[u8]) -> Result<bool, ChannelError> {
    const PREFIX: &[u8] = b"PROXY ";
    let malformed = |reason: String| {
        problem(ProxyProblem::Malformed {
            version: ProxyVersion::V1,
            reason,
        })
    };
    let at = line.len().saturating_sub(1);
    let (Some(&byte), previous) = (line.last(), at.checked_sub(1).and_then(|i| line.get(i))) else {
        return Ok(false);
    };
    if PREFIX.get(at).is_some_and(|&expected| expected != byte) {
        return Err(malformed("it does not start with \"PROXY \"".into()));
    }
    match (previous, byte) {
        (Some(b'\r'), b'\n') => Ok(true),
        (_, b'\n') => Err(malformed(
            "the line must end with CRLF (\\r\\n), not a line feed alone".into(),
        )),
        (Some(b'\r'), _) => Err(malformed(
            "the line must end with CRLF (\\r\\n): a carriage return comes before its end".into(),
        )),
        (_, b'\r' | b' '..=b'~') => Ok(false),
        (_, other) => Err(malformed(format!(
            "byte {} of the line is 0x{other:02x}, which is not printable ASCII text",
            at + 1
        ))),
    }
}

fn parse_v1(line: &[u8]) -> Result<ProxyHeader, ChannelError> {
    use ppp::v1::{Addresses, BinaryParseError, Header, ParseError};
    let malformed = |reason: &str| {
        problem(ProxyProblem::Malformed {
            version: ProxyVersion::V1,
            reason: reason.into(),
        })
    };
    let header = Header::try_from(line).map_err(|error| {
        malformed(match error {
            BinaryParseError::InvalidUtf8(_) => "it is not text",
            BinaryParseError::Parse(error) => match error {
                ParseError::InvalidPrefix | ParseError::MissingPrefix => "it does not start with \"PROXY \"",
                ParseError::InvalidProtocol | ParseError::MissingProtocol => {
                    "the protocol is not TCP4, TCP6 or UNKNOWN"
                }
                ParseError::InvalidSourceAddress(_) | ParseError::MissingSourceAddress => {
                    "the source address is missing or invalid"
                }
                ParseError::InvalidDestinationAddress(_) | ParseError::MissingDestinationAddress => {
                    "the destination address is missing or invalid"
                }
                ParseError::InvalidSourcePort(_) | ParseError::MissingSourcePort => {
                    "the source port is missing or invalid"
                }
                ParseError::InvalidDestinationPort(_) | ParseError::MissingDestinationPort => {
                    "the destination port is missing or invalid"
                }
                ParseError::HeaderTooLong => "it is too long",
                _ => "it does not end with \\r\\n after the fields",
            },
        })
    })?;
    // ppp stops at the first `\r`: the line must end right after it.
    if header.header.len() != line.len() {
        return Err(malformed("it does not end with \\r\\n after the fields"));
    }
    let addresses = match header.addresses {
        Addresses::Tcp4(ip) => Some(ProxiedAddresses {
            source: SocketAddr::new(IpAddr::V4(ip.source_address), ip.source_port),
            destination: SocketAddr::new(IpAddr::V4(ip.destination_address), ip.destination_port),
        }),
        Addresses::Tcp6(ip) => Some(ProxiedAddresses {
            source: SocketAddr::new(IpAddr::V6(ip.source_address), ip.source_port),
            destination: SocketAddr::new(IpAddr::V6(ip.destination_address), ip.destination_port),
        }),
        Addresses::Unknown => None,
    };
    Ok(ProxyHeader {
        version: ProxyVersion::V1,
        addresses,
        length: line.len(),
    })
}

/// The rest of a v2 header: its fixed part, then exactly the length it announces.
async fn read_v2<R: AsyncRead + Unpin>(io: &mut R) -> Result<ProxyHeader, ChannelError> {
    let mut header = vec![0u8; 16];
    if let Some(first) = header.first_mut() {
        *first = b'\r';
    }
    // The signature first: a stream that is not a v2 header is refused without waiting for 16
    // bytes it may never send.
    if let Some(signature) = header.get_mut(1..V2_SIGNATURE.len()) {
        read_exactly(io, signature, 1).await?;
    }
    if header.get(..V2_SIGNATURE.len()) != Some(V2_SIGNATURE.as_slice()) {
        return Err(problem(ProxyProblem::Malformed {
            version: ProxyVersion::V2,
            reason: "it does not start with the v2 signature".into(),
        }));
    }
    if let Some(fixed) = header.get_mut(V2_SIGNATURE.len()..16) {
        read_exactly(io, fixed, V2_SIGNATURE.len()).await?;
    }
    let announced = match header.get(14..16) {
        Some(&[high, low]) => usize::from(u16::from_be_bytes([high, low])),
        _ => 0,
    };
    let total = 16 + announced;
    if total > MAX_PROXY_V2_HEADER {
        return Err(problem(ProxyProblem::TooLarge {
            version: ProxyVersion::V2,
            length: total,
            max: MAX_PROXY_V2_HEADER,
        }));
    }
    header.resize(total, 0);
    if let Some(payload) = header.get_mut(16..) {
        read_exactly(io, payload, 16).await?;
    }
    parse_v2(&header)
}

fn parse_v2(bytes: &[u8]) -> Result<ProxyHeader, ChannelError> {
    use ppp::v2::{Addresses, Command, Header, ParseError};
    let header = Header::try_from(bytes).map_err(|error| {
        problem(ProxyProblem::Malformed {
            version: ProxyVersion::V2,
            reason: match error {
                ParseError::Version(v) => format!("version {} is not 2", v >> 4),
                ParseError::Command(c) => format!("command {c} is neither LOCAL nor PROXY"),
                ParseError::AddressFamily(a) => format!("address family 0x{a:02x} is unknown"),
                ParseError::Protocol(p) => format!("transport protocol {p} is unknown"),
                ParseError::InvalidAddresses(length, needed) => {
                    format!("its {length} bytes cannot hold the {needed} bytes of its addresses")
                }
                _ => "it cannot be parsed".into(),
            },
        })
    })?;
    let addresses = match (header.command, header.addresses) {
        (Command::Local, _) => None,
        (Command::Proxy, Addresses::IPv4(ip)) => Some(ProxiedAddresses {
            source: SocketAddr::new(IpAddr::V4(ip.source_address), ip.source_port),
            destination: SocketAddr::new(IpAddr::V4(ip.destination_address), ip.destination_port),
        }),
        (Command::Proxy, Addresses::IPv6(ip)) => Some(ProxiedAddresses {
            source: SocketAddr::new(IpAddr::V6(ip.source_address), ip.source_port),
            destination: SocketAddr::new(IpAddr::V6(ip.destination_address), ip.destination_port),
        }),
        // Unspecified or unix sockets: "the receiver must use the real connection endpoints".
        (Command::Proxy, _) => None,
    };
    Ok(ProxyHeader {
        version: ProxyVersion::V2,
        addresses,
        length: bytes.len(),
    })
}

/// Whether the first byte of a connection starts a PROXY protocol header (`P` for v1, `\r` for
/// v2); a TLS handshake starts with `0x16`. For refusing a header from a peer that may not send
/// one, after a `peek`.
pub(crate) fn starts_proxy_header(first_byte: u8) -> bool {
    first_byte == b'P' || first_byte == b'\r'
}

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`, `::1/128`; a bare address is a
/// network of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDRESS[/PREFIX]`; with a prefix, the address must be the network's (no host
    /// bits set: `10.0.0.0/8`, not `10.0.0.1/8`).
    ///
    /// # Errors
    /// A message naming what is wrong (for host bits set, the network form).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("\"{}\" is not an IPv4 or IPv6 address", super::text::escape(address)))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix length \"{}\" is not 0 to {max}", super::text::escape(prefix)))?,
        };
        let cidr = Self { network, prefix };
        // `10.0.0.1/8` most likely means a typo for one address or for the network: say which
        // network it would be rather than guess.
        let masked = cidr.network_address();
        if masked != network {
            return Err(format!(
                "\"{}\" has host bits set: the network of prefix length {prefix} is {masked}/{prefix} (give that, or \
                 {network} alone for one address)",
                super::text::escape(text)
            ));
        }
        Ok(cidr)
    }

    /// The network's first address (`10.0.0.0` for `10.0.0.0/8`).
    pub fn address(&self) -> IpAddr {
        self.network
    }

    /// The prefix length (`8` for `10.0.0.0/8`; 32 or 128 for one address).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The address with the bits past the prefix cleared.
    fn network_address(&self) -> IpAddr {
        match self.network {
            IpAddr::V4(address) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V4(std::net::Ipv4Addr::from(u32::from(address) & mask))
            }
            IpAddr::V6(address) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V6(std::net::Ipv6Addr::from(u128::from(address) & mask))
            }
        }
    }

    /// True when the two networks share an address (one lies within the other).
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// True when every address of `other` is in this network.
    pub fn covers(&self, other: &Cidr) -> bool {
        self.prefix <= other.prefix && self.contains(other.network)
    }

    /// True when `address` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The peers that must start their connections with a PROXY protocol header (the load
/// balancers); every other peer connects directly and may not send one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySources {
    networks: Vec<Cidr>,
}

impl ProxySources {
    /// The given networks.
    pub fn new(networks: Vec<Cidr>) -> Self {
        Self { networks }
    }

    /// Loopback only (`127.0.0.0/8`, `::1/128`): a balancer on the same machine.
    pub fn loopback() -> Self {
        Self::new(vec![
            Cidr {
                network: IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 0)),
                prefix: 8,
            },
            Cidr {
                network: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ])
    }

    /// True when `peer` must send a header.
    pub fn contains(&self, peer: IpAddr) -> bool {
        self.networks.iter().any(|network| network.contains(peer))
    }

    /// The networks.
    pub fn networks(&self) -> &[Cidr] {
        &self.networks
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;

    fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.push(0x20 | command);
        bytes.push(family);
        bytes.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn tcp4_payload() -> Vec<u8> {
        let mut payload = vec![192, 0, 2, 7, 127, 0, 0, 1];
        payload.extend_from_slice(&40000u16.to_be_bytes());
        payload.extend_from_slice(&443u16.to_be_bytes());
        payload
    }

    /// A TLS record header and the start of a ClientHello.
    const CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0xf4, 0x01, 0x00, 0x00, 0xf0, 0x03, 0x03];

    /// Feeds `bytes` in pieces of `piece` bytes (a pause between them), then reads a header and
    /// returns it with everything the stream still holds.
    async fn read_in_pieces(bytes: Vec<u8>, piece: usize) -> (Result<ProxyHeader, ChannelError>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            // The reader may stop early (a refused header) and drop its end: writes then fail.
            for chunk in bytes.chunks(piece.max(1)) {
                if client.write_all(chunk).await.is_err() {
                    return;
                }
                let _ = client.flush().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let _ = client.shutdown().await;
        });
        let header = tokio::time::timeout(Duration::from_secs(10), read_proxy_header(&mut server))
            .await
            .unwrap();
        let mut rest = Vec::new();
        if header.is_ok() {
            server.read_to_end(&mut rest).await.unwrap();
        }
        drop(server);
        writer.await.unwrap();
        (header, rest)
    }

    fn problem_of(result: Result<ProxyHeader, ChannelError>) -> ProxyProblem {
        match result {
            Err(ChannelError::ProxyHeader { problem }) => problem,
            other => panic!("expected a PROXY header problem, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn v2_tcp4_names_the_client_and_leaves_the_client_hello_intact() {
        for piece in [1, 3, 16, 1000] {
            let mut bytes = v2(1, 0x11, &tcp4_payload());
            bytes.extend_from_slice(CLIENT_HELLO);
            let (header, rest) = read_in_pieces(bytes, piece).await;
            let header = header.unwrap();
            assert_eq!(header.version, ProxyVersion::V2);
            assert_eq!(
                header.addresses,
                Some(ProxiedAddresses {
                    source: "192.0.2.7:40000".parse().unwrap(),
                    destination: "127.0.0.1:443".parse().unwrap(),
                })
            );
            assert_eq!(header.length, 28);
            assert_eq!(rest, CLIENT_HELLO, "pieces of {piece}");
        }
    }

    #[tokio::test]
    async fn v2_tcp6_names_the_client() {
        let mut payload = Vec::new();
        payload.extend_from_slice(&"2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        payload.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        payload.extend_from_slice(&50000u16.to_be_bytes());
        payload.extend_from_slice(&8443u16.to_be_bytes());
        let mut bytes = v2(1, 0x21, &payload);
        bytes.extend_from_slice(CLIENT_HELLO);
        let (header, rest) = read_in_pieces(bytes, 5).await;
        let addresses = header.unwrap().addresses.unwrap();
        assert_eq!(addresses.source, "[2001:db8::1]:50000".parse::<SocketAddr>().unwrap());
        assert_eq!(addresses.destination, "[::1]:8443".parse::<SocketAddr>().unwrap());
        assert_eq!(rest, CLIENT_HELLO);
    }

    #[tokio::test]
    async fn v2_local_means_the_socket_endpoints_and_the_stream_goes_on() {
        // As HAProxy sends for check-ssl: LOCAL, no addresses, then a TLS handshake.
        let mut bytes = v2(0, 0x00, &[]);
        bytes.extend_from_slice(CLIENT_HELLO);
        let (header, rest) = read_in_pieces(bytes, 2).await;
        let header = header.unwrap();
        assert!(header.is_local());
        assert_eq!(header.length, 16);
        assert_eq!(rest, CLIENT_HELLO);
        // LOCAL with addresses: they are ignored.
        let (header, _) = read_in_pieces(v2(0, 0x11, &tcp4_payload()), 100).await;
        assert!(header.unwrap().is_local());
    }

    #[tokio::test]
    async fn v2_tlvs_are_skipped() {
        let mut payload = tcp4_payload();
        // PP2_TYPE_ALPN "h2", PP2_TYPE_UNIQUE_ID, a NOOP, and an unknown type 0xEE.
        payload.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']);
        payload.extend_from_slice(&[0x05, 0x00, 0x04, 1, 2, 3, 4]);
        payload.extend_from_slice(&[0x04, 0x00, 0x00]);
        payload.extend_from_slice(&[0xEE, 0x00, 0x03, 9, 9, 9]);
        let mut bytes = v2(1, 0x11, &payload);
        bytes.extend_from_slice(CLIENT_HELLO);
        let (header, rest) = read_in_pieces(bytes, 7).await;
        let header = header.unwrap();
        assert_eq!(
            header.addresses.unwrap().source,
            "192.0.2.7:40000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(rest, CLIENT_HELLO);
    }

    #[tokio::test]
    async fn v1_tcp4_tcp6_and_unknown() {
        for (line, source) in [
            ("PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n", Some("192.0.2.7:40000")),
            ("PROXY TCP6 2001:db8::1 ::1 50000 8443\r\n", Some("[2001:db8::1]:50000")),
            ("PROXY UNKNOWN\r\n", None),
            ("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", None),
        ] {
            for piece in [1, 4, 200] {
                let mut bytes = line.as_bytes().to_vec();
                bytes.extend_from_slice(CLIENT_HELLO);
                let (header, rest) = read_in_pieces(bytes, piece).await;
                let header = header.unwrap_or_else(|e| panic!("{line:?}: {e}"));
                assert_eq!(header.version, ProxyVersion::V1);
                assert_eq!(
                    header.addresses.map(|a| a.source),
                    source.map(|s| s.parse().unwrap()),
                    "{line:?}"
                );
                assert_eq!(header.length, line.len());
                assert_eq!(rest, CLIENT_HELLO, "{line:?} in pieces of {piece}");
            }
        }
    }

    #[tokio::test]
    async fn truncated_headers_say_how_far_they_got() {
        let full = v2(1, 0x11, &tcp4_payload());
        for cut in [1, 5, 12, 15, 16, 20, 27] {
            let (header, _) = read_in_pieces(full.get(..cut).unwrap().to_vec(), 3).await;
            assert_eq!(
                problem_of(header),
                ProxyProblem::Truncated { received: cut },
                "cut at {cut}"
            );
        }
        let line = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n";
        for cut in [3, 14, 20, line.len() - 1] {
            let (header, _) = read_in_pieces(line.get(..cut).unwrap().to_vec(), 3).await;
            assert_eq!(
                problem_of(header),
                ProxyProblem::Truncated { received: cut },
                "cut at {cut}"
            );
        }
        let (header, _) = read_in_pieces(Vec::new(), 1).await;
        let nothing = problem_of(header);
        assert!(nothing.is_silent_close());
        assert_eq!(
            nothing.to_string(),
            "the peer closed the connection before sending anything"
        );
    }

    #[tokio::test]
    async fn oversized_headers_are_refused_before_they_are_read() {
        // Announces 65535 bytes and sends none of them: refused at once, not after a wait.
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&bytes).await.unwrap();
        let header = tokio::time::timeout(Duration::from_secs(5), read_proxy_header(&mut server))
            .await
            .unwrap();
        assert_eq!(
            problem_of(header),
            ProxyProblem::TooLarge {
                version: ProxyVersion::V2,
                length: 16 + 65535,
                max: MAX_PROXY_V2_HEADER
            }
        );
        // A v1 line with no end within 107 bytes.
        let mut line = b"PROXY TCP4 ".to_vec();
        line.extend(std::iter::repeat_n(b'1', 200));
        let (header, _) = read_in_pieces(line, 50).await;
        assert!(matches!(
            problem_of(header),
            ProxyProblem::TooLarge {
                version: ProxyVersion::V1,
                length: MAX_PROXY_V1_HEADER,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn malformed_headers_are_refused_in_words() {
        for (bytes, expected) in [
            (
                b"PROXY TCP4 nonsense 127.0.0.1 1 2\r\n".to_vec(),
                "the source address is missing or invalid",
            ),
            (
                b"PROXY UDP4 1.2.3.4 127.0.0.1 1 2\r\n".to_vec(),
                "the protocol is not TCP4, TCP6 or UNKNOWN",
            ),
            (
                b"PRIXY TCP4 1.2.3.4 127.0.0.1 1 2\r\n".to_vec(),
                "it does not start with \"PROXY \"",
            ),
            (
                b"\r\n\r\nXXXXXXXXXXXXXXXX".to_vec(),
                "it does not start with the v2 signature",
            ),
            (v2(2, 0x11, &tcp4_payload()), "command 2 is neither LOCAL nor PROXY"),
            (
                v2(1, 0x11, &[1, 2, 3]),
                "its 3 bytes cannot hold the 12 bytes of its addresses",
            ),
        ] {
            let (header, _) = read_in_pieces(bytes, 64).await;
            let problem = problem_of(header);
            assert!(problem.to_string().ends_with(expected), "{problem}");
        }
    }

    #[tokio::test]
    async fn a_v1_line_with_a_byte_that_is_not_text_is_refused_at_once() {
        for bytes in [
            b"PROXY \x00\r\n".to_vec(),
            b"PROXY TCP4 1.2.3.4\x00 127.0.0.1 1 2\r\n".to_vec(),
            b"PROXY \xff".to_vec(),
        ] {
            // The peer keeps the connection open and sends nothing more: no wait for more bytes.
            let (mut client, mut server) = tokio::io::duplex(256);
            client.write_all(&bytes).await.unwrap();
            let header = tokio::time::timeout(Duration::from_secs(5), read_proxy_header(&mut server))
                .await
                .unwrap_or_else(|_| panic!("{bytes:?} was waited on"));
            let problem = problem_of(header);
            assert!(
                matches!(
                    problem,
                    ProxyProblem::Malformed {
                        version: ProxyVersion::V1,
                        ..
                    }
                ) && problem.to_string().contains("which is not printable ASCII text"),
                "{bytes:?}: {problem}"
            );
            drop(client);
        }
        // Followed by a ClientHello: still malformed, not "longer than 107 bytes".
        let mut bytes = b"PROXY \x00\r\n".to_vec();
        bytes.extend_from_slice(CLIENT_HELLO);
        bytes.extend(std::iter::repeat_n(b'A', 200));
        let (header, _) = read_in_pieces(bytes, 64).await;
        let problem = problem_of(header);
        assert_eq!(
            problem.to_string(),
            "the PROXY protocol v1 header is malformed: byte 7 of the line is 0x00, which is not printable ASCII text"
        );
    }

    #[tokio::test]
    async fn a_v1_line_must_end_with_crlf() {
        for (bytes, expected) in [
            (
                b"PROXY TCP4 1.2.3.4 127.0.0.1 1 2\n".to_vec(),
                "the line must end with CRLF (\\r\\n), not a line feed alone",
            ),
            (b"PROXY UNKNOWN\n".to_vec(), "not a line feed alone"),
            (
                b"PROXY TCP4 1.2.3.4\r127.0.0.1 1 2\r\n".to_vec(),
                "a carriage return comes before its end",
            ),
        ] {
            let (mut client, mut server) = tokio::io::duplex(256);
            client.write_all(&bytes).await.unwrap();
            let header = tokio::time::timeout(Duration::from_secs(5), read_proxy_header(&mut server))
                .await
                .unwrap();
            let problem = problem_of(header);
            assert!(problem.to_string().ends_with(expected), "{problem}");
            drop(client);
        }
    }

    #[tokio::test]
    async fn a_plain_client_hello_is_not_a_header() {
        let (header, _) = read_in_pieces(CLIENT_HELLO.to_vec(), 64).await;
        let problem = problem_of(header);
        assert_eq!(problem, ProxyProblem::Missing { first_byte: 0x16 });
        assert_eq!(
            problem.to_string(),
            "no PROXY protocol header: the connection starts with a TLS handshake"
        );
        assert!(!starts_proxy_header(0x16));
        assert!(starts_proxy_header(b'P') && starts_proxy_header(b'\r'));
    }

    #[test]
    fn cidrs() {
        let loopback = ProxySources::loopback();
        assert!(loopback.contains("127.0.0.1".parse().unwrap()));
        assert!(loopback.contains("127.9.9.9".parse().unwrap()));
        assert!(loopback.contains("::1".parse().unwrap()));
        assert!(loopback.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!loopback.contains("10.0.0.1".parse().unwrap()));
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8:1::5".parse().unwrap())
        );
        assert_eq!(Cidr::parse("192.0.2.1").unwrap().to_string(), "192.0.2.1/32");
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("ten/8").is_err());
        // Host bits set: refused, naming the network.
        let error = Cidr::parse("10.0.0.1/8").unwrap_err();
        assert!(
            error.contains("host bits set") && error.contains("10.0.0.0/8"),
            "{error}"
        );
        let error = Cidr::parse("2001:db8::1/32").unwrap_err();
        assert!(error.contains("2001:db8::/32"), "{error}");
        assert!(Cidr::parse("10.0.0.1/32").is_ok());
        assert!(Cidr::parse("::/0").is_ok());
    }
}
