//! Untrusted text made safe to show: what every message that quotes a certificate subject, a
//! module name or a file name passes through before it reaches a terminal or a log.

/// Escapes what must not reach a terminal raw: error messages and reports quote untrusted text
/// (certificate subjects, module names, file names), which must not be able to move the cursor,
/// rewrite the screen, reorder the line or hide part of it.
///
/// Escaped as `\u{hex}`: control characters (C0, DEL, C1), Unicode bidirectional controls
/// (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), line and paragraph separators
/// (U+2028, U+2029) and the other invisible format characters (general category Cf, such as
/// U+200B zero width space, U+2060 word joiner, U+FEFF, tag characters), plus the invisible
/// Hangul fillers. A backslash that starts such an escape in the input is itself escaped
/// (`\\u{`), so an escape in the output always stands for a real character. Everything else,
/// including letters in every script, is kept.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else if c == '\\' && chars.peek() == Some(&'u') {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that act on the display instead of showing as themselves (see [`printable`]).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            u32::from(c),
            0x00AD                      // soft hyphen
            | 0x0600..=0x0605           // Arabic number signs
            | 0x061C                    // Arabic letter mark (bidi)
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F..=0x1160           // Hangul fillers
            | 0x180E                    // Mongolian vowel separator
            | 0x200B..=0x200F           // zero width space/joiners, LRM, RLM (bidi)
            | 0x2028..=0x2029           // line and paragraph separators
            | 0x202A..=0x202E           // bidi embeddings and overrides
            | 0x2060..=0x206F           // word joiner, invisible operators, bidi isolates
            | 0x3164                    // Hangul filler
            | 0xFE00..=0xFE0F           // variation selectors
            | 0xFEFF                    // zero width no-break space (BOM)
            | 0xFFA0                    // halfwidth Hangul filler
            | 0xFFF9..=0xFFFB           // interlinear annotation
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF         // tags, variation selectors supplement
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        assert_eq!(
            printable("CN=evil\u{1b}[2K\rmodule.so: OK"),
            "CN=evil\\u{1b}[2K\\u{d}module.so: OK"
        );
        assert_eq!(printable("a\u{7f}b\u{85}c\nd\te"), "a\\u{7f}b\\u{85}c\\u{a}d\\u{9}e");
        assert_eq!(
            printable("plain text, ünïcode, 日本語, עברית"),
            "plain text, ünïcode, 日本語, עברית"
        );
    }

    #[test]
    fn bidi_controls_are_escaped() {
        // A module name that would display as "invoice_txt.exe" reversed into "exe.txt_…".
        assert_eq!(printable("report\u{202e}fdp.exe"), "report\\u{202e}fdp.exe");
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
            '\u{200e}', '\u{200f}', '\u{061c}',
        ] {
            let shown = printable(&format!("a{c}b"));
            assert_eq!(shown, format!("a\\u{{{:x}}}b", u32::from(c)));
            assert!(shown.chars().all(|s| !hidden(s)), "{shown}");
        }
    }

    #[test]
    fn invisible_format_characters_are_escaped() {
        for c in [
            '\u{200b}',
            '\u{2060}',
            '\u{feff}',
            '\u{ad}',
            '\u{2028}',
            '\u{2029}',
            '\u{e0041}',
            '\u{3164}',
        ] {
            assert_eq!(printable(&format!("x{c}")), format!("x\\u{{{:x}}}", u32::from(c)));
        }
    }

    #[test]
    fn a_literal_escape_cannot_pass_for_a_real_one() {
        assert_eq!(printable("a\\u{202e}b"), "a\\\\u{202e}b");
        assert_eq!(printable("C:\\dir\\x"), "C:\\dir\\x");
    }
}
