//! Embedded (appended) signatures, kernel style: `payload ‖ bundle ‖ footer`, where the footer is
//! the bundle's length (4 bytes, big-endian) followed by a fixed 28-byte magic. The statement's
//! length must equal the payload's, so no byte lies outside the signed payload or the parsed
//! bundle.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::SignError;
use super::bundle::{Bundle, MAX_BUNDLE_SIZE};

/// The magic that ends every file with an embedded signature.
pub const FOOTER_MAGIC: &[u8; 28] = b"\n~tessera module signature~\n";
/// The footer's length: 4 length bytes and the magic.
pub const FOOTER_LEN: usize = 32;

/// Where the parts of a file with an embedded signature lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddedLayout {
    /// Bytes of payload at the start of the file.
    pub payload_len: u64,
    /// Bytes of PEM bundle after the payload.
    pub bundle_len: u64,
}

/// The footer for a bundle of `bundle_len` bytes.
///
/// # Errors
/// [`SignError::BundleTooLarge`] when `bundle_len` exceeds [`MAX_BUNDLE_SIZE`]: no verifier
/// would accept such a file.
pub fn footer(bundle_len: usize) -> Result<[u8; FOOTER_LEN], SignError> {
    let len = u32::try_from(bundle_len)
        .ok()
        .filter(|&l| l as usize <= MAX_BUNDLE_SIZE)
        .ok_or_else(|| SignError::BundleTooLarge {
            what: "to embed".into(),
            size: bundle_len as u64,
            max: MAX_BUNDLE_SIZE as u64,
        })?;
    let mut out = [0u8; FOOTER_LEN];
    let (head, tail) = out.split_at_mut(4);
    head.copy_from_slice(&len.to_be_bytes());
    tail.copy_from_slice(FOOTER_MAGIC);
    Ok(out)
}

/// What to append to a payload to embed `bundle`: its PEM text and the footer.
///
/// # Errors
/// As [`footer`].
pub fn trailer(bundle: &Bundle) -> Result<Vec<u8>, SignError> {
    let pem = bundle.to_pem();
    let footer = footer(pem.len())?;
    let mut out = Vec::with_capacity(pem.len() + FOOTER_LEN);
    out.extend_from_slice(pem.as_bytes());
    out.extend_from_slice(&footer);
    Ok(out)
}

/// Interprets the last [`FOOTER_LEN`] bytes of a file of `file_len` bytes. `None` when the magic
/// is absent (no embedded signature).
///
/// # Errors
/// [`SignError::BundleTooLarge`] or [`SignError::MalformedBundle`] when the magic is there but
/// the stated bundle length is impossible; checked before anything is allocated.
pub fn parse_footer(file_len: u64, footer: &[u8; FOOTER_LEN], what: &str) -> Result<Option<EmbeddedLayout>, SignError> {
    let (len_bytes, magic) = footer.split_at(4);
    if magic != FOOTER_MAGIC {
        return Ok(None);
    }
    let bundle_len = u64::from(u32::from_be_bytes(<[u8; 4]>::try_from(len_bytes).unwrap_or_default()));
    if bundle_len > MAX_BUNDLE_SIZE as u64 {
        return Err(SignError::BundleTooLarge {
            what: what.into(),
            size: bundle_len,
            max: MAX_BUNDLE_SIZE as u64,
        });
    }
    let payload_len = file_len
        .checked_sub(FOOTER_LEN as u64)
        .and_then(|l| l.checked_sub(bundle_len))
        .ok_or_else(|| SignError::malformed(what, "embedded signature length exceeds the file"))?;
    Ok(Some(EmbeddedLayout {
        payload_len,
        bundle_len,
    }))
}

/// Reads an embedded signature from an open file without moving its cursor. `None` when the
/// file has no footer.
///
/// # Errors
/// As [`parse_footer`] and [`Bundle::from_pem`], and [`SignError::Io`].
pub fn read_embedded(file: &File, file_len: u64, what: &str) -> Result<Option<(Bundle, EmbeddedLayout)>, SignError> {
    let Some(footer_at) = file_len.checked_sub(FOOTER_LEN as u64) else {
        return Ok(None);
    };
    let mut footer = [0u8; FOOTER_LEN];
    file.read_exact_at(&mut footer, footer_at)
        .map_err(|e| SignError::io(what, e))?;
    let Some(layout) = parse_footer(file_len, &footer, what)? else {
        return Ok(None);
    };
    let mut pem = vec![0u8; usize::try_from(layout.bundle_len).unwrap_or(0)];
    file.read_exact_at(&mut pem, layout.payload_len)
        .map_err(|e| SignError::io(what, e))?;
    let bundle = Bundle::from_pem(&pem, &format!("{what} (embedded)"))?;
    Ok(Some((bundle, layout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_round_trips_and_absurd_lengths_are_refused() {
        let f = footer(1000).unwrap();
        assert_eq!(
            parse_footer(5000, &f, "m").unwrap(),
            Some(EmbeddedLayout {
                payload_len: 5000 - 32 - 1000,
                bundle_len: 1000
            })
        );
        assert_eq!(parse_footer(5000, &[0u8; 32], "m").unwrap(), None);
        let mut huge = f;
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            parse_footer(u64::MAX, &huge, "m"),
            Err(SignError::BundleTooLarge { size, .. }) if size == u64::from(u32::MAX)
        ));
        assert!(parse_footer(100, &f, "m").is_err());
    }

    #[test]
    fn footer_refuses_lengths_no_verifier_accepts() {
        let max = footer(MAX_BUNDLE_SIZE).unwrap();
        assert_eq!(max[..4], (MAX_BUNDLE_SIZE as u32).to_be_bytes());
        for len in [MAX_BUNDLE_SIZE + 1, u32::MAX as usize, usize::MAX] {
            assert!(matches!(
                footer(len),
                Err(SignError::BundleTooLarge { size, max, .. }) if size == len as u64 && max == MAX_BUNDLE_SIZE as u64
            ));
        }
    }
}
