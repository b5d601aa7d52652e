//! Where the browser may go after login: only a path of the application's own origin.
//!
//! The target is the `:path` of the request that started the login, kept in the sealed
//! transaction (never a `rd=`/`redirect_uri` parameter a third party could set). It is checked
//! again anyway, because `:path` comes from the client (AUTH-FLOWS.md 4.3 item 1, the
//! oauth2-proxy and mod_auth_openidc open-redirect CVEs): it must start with one `/`, not `//`
//! or `/\`; no backslash, whitespace or control byte anywhere, raw or percent-encoded (checked
//! again after one and two rounds of percent-decoding); at most [`MAX_TARGET`] bytes. Anything
//! else becomes `/`.

/// Longest post-login target kept.
pub const MAX_TARGET: usize = 2048;

fn decode_once(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn plain_path(s: &str) -> bool {
    s.starts_with('/')
        && !s.starts_with("//")
        && !s.contains('\\')
        && !s
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\u{feff}')
}

/// `target` if it is a safe same-origin path (see the module docs), else `/`.
pub fn safe_target(target: &str) -> String {
    if target.len() > MAX_TARGET || !plain_path(target) {
        return "/".into();
    }
    let mut current = target.to_string();
    for _ in 0..2 {
        match decode_once(&current) {
            Some(decoded) if plain_path(&decoded) => current = decoded,
            _ => return "/".into(),
        }
    }
    target.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The open-redirect corpus of AUTH-FLOWS.md 4.3 item 1: none may leave the origin.
    #[test]
    fn the_open_redirect_corpus_never_leaves_the_origin() {
        let corpus = [
            "//evil.example",
            "//evil.example/path",
            "/\\evil.example",
            "\\\\evil.example",
            "/%2F%2Fevil.example",
            "/%2fevil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%255Cevil.example",
            "/%252F%252Fevil.example",
            "https://evil.example",
            "http:evil.example",
            "evil.example",
            "javascript:alert(1)",
            "/%09/evil.example",
            "/%0a/evil.example",
            "/%0d/evil.example",
            "/%0b/evil.example",
            "/\t/evil.example",
            "/ /evil.example",
            "/%20/evil.example",
            "/\u{0}/x",
            "/%00",
            "/%E2%80%A8/evil.example",
            "",
        ];
        for t in corpus {
            assert_eq!(safe_target(t), "/", "{t:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_TARGET));
        assert_eq!(safe_target(&long), "/");
    }

    #[test]
    fn ordinary_paths_and_queries_are_kept() {
        for t in [
            "/",
            "/orders?id=7&sort=desc",
            "/a/b/c",
            "/search?q=%2Fetc",
            "/caf%C3%A9",
            "/x#frag",
        ] {
            assert_eq!(safe_target(t), t);
        }
    }
}
