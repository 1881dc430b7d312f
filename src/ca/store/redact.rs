//! Connection strings without their passwords, for messages and logs.
//!
//! A password can hide in many places of what a user gives `--db` (or `TESSERA_DB`), and the
//! string may be malformed, so [`redact`] does not parse it one way: it masks the union of what
//! every reading would take for a password, and shows the rest as given. Three readings:
//! - a URL's user information (`postgres://USER:PASSWORD@HOST/DB`), taken as broadly as the
//!   sloppiest parser would: from the first `:` after `://` (or, with no `://`, the first `:` of
//!   the string) up to the *last* `@`. That covers tokio-postgres and libpq (which end the user
//!   information at the first `@`), RFC 3986 (which ends it at the authority's last `@`), and
//!   passwords that hold an unencoded `@`, `:`, `/`, `?`, `#` or white space;
//! - a URL query parameter whose name, percent-decoded, contains `password` (any case:
//!   `password`, `sslpassword`, `PASS%57ORD`): its value up to the next `&` that starts a
//!   parameter libpq knows (`&sslmode=`), else to the end, so a password holding a raw `&` is
//!   masked whole;
//! - outside URLs, a keyword/value parameter (libpq's `keyword = value` strings, as
//!   tokio-postgres reads them: any white space, values quoted with `'` or not, `\` escaping
//!   the next character, no white space needed after a quoted value) whose keyword contains
//!   `password`: its value, and what follows up to the next `KNOWN =` (so `password=pa ss`, an
//!   unescaped space, is masked whole).
//!
//! What is masked becomes `***`. Masking more than a password (a port, a host) in a malformed
//! string is the price of never showing one.

use std::ops::Range;

/// The connection parameters libpq knows (PostgreSQL 17, §32.1.2): where a password that
/// may run on (an unescaped space, a raw `&`) is taken to end.
const KNOWN_PARAMETERS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "require_auth",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "sslnegotiation",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslcertmode",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
];

/// What a masked part is shown as.
const MASK: &str = "***";

/// `text` (a PostgreSQL URL, a keyword/value connection string, or anything a user gave as
/// one) with every part that any reading takes for a password replaced by `***` (see the
/// module documentation). Never panics.
pub(crate) fn redact(text: &str) -> String {
    let mut masks = Vec::new();
    user_information(text, &mut masks);
    query_parameters(text, &mut masks);
    if !is_url(text) {
        keyword_values(text, &mut masks);
    }
    apply(text, masks)
}

/// Whether a name (as written, or percent-decoded) names a password.
fn names_a_password(name: &str) -> bool {
    name.to_ascii_lowercase().contains("password")
}

/// `SCHEME://…`, white space before it allowed.
fn is_url(text: &str) -> bool {
    let text = text.trim_start();
    let Some((scheme, _)) = text.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The password of a URL's user information: from the first `:` to the last `@` of what
/// follows the first `://` (of the whole text when there is none). With no `@` at all, a URL
/// whose "port" is no port (`postgres://USER:PASSWORD`, the host left out) is masked from that
/// `:` to the end. When a `:` comes before the first `://`, that `://` may be inside a password
/// (`postgres:/USER:P://@HOST`, `USER:P://@HOST`): the whole text is read that way too.
fn user_information(text: &str, masks: &mut Vec<Range<usize>>) {
    let separator = text.find("://");
    user_information_after(text, separator.map_or(0, |at| at + 3), masks);
    if separator.is_some_and(|at| text.find(':').is_some_and(|colon| colon < at)) {
        user_information_after(text, 0, masks);
    }
}

/// [`user_information`] of what follows `text[..start]`.
fn user_information_after(text: &str, start: usize, masks: &mut Vec<Range<usize>>) {
    let Some(body) = text.get(start..) else {
        return;
    };
    match (body.find(':'), body.rfind('@')) {
        (Some(colon), Some(at)) if colon < at => masks.push(start + colon + 1..start + at),
        (Some(_), None) if start > 0 || !text.contains('=') => {
            if let Some(colon) = not_a_port(body) {
                masks.push(start + colon + 1..text.len());
            }
        }
        _ => {}
    }
}

/// In `body` (what follows `://`, no `@` in it), the offset of the first `:` of the authority
/// (hosts up to the first `/` or `?`, comma-separated, IPv6 ones in brackets) not followed by a
/// port: nothing, or digits up to 65535.
fn not_a_port(body: &str) -> Option<usize> {
    let authority = &body[..body.find(['/', '?']).unwrap_or(body.len())];
    let mut offset = 0;
    for chunk in authority.split(',') {
        let host_end = match chunk.strip_prefix('[') {
            Some(rest) => rest.find(']').map_or(chunk.len(), |close| close + 2),
            None => 0,
        };
        if let Some(colon) = chunk.get(host_end..).and_then(|rest| rest.find(':')) {
            let colon = host_end + colon;
            let port = &chunk[colon + 1..];
            let is_port = port.is_empty()
                || (port.len() <= 5
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && port.parse::<u32>().is_ok_and(|p| p <= 65_535));
            if !is_port {
                return Some(offset + colon);
            }
        }
        offset += chunk.len() + 1;
    }
    None
}

/// The values of query parameters that name a password: a name starts after any `?` or `&`
/// and ends at the next `=`.
fn query_parameters(text: &str, masks: &mut Vec<Range<usize>>) {
    for (separator, _) in text.match_indices(['?', '&']) {
        let name_start = separator + 1;
        let Some(rest) = text.get(name_start..) else {
            continue;
        };
        let Some(equals) = rest.find(['=', '&', '?']) else {
            continue;
        };
        if !rest[equals..].starts_with('=') {
            // Another separator first: the name starting there is looked at on its own.
            continue;
        }
        if !names_a_password(&percent_decoded(&rest[..equals])) {
            continue;
        }
        let value_start = name_start + equals + 1;
        let mut end = value_start;
        loop {
            match text.get(end..).and_then(|rest| rest.find('&')) {
                None => {
                    end = text.len();
                    break;
                }
                Some(amp) => {
                    end += amp;
                    if starts_with_known_parameter(&text[end + 1..], false) {
                        break;
                    }
                    end += 1;
                }
            }
        }
        masks.push(value_start..end);
    }
}

/// Whether `text` starts with `KNOWN=` (`KNOWN =` too when `spaces`).
fn starts_with_known_parameter(text: &str, spaces: bool) -> bool {
    KNOWN_PARAMETERS.iter().any(|name| {
        text.strip_prefix(name).is_some_and(|rest| {
            let rest = if spaces { rest.trim_start() } else { rest };
            rest.starts_with('=')
        })
    })
}

/// Percent-decoding for comparing parameter names (invalid escapes stay as written).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|h| char::from(*h).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The values of keyword/value parameters whose keyword names a password, read as
/// tokio-postgres reads a connection string, but going on after anything it would refuse.
fn keyword_values(text: &str, masks: &mut Vec<Range<usize>>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let offset = |i: usize| chars.get(i).map_or(text.len(), |&(offset, _)| offset);
    let skip_space = |mut i: usize| {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = 0;
    loop {
        i = skip_space(i);
        if i >= chars.len() {
            break;
        }
        let key_start = i;
        while at(i).is_some_and(|c| !c.is_whitespace() && c != '=') {
            i += 1;
        }
        if i == key_start {
            // A stray `=`.
            i += 1;
            continue;
        }
        let key = text.get(offset(key_start)..offset(i)).unwrap_or("");
        i = skip_space(i);
        if at(i) != Some('=') {
            // Not a parameter: what follows is read afresh.
            continue;
        }
        i = skip_space(i + 1);
        let value_start = offset(i);
        if at(i) == Some('\'') {
            i += 1;
            while let Some(c) = at(i) {
                i += if c == '\\' { 2 } else { 1 };
                if c == '\'' {
                    break;
                }
            }
        } else {
            while let Some(c) = at(i).filter(|c| !c.is_whitespace()) {
                i += if c == '\\' { 2 } else { 1 };
            }
        }
        i = i.min(chars.len());
        if !names_a_password(key) {
            continue;
        }
        // Words that are no `KNOWN =` after the value are taken as more of it.
        let mut end = i;
        loop {
            let next = skip_space(end);
            if next >= chars.len() {
                end = chars.len();
                break;
            }
            if starts_with_known_parameter(text.get(offset(next)..).unwrap_or(""), true) {
                break;
            }
            end = next;
            while let Some(c) = at(end).filter(|c| !c.is_whitespace()) {
                end += if c == '\\' { 2 } else { 1 };
            }
            end = end.min(chars.len());
        }
        masks.push(value_start..offset(end));
        i = end;
    }
}

/// `text` with each run of masked bytes (overlapping ranges merged) replaced by [`MASK`].
fn apply(text: &str, mut masks: Vec<Range<usize>>) -> String {
    masks.sort_by_key(|range| range.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(masks.len());
    for range in masks {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut shown = 0;
    for range in merged {
        // Every offset is a character boundary; were one not, its text is masked too.
        out.push_str(text.get(shown..range.start).unwrap_or(MASK));
        out.push_str(MASK);
        shown = range.end;
    }
    out.push_str(text.get(shown..).unwrap_or(MASK));
    out
}

/// A message about a connection string (a parser's error) without any name it quotes in
/// backticks (`unknown option `x``) unless the name is one libpq knows or a parameter name the
/// redacted string `shown` shows: a misread password (`?password=a&b=c`) is not quoted back.
pub(crate) fn quoted_names_shown(message: &str, shown: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let mut quoted = true;
    for part in parts {
        if quoted {
            let visible = KNOWN_PARAMETERS.contains(&part)
                || (!part.is_empty() && (shown.contains(&format!("?{part}=")) || shown.contains(&format!("&{part}="))));
            out.push('`');
            out.push_str(if visible { part } else { "…" });
        } else {
            out.push('`');
            out.push_str(part);
        }
        quoted = !quoted;
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn every_form_of_password_is_masked() {
        for (given, shown) in [
            // URL user information.
            (
                "postgres://ca:S3cret@db.example:5432/ca",
                "postgres://ca:***@db.example:5432/ca",
            ),
            ("postgres://ca@127.0.0.1:5/x", "postgres://ca@127.0.0.1:5/x"),
            ("postgres://ca:S3%40c%3Aret@h/x", "postgres://ca:***@h/x"),
            ("postgres://ca:S3@cr@et@h/x", "postgres://ca:***@h/x"),
            ("postgres://ca:S3:cr:et@h/x", "postgres://ca:***@h/x"),
            ("postgres://ca:S3/cr/et@h:5432/x", "postgres://ca:***@h:5432/x"),
            ("postgres://ca:S3/c@r?e#t@h/x", "postgres://ca:***@h/x"),
            ("postgres://ca:S3 cr et@h/x", "postgres://ca:***@h/x"),
            ("postgresql://ca:@h/x", "postgresql://ca:***@h/x"),
            ("POSTGRES://ca:S3cret@h/x", "POSTGRES://ca:***@h/x"),
            ("mysql://ca:S3cret@h/x", "mysql://ca:***@h/x"),
            ("postgres://[::1]:5432/x", "postgres://[::1]:5432/x"),
            ("postgres://ca@[::1]:5432/x", "postgres://ca@[::1]:5432/x"),
            // Query parameters.
            (
                "postgres://ca@h:1/x?password=S3cret",
                "postgres://ca@h:1/x?password=***",
            ),
            (
                "postgresql://ca@h/x?sslmode=disable&PASSWORD=S3cret&application_name=a",
                "postgresql://ca@h/x?sslmode=disable&PASSWORD=***&application_name=a",
            ),
            (
                "postgres://ca@h/x?pass%77ord=S3cret",
                "postgres://ca@h/x?pass%77ord=***",
            ),
            (
                "postgres://ca@h/x?sslpassword=S3cret",
                "postgres://ca@h/x?sslpassword=***",
            ),
            (
                "postgres://ca@h/x?password=S3&cr=et&sslmode=require",
                "postgres://ca@h/x?password=***&sslmode=require",
            ),
            ("postgres://ca@h/x?password=S3 cr et", "postgres://ca@h/x?password=***"),
            ("postgres://ca@h/x?password=S3%26cret", "postgres://ca@h/x?password=***"),
            (
                "postgres://ca:S3cret@h/x?password=S3cret",
                "postgres://ca:***@h/x?password=***",
            ),
            // Keyword/value strings.
            ("host=h password=S3cret dbname=ca", "host=h password=*** dbname=ca"),
            (
                "host=h password = 'S3 \\' cret' dbname=ca",
                "host=h password = *** dbname=ca",
            ),
            ("host=h password='S3 cr et'dbname=ca", "host=h password=***dbname=ca"),
            (
                "host=h password=S3\\ cr\\ et dbname=ca",
                "host=h password=*** dbname=ca",
            ),
            ("host=h password=S3 cr et dbname=ca", "host=h password=*** dbname=ca"),
            (
                "host=h\u{a0}password=S3cret\u{3000}dbname=ca",
                "host=h\u{a0}password=***\u{3000}dbname=ca",
            ),
            ("host=h\npassword\n=\nS3cret", "host=h\npassword\n=\n***"),
            ("dbname='x'password=S3cret", "dbname='x'password=***"),
            ("password=S3cret", "password=***"),
            ("password='unterminated S3cret", "password=***"),
            ("host=h 'junk password=S3cret", "host=h 'junk password=***"),
            ("host=h PassWord=S3cret", "host=h PassWord=***"),
            ("host=h sslpassword=S3cret", "host=h sslpassword=***"),
            ("host=h password=", "host=h password=***"),
            ("password= dbname=S3cret", "password= ***"),
            ("dbname=postgres://ca:S3cret@h/x", "dbname=postgres://ca:***@h/x"),
            // Malformed URLs.
            ("postgres:/ca:S3cret@h/x", "postgres:***@h/x"),
            ("postgres:ca:S3cret@h/x", "postgres:***@h/x"),
            ("ca:S3cret@h/x", "ca:***@h/x"),
            ("postgres://ca:S3cret", "postgres://ca:***"),
            ("postgres://ca:S3/cr?et", "postgres://ca:***"),
            ("postgres://ca:123456", "postgres://ca:***"),
            ("ca:S3cret", "ca:***"),
            (
                "postgres://h:5432,h2:5433,[::1]:5434/x",
                "postgres://h:5432,h2:5433,[::1]:5434/x",
            ),
            ("postgres://h:/x", "postgres://h:/x"),
            ("postgres://h1,h2:S3cret/x", "postgres://h1,h2:***"),
            ("postgres://[::1]:S3cret/x", "postgres://[::1]:***"),
            ("postgres:/ca@h/x?password=S3 cret", "postgres:***@h/x?password=***"),
        ] {
            assert_eq!(redact(given), shown, "{given}");
        }
        // A `://` inside the password is not the scheme's.
        assert!(!redact("postgres:/a:S3://@h/d").contains("S3"));
        assert!(!redact("postgres://a:S3://@h/d").contains("S3"));
        assert!(!redact("a_b:S3://x@h/d").contains("S3"));
        assert!(!redact("postgres:/a:X S3://@h/d").contains("S3"));
        // Without an `@`, "ca:S3cret" is a host and port, not user information; the
        // connection attempt names it, and so may its messages.
        assert!(!redact("postgres://ca:S3cret@").contains("S3"));
        // Words that merely contain "password" as a value are left alone.
        assert_eq!(
            redact("host=h application_name=nopassword"),
            "host=h application_name=nopassword"
        );
    }

    #[test]
    fn parser_messages_quote_only_names_that_are_shown() {
        assert_eq!(
            quoted_names_shown(
                "invalid connection string: unknown option `cr`",
                "postgres://h/x?password=***"
            ),
            "invalid connection string: unknown option `…`"
        );
        assert_eq!(
            quoted_names_shown("unknown option `sslmod`", "postgres://h/x?sslmod=require"),
            "unknown option `sslmod`"
        );
        assert_eq!(
            quoted_names_shown("invalid value for option `port`", "postgres://h:x/x"),
            "invalid value for option `port`"
        );
        assert_eq!(quoted_names_shown("no quotes", ""), "no quotes");
    }

    /// Characters a password is made of here: none of them appears in the rest of the
    /// generated strings, so any of them in the output is a leak.
    const SECRET_LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ\u{e9}\u{20ac}";

    fn password() -> impl Strategy<Value = String> {
        // A secret letter first, then letters and every character that ends something in a
        // connection string.
        let letter = proptest::sample::select(SECRET_LETTERS.chars().collect::<Vec<_>>());
        let any = proptest::sample::select(
            SECRET_LETTERS
                .chars()
                .chain("@:/?#&=%+' \\\"\t;,[]".chars())
                .collect::<Vec<_>>(),
        );
        (letter, proptest::collection::vec(any, 0..16))
            .prop_map(|(first, rest)| std::iter::once(first).chain(rest).collect())
    }

    fn encode_all(text: &str) -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    fn quoted(text: &str) -> String {
        format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
    }

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            if c.is_whitespace() || c == '\\' || c == '\'' {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    fn leaks(output: &str) -> bool {
        output.chars().any(|c| SECRET_LETTERS.contains(c))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// In every form a password can take, no character of it reaches the output; where
        /// the form is well-formed, tokio-postgres reads exactly this password from it (so the
        /// strings are the ones a user would give).
        #[test]
        fn no_password_character_is_ever_shown(
            pw in password(),
            user in "[a-z]{1,8}",
            host in "[a-z]{1,8}(\\.[a-z]{1,5})?",
            port in 1u16..,
            db in "[a-z]{1,8}",
            form in 0usize..13,
        ) {
            let (text, exact) = match form {
                0 => (format!("postgres://{user}:{pw}@{host}:{port}/{db}"), false),
                1 => (format!("postgresql://{user}:{}@{host}/{db}?sslmode=disable", encode_all(&pw)), true),
                2 => (format!("postgres://{user}@{host}/{db}?sslmode=disable&password={}&application_name=a", encode_all(&pw)), true),
                3 => (format!("postgres://{user}@{host}/{db}?password={pw}&sslmode=disable"), false),
                4 => (format!("postgres://{user}@{host}/{db}?application_name=a&password={pw}"), false),
                5 => (format!("host={host} port={port} password={} dbname={db}", quoted(&pw)), true),
                6 => (format!("host={host} password={} dbname={db}", escaped(&pw)), true),
                7 => (format!("host={host} password = {} user={user}", quoted(&pw)), true),
                8 => (format!("host={host} password={pw} dbname={db}"), false),
                9 => (format!("postgres:/{user}:{pw}@{host}/{db}"), false),
                10 => (format!("{user}:{pw}@{host}/{db}"), false),
                // With no host, an `@` in the password would make the rest a host.
                11 => (format!("postgres://{user}:{}", pw.replace('@', "%40")), false),
                _ => (format!("postgres://{user}:{pw}@{host}:{port}/{db}?password={pw}"), false),
            };
            let output = redact(&text);
            prop_assert!(!leaks(&output), "{text:?} → {output:?}");
            if exact {
                let config: ::postgres::Config = text.parse().map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
                prop_assert_eq!(config.get_password(), Some(pw.as_bytes()), "{:?}", text);
            }
        }

        /// Anything at all: no panic, and a password tokio-postgres reads from it (made only
        /// of secret letters, so nothing else can show them) does not reach the output.
        #[test]
        fn any_text_is_redacted_without_a_panic(
            text in "(postgres(ql)?://|host=|password|PASSWORD|[a-z]|[A-Z\u{e9}]|[:@/?&=%' \\\\\u{a0}])*",
        ) {
            let output = redact(&text);
            if let Ok(config) = text.parse::<::postgres::Config>()
                && let Some(pw) = config.get_password()
                && !pw.is_empty()
                && let Ok(pw) = std::str::from_utf8(pw)
                && pw.chars().all(|c| SECRET_LETTERS.contains(c))
                && !text.replacen(pw, "", 1).contains(pw)
            {
                prop_assert!(!output.contains(pw), "{text:?} → {output:?}");
            }
        }

        #[test]
        fn any_string_at_all_is_redacted_without_a_panic(text in any::<String>()) {
            let _ = redact(&text);
        }
    }
}
