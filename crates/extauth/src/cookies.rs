//! Reading the `Cookie` header, writing `Set-Cookie`, and splitting large values.
//!
//! wayguard's cookies are `HttpOnly`, `Secure` unless the app URL is `http://`, `SameSite=Lax` by
//! default, `Path=/`; a value above [`CHUNK`] bytes (a cookie-mode session with three tokens) is
//! split over `<name>.0`, `<name>.1`, ... (at most [`MAX_CHUNKS`]), which browsers accept where
//! one 8 KB cookie would be dropped.

use std::time::Duration;

use wayguard_core::login::{CookieOptions, SameSite};

/// Largest value put in one cookie.
pub const CHUNK: usize = 3800;
/// Most chunks one value may use.
pub const MAX_CHUNKS: usize = 8;

/// The cookies of a request, in header order (`name`, `value`).
pub fn parse(header: &str) -> Vec<(&str, &str)> {
    header
        .split(';')
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            let name = name.trim();
            (!name.is_empty()).then(|| (name, value.trim().trim_matches('"')))
        })
        .collect()
}

/// The first cookie called `name`.
pub fn get<'a>(cookies: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    cookies.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// A value stored whole in `name` or split over `name.0`, `name.1`, ...
pub fn get_chunked(cookies: &[(&str, &str)], name: &str) -> Option<String> {
    if let Some(v) = get(cookies, name) {
        return Some(v.to_string());
    }
    let mut out = String::new();
    for i in 0..MAX_CHUNKS {
        match get(cookies, &format!("{name}.{i}")) {
            Some(v) => out.push_str(v),
            None if i == 0 => return None,
            None => break,
        }
    }
    Some(out)
}

fn attributes(opts: &CookieOptions, max_age: Option<Duration>) -> String {
    let mut out = String::new();
    if let Some(path) = &opts.path {
        out.push_str("; Path=");
        out.push_str(path);
    }
    if let Some(domain) = &opts.domain {
        out.push_str("; Domain=");
        out.push_str(domain);
    }
    if let Some(age) = max_age {
        out.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if opts.secure {
        out.push_str("; Secure");
    }
    if opts.http_only {
        out.push_str("; HttpOnly");
    }
    out.push_str(match opts.same_site {
        SameSite::Lax => "; SameSite=Lax",
        SameSite::Strict => "; SameSite=Strict",
        SameSite::None => "; SameSite=None",
    });
    out
}

/// `Set-Cookie` values that store `value` under `name` (split when large), and expire the
/// chunk names a previous, larger value may have used.
pub fn set(
    opts: &CookieOptions,
    name: &str,
    value: &str,
    max_age: Option<Duration>,
) -> Vec<String> {
    let attrs = attributes(opts, max_age);
    if value.len() <= CHUNK {
        // A whole value is read before any chunks, so chunks of an earlier value do no harm.
        return vec![format!("{name}={value}{attrs}")];
    }
    let bytes = value.as_bytes();
    let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
    let mut out: Vec<String> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{name}.{i}={}{attrs}", String::from_utf8_lossy(c)))
        .collect();
    out.push(expire_one(opts, name));
    out.extend((chunks.len()..MAX_CHUNKS).map(|i| expire_one(opts, &format!("{name}.{i}"))));
    out
}

/// Whether `value` fits in the chunks allowed.
pub fn fits(value: &str) -> bool {
    value.len() <= CHUNK * MAX_CHUNKS
}

fn expire_one(opts: &CookieOptions, name: &str) -> String {
    format!("{name}={}", attributes(opts, Some(Duration::ZERO)))
}

/// `Set-Cookie` values that delete `name` and its chunks that `present` (the request's cookies)
/// shows.
pub fn expire(opts: &CookieOptions, name: &str, present: &[(&str, &str)]) -> Vec<String> {
    let mut out = vec![expire_one(opts, name)];
    for (n, _) in present {
        if let Some(rest) = n.strip_prefix(name).and_then(|r| r.strip_prefix('.'))
            && rest.parse::<usize>().is_ok()
        {
            out.push(expire_one(opts, n));
        }
    }
    out
}

/// The `Cookie` header without the cookies in `names` or their chunks (wayguard's
/// own cookies never reach the upstream); `None` when nothing is left.
pub fn without(header: &str, names: &[&str]) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
            !names.iter().any(|own| {
                name == *own
                    || name
                        .strip_prefix(own)
                        .and_then(|r| r.strip_prefix('.'))
                        .is_some_and(|r| r.parse::<usize>().is_ok())
            })
        })
        .filter(|pair| !pair.is_empty())
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(secure: bool) -> CookieOptions {
        CookieOptions {
            name: "s".into(),
            transaction_name: "t".into(),
            max_age: None,
            secure,
            http_only: true,
            path: Some("/".into()),
            same_site: SameSite::Lax,
            domain: None,
        }
    }

    #[test]
    fn set_cookie_carries_the_safe_attributes() {
        let v = set(&opts(true), "s", "abc", Some(Duration::from_secs(60)));
        assert_eq!(
            v,
            vec!["s=abc; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax"]
        );
        let v = set(&opts(false), "s", "abc", None);
        assert_eq!(v, vec!["s=abc; Path=/; HttpOnly; SameSite=Lax"]);
    }

    #[test]
    fn large_values_are_split_and_read_back() {
        let value = "x".repeat(CHUNK * 2 + 10);
        let set_cookies = set(&opts(true), "s", &value, None);
        assert!(set_cookies[0].starts_with("s.0="));
        assert!(set_cookies[2].starts_with("s.2="));
        assert!(
            set_cookies
                .iter()
                .any(|c| c.starts_with("s=;") && c.contains("Max-Age=0"))
        );
        let header: Vec<String> = set_cookies
            .iter()
            .filter(|c| !c.contains("Max-Age=0"))
            .map(|c| c.split(';').next().unwrap_or_default().to_string())
            .collect();
        let header = header.join("; ");
        assert_eq!(
            get_chunked(&parse(&header), "s").as_deref(),
            Some(value.as_str())
        );
        assert!(!fits(&"x".repeat(CHUNK * MAX_CHUNKS + 1)));
    }

    #[test]
    fn own_cookies_are_stripped_for_the_upstream() {
        let header = "app=1; s=secret; s.0=a; s.1=b; t=txn; sx=keep; other=2";
        assert_eq!(
            without(header, &["s", "t"]).as_deref(),
            Some("app=1; sx=keep; other=2")
        );
        assert_eq!(without("s=1; t=2", &["s", "t"]), None);
        let present = parse(header);
        assert_eq!(get(&present, "t"), Some("txn"));
        let expired = expire(&opts(true), "s", &present);
        assert_eq!(expired.len(), 3, "{expired:?}");
    }
}
