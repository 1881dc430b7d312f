//! The small, strict subset of DER that statements and bundles use: definite minimal lengths,
//! no trailing bytes, lengths checked against what is left before anything is sliced.
//! Callers re-encode what they decoded and compare, so only the canonical encoding is accepted.

/// Universal tags used by the format.
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OID: u8 = 0x06;
pub(crate) const UTF8_STRING: u8 = 0x0c;
pub(crate) const GENERALIZED_TIME: u8 = 0x18;
pub(crate) const SEQUENCE: u8 = 0x30;

/// Appends one TLV.
pub(crate) fn write(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
}

/// Appends a non-negative INTEGER in its minimal encoding.
pub(crate) fn write_u64(out: &mut Vec<u8>, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut content = Vec::with_capacity(9);
    if bytes.get(skip).is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(bytes.get(skip..).unwrap_or_default());
    write(out, INTEGER, &content);
}

/// Why DER input was refused. The messages are part of the bundle error texts
/// ([`super::SignError::MalformedBundle`]'s reason), so they stay as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DerError {
    /// The input ends inside a tag, a length or a content.
    #[error("unexpected end of data")]
    UnexpectedEnd,
    /// The next element has another tag than the one the format puts there.
    #[error("expected tag {expected:#04x}, found {found:#04x}")]
    WrongTag {
        /// The tag the format requires.
        expected: u8,
        /// The tag in the input.
        found: u8,
    },
    /// The indefinite form, or a length of more than four bytes.
    #[error("unsupported length encoding")]
    UnsupportedLength,
    /// A length in the long form that fits the short form, or with a leading zero byte.
    #[error("non-minimal length")]
    NonMinimalLength,
    /// A length larger than what is left of the input.
    #[error("length {length} exceeds the {left} bytes left")]
    LengthExceedsInput {
        /// The length the header gives.
        length: usize,
        /// The bytes left after the header.
        left: usize,
    },
    /// Header plus length does not fit the input (cannot happen after the check above).
    #[error("length overflow")]
    LengthOverflow,
    /// An INTEGER without content octets.
    #[error("empty INTEGER")]
    EmptyInteger,
    /// An INTEGER whose sign bit is set.
    #[error("negative INTEGER")]
    NegativeInteger,
    /// An INTEGER with a redundant leading zero octet.
    #[error("non-minimal INTEGER")]
    NonMinimalInteger,
    /// An INTEGER larger than `u64::MAX`.
    #[error("INTEGER out of range")]
    IntegerOutOfRange,
    /// Bytes after the last element.
    #[error("{count} trailing bytes")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

/// A cursor over DER input.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Reads one TLV with the given tag; returns (whole TLV, content).
    pub(crate) fn read_raw(&mut self, tag: u8) -> Result<(&'a [u8], &'a [u8]), DerError> {
        let start = self.data;
        let (&found, rest) = self.data.split_first().ok_or(DerError::UnexpectedEnd)?;
        if found != tag {
            return Err(DerError::WrongTag { expected: tag, found });
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError::UnexpectedEnd)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return Err(DerError::UnsupportedLength);
            }
            let (len_bytes, after) = rest.split_at_checked(count).ok_or(DerError::UnexpectedEnd)?;
            rest = after;
            if len_bytes.first() == Some(&0) {
                return Err(DerError::NonMinimalLength);
            }
            let len = len_bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 {
                return Err(DerError::NonMinimalLength);
            }
            len
        };
        let (content, after) = rest.split_at_checked(len).ok_or(DerError::LengthExceedsInput {
            length: len,
            left: rest.len(),
        })?;
        let header = start.len() - rest.len();
        self.data = after;
        let whole = start.get(..header + len).ok_or(DerError::LengthOverflow)?;
        Ok((whole, content))
    }

    /// Reads the content of one TLV with the given tag.
    pub(crate) fn read(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        self.read_raw(tag).map(|(_, content)| content)
    }

    /// Reads a non-negative INTEGER that fits in a u64.
    pub(crate) fn read_u64(&mut self) -> Result<u64, DerError> {
        let content = self.read(INTEGER)?;
        match content {
            [] => Err(DerError::EmptyInteger),
            [first, ..] if first & 0x80 != 0 => Err(DerError::NegativeInteger),
            [0, second, ..] if second & 0x80 == 0 => Err(DerError::NonMinimalInteger),
            _ => {
                let trimmed = match content {
                    [0, rest @ ..] if !rest.is_empty() => rest,
                    other => other,
                };
                if trimmed.len() > 8 {
                    return Err(DerError::IntegerOutOfRange);
                }
                Ok(trimmed.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
            }
        }
    }

    /// Peeks at the next tag.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.data.first().copied()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Fails unless all input was consumed.
    pub(crate) fn finish(&self) -> Result<(), DerError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingBytes { count: self.data.len() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_integers_round_trip_minimally() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 65536] {
            let content = vec![7u8; len];
            let mut out = Vec::new();
            write(&mut out, OCTET_STRING, &content);
            let mut r = Reader::new(&out);
            assert_eq!(r.read(OCTET_STRING).unwrap(), &content[..]);
            r.finish().unwrap();
        }
        for v in [0u64, 1, 127, 128, 255, 256, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, v);
            assert_eq!(Reader::new(&out).read_u64().unwrap(), v);
        }
    }

    #[test]
    fn non_canonical_and_overlong_inputs_are_refused() {
        // long form for a short length
        assert_eq!(
            Reader::new(&[0x04, 0x81, 0x01, 0x00]).read(OCTET_STRING),
            Err(DerError::NonMinimalLength)
        );
        assert_eq!(
            Reader::new(&[0x04, 0x82, 0x00, 0x80]).read(OCTET_STRING),
            Err(DerError::NonMinimalLength)
        );
        // indefinite length, and lengths of more than four bytes
        assert_eq!(
            Reader::new(&[0x30, 0x80, 0x00, 0x00]).read(SEQUENCE),
            Err(DerError::UnsupportedLength)
        );
        assert_eq!(
            Reader::new(&[0x04, 0x85, 1, 0, 0, 0, 0]).read(OCTET_STRING),
            Err(DerError::UnsupportedLength)
        );
        // a length far beyond the input is refused without allocating
        assert_eq!(
            Reader::new(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff]).read(OCTET_STRING),
            Err(DerError::LengthExceedsInput {
                length: 0xffff_ffff,
                left: 0
            })
        );
        // non-minimal, negative, empty integers
        assert_eq!(
            Reader::new(&[0x02, 0x02, 0x00, 0x01]).read_u64(),
            Err(DerError::NonMinimalInteger)
        );
        assert_eq!(
            Reader::new(&[0x02, 0x01, 0x80]).read_u64(),
            Err(DerError::NegativeInteger)
        );
        assert_eq!(Reader::new(&[0x02, 0x00]).read_u64(), Err(DerError::EmptyInteger));
        // a nine-byte magnitude
        assert_eq!(
            Reader::new(&[0x02, 0x09, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]).read_u64(),
            Err(DerError::IntegerOutOfRange)
        );
        // truncation, another tag, trailing bytes
        assert_eq!(Reader::new(&[]).read(SEQUENCE), Err(DerError::UnexpectedEnd));
        assert_eq!(Reader::new(&[0x30]).read(SEQUENCE), Err(DerError::UnexpectedEnd));
        assert_eq!(
            Reader::new(&[0x04, 0x82, 0x01]).read(OCTET_STRING),
            Err(DerError::UnexpectedEnd)
        );
        assert_eq!(
            Reader::new(&[0x04, 0x00]).read(SEQUENCE),
            Err(DerError::WrongTag {
                expected: SEQUENCE,
                found: OCTET_STRING
            })
        );
        let mut r = Reader::new(&[0x04, 0x00, 0x05, 0x00]);
        r.read(OCTET_STRING).unwrap();
        assert_eq!(r.finish(), Err(DerError::TrailingBytes { count: 2 }));
    }

    #[test]
    fn messages_are_those_of_the_bundle_errors() {
        // These texts reach users as `… is not a valid signature bundle: <message>`.
        let cases: [(DerError, &str); 11] = [
            (DerError::UnexpectedEnd, "unexpected end of data"),
            (
                DerError::WrongTag {
                    expected: SEQUENCE,
                    found: OCTET_STRING,
                },
                "expected tag 0x30, found 0x04",
            ),
            (DerError::UnsupportedLength, "unsupported length encoding"),
            (DerError::NonMinimalLength, "non-minimal length"),
            (
                DerError::LengthExceedsInput { length: 300, left: 7 },
                "length 300 exceeds the 7 bytes left",
            ),
            (DerError::LengthOverflow, "length overflow"),
            (DerError::EmptyInteger, "empty INTEGER"),
            (DerError::NegativeInteger, "negative INTEGER"),
            (DerError::NonMinimalInteger, "non-minimal INTEGER"),
            (DerError::IntegerOutOfRange, "INTEGER out of range"),
            (DerError::TrailingBytes { count: 3 }, "3 trailing bytes"),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }
}
