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

/// A cursor over DER input.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Reads one TLV with the given tag; returns (whole TLV, content).
    pub(crate) fn read_raw(&mut self, tag: u8) -> Result<(&'a [u8], &'a [u8]), String> {
        let start = self.data;
        let (&found, rest) = self.data.split_first().ok_or("unexpected end of data")?;
        if found != tag {
            return Err(format!("expected tag {tag:#04x}, found {found:#04x}"));
        }
        let (&first, mut rest) = rest.split_first().ok_or("unexpected end of data")?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return Err("unsupported length encoding".into());
            }
            let (len_bytes, after) = rest.split_at_checked(count).ok_or("unexpected end of data")?;
            rest = after;
            if len_bytes.first() == Some(&0) {
                return Err("non-minimal length".into());
            }
            let len = len_bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 {
                return Err("non-minimal length".into());
            }
            len
        };
        let (content, after) = rest
            .split_at_checked(len)
            .ok_or_else(|| format!("length {len} exceeds the {} bytes left", rest.len()))?;
        let header = start.len() - rest.len();
        self.data = after;
        let whole = start.get(..header + len).ok_or("length overflow")?;
        Ok((whole, content))
    }

    /// Reads the content of one TLV with the given tag.
    pub(crate) fn read(&mut self, tag: u8) -> Result<&'a [u8], String> {
        self.read_raw(tag).map(|(_, content)| content)
    }

    /// Reads a non-negative INTEGER that fits in a u64.
    pub(crate) fn read_u64(&mut self) -> Result<u64, String> {
        let content = self.read(INTEGER)?;
        match content {
            [] => Err("empty INTEGER".into()),
            [first, ..] if first & 0x80 != 0 => Err("negative INTEGER".into()),
            [0, second, ..] if second & 0x80 == 0 => Err("non-minimal INTEGER".into()),
            _ => {
                let trimmed = match content {
                    [0, rest @ ..] if !rest.is_empty() => rest,
                    other => other,
                };
                if trimmed.len() > 8 {
                    return Err("INTEGER out of range".into());
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
    pub(crate) fn finish(&self) -> Result<(), String> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.data.len()))
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
        assert!(Reader::new(&[0x04, 0x81, 0x01, 0x00]).read(OCTET_STRING).is_err());
        // indefinite length
        assert!(Reader::new(&[0x30, 0x80, 0x00, 0x00]).read(SEQUENCE).is_err());
        // a length far beyond the input is refused without allocating
        assert!(
            Reader::new(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff])
                .read(OCTET_STRING)
                .is_err()
        );
        // non-minimal and negative integers
        assert!(Reader::new(&[0x02, 0x02, 0x00, 0x01]).read_u64().is_err());
        assert!(Reader::new(&[0x02, 0x01, 0x80]).read_u64().is_err());
        // a nine-byte magnitude
        assert!(
            Reader::new(&[0x02, 0x09, 0x01, 0, 0, 0, 0, 0, 0, 0, 0])
                .read_u64()
                .is_err()
        );
    }
}
