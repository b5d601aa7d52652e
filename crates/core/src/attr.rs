//! Parsing of Istio attribute syntax shared by validation and translation.

/// Splits a request principal `<iss>/<sub>` at the **last** `/` (Istio's `extendedPrincipal`).
/// Returns `(iss, sub, found)`; without a `/` the whole value is the issuer and `found` is false.
pub fn split_request_principal(value: &str) -> (&str, &str, bool) {
    match value.rfind('/') {
        Some(i) => (&value[..i], &value[i + 1..], true),
        None => (value, "", false),
    }
}

/// `[NAME]` -> `NAME` (Istio `extractNameInBrackets`).
pub fn extract_name_in_brackets(s: &str) -> Result<&str, String> {
    s.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(|| format!("expecting format [<NAME>], but found {s}"))
}

/// `[a][b][c]` -> `["a","b","c"]` (Istio `extractNameInNestedBrackets`): when the string is not a
/// clean sequence of bracketed names it falls back to one name in one pair of brackets.
pub fn extract_name_in_nested_brackets(s: &str) -> Result<Vec<String>, String> {
    let bytes = s.as_bytes();
    let find_end = |begin: usize| -> Option<usize> {
        if begin >= bytes.len() || bytes[begin] != b'[' {
            return None;
        }
        for (i, b) in bytes.iter().enumerate().skip(begin + 1) {
            match b {
                b'[' => return None,
                b']' => return Some(i),
                _ => {}
            }
        }
        None
    };
    let mut claims = Vec::new();
    let mut begin = 0;
    while begin < bytes.len() {
        match find_end(begin) {
            Some(end) => {
                claims.push(s[begin + 1..end].to_string());
                begin = end + 1;
            }
            None => return extract_name_in_brackets(s).map(|n| vec![n.to_string()]),
        }
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases of Istio `TestExtractNameInNestedBrackets` (pilot/pkg/security/authz/model/util_test.go).
    #[test]
    fn nested_brackets_like_istio() {
        let ok: &[(&str, &[&str])] = &[
            ("[good]", &["good"]),
            ("[good][abc][xyz]", &["good", "abc", "xyz"]),
            ("[]", &[""]),
            ("[[good]", &["[good"]),
            ("[good]]", &["good]"]),
            ("[[good]]", &["[good]"]),
            ("[a]b]", &["a]b"]),
        ];
        for (input, want) in ok {
            assert_eq!(
                extract_name_in_nested_brackets(input).as_deref(),
                Ok(*want)
                    .map(|w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .as_deref(),
                "{input}"
            );
        }
        for bad in ["x[bad]", "[bad", "bad]", "bad", "[a]b"] {
            assert!(extract_name_in_nested_brackets(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn principals_split_at_the_last_slash() {
        assert_eq!(split_request_principal("foo/bar"), ("foo", "bar", true));
        assert_eq!(
            split_request_principal("https://idp/realms/x/*"),
            ("https://idp/realms/x", "*", true)
        );
        assert_eq!(
            split_request_principal("https://example.com*"),
            ("https:/", "example.com*", true)
        );
        assert_eq!(split_request_principal("foo"), ("foo", "", false));
    }
}
