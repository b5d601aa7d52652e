//! Checks on individual values, shared by the validators (Istio `pkg/config/security/security.go`).

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses an IP or CIDR the way Istio's `ValidateIPs` accepts them (a bare IP is a /32 or /128).
pub fn parse_cidr_or_ip(value: &str) -> Result<IpNet, String> {
    if value.contains('/') {
        value
            .parse::<IpNet>()
            .map_err(|e| format!("bad CIDR range ({value}): {e}"))
    } else {
        value
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("bad IP address ({value})"))
    }
}

/// Checks a port string (`0..=65535`), Istio's `ValidatePorts`.
pub fn check_port(value: &str) -> Result<u16, String> {
    match value.parse::<u32>() {
        Ok(p) if p <= 65535 => Ok(p as u16),
        Ok(_) => Err(format!(
            "bad port ({value}): port must be in range 0..65535"
        )),
        Err(_) => Err(format!(
            "bad port ({value}): strconv.ParseUint: parsing \"{value}\": invalid syntax"
        )),
    }
}

/// Removes a leading `spiffe://` (wayguard accepts both forms for `principals`).
pub fn strip_spiffe_prefix(value: &str) -> Option<&str> {
    value.strip_prefix("spiffe://")
}

/// Why a path with `{*}`/`{**}` templates is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplateError(pub String);

const MATCH_ONE: &str = "{*}";
const MATCH_ANY: &str = "{**}";

/// Whether a path uses `{*}` or `{**}`.
pub fn contains_path_template(path: &str) -> bool {
    path.contains(MATCH_ONE) || path.contains(MATCH_ANY)
}

fn is_valid_literal(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~%!$&'()+,;:@=".contains(c))
}

/// Istio's `CheckValidPathTemplate` for one path of field `key` (`Paths` / `NotPaths`).
pub fn check_path_template(key: &str, path: &str) -> Result<(), PathTemplateError> {
    let has_template = contains_path_template(path);
    let trimmed = path.trim_matches('/');
    let mut found_any = false;
    for segment in trimmed.split('/') {
        if segment == MATCH_ONE && !found_any {
            continue;
        }
        if segment == MATCH_ANY && !found_any {
            found_any = true;
            continue;
        }
        if (segment == MATCH_ANY || segment == MATCH_ONE) && found_any {
            return Err(PathTemplateError(format!(
                "invalid or unsupported path {trimmed}, found in {key}. {{**}} is not the last operator"
            )));
        }
        if segment.contains(['{', '}']) {
            return Err(PathTemplateError(format!(
                "invalid or unsupported path {trimmed}, found in {key}. Contains '{{' or '}}' beyond a supported path template"
            )));
        }
        if has_template && !is_valid_literal(segment) {
            return Err(PathTemplateError(format!(
                "invalid or unsupported path {trimmed}, found in {key}. Contains segment {segment} with invalid string literal"
            )));
        }
    }
    Ok(())
}

/// Istio's service account checks (`sa` or `ns/sa`, no wildcard, at most 320 characters).
pub fn check_service_account(value: &str) -> Result<(), String> {
    if value.contains('*') {
        return Err("wildcard not allowed, found in ServiceAccounts".into());
    }
    if value.split('/').count() > 2 {
        return Err(format!(
            "expected format 'serviceAccount' or 'namespace/serviceAccount', found {value}"
        ));
    }
    if value.len() > 320 {
        return Err(format!("value cannot exceed 320 characters, found {value}"));
    }
    Ok(())
}

/// Istio's trust domain checks (one wildcard, only at the start or end; no `/`).
pub fn check_trust_domain(value: &str) -> Result<(), String> {
    let stars = value.matches('*').count();
    if stars > 1 {
        return Err(format!("at most one wildcard is allowed, found {value}"));
    }
    if stars == 1 && !(value.starts_with('*') || value.ends_with('*')) {
        return Err(format!(
            "wildcard is only allowed at the start or end, found {value}"
        ));
    }
    if value.contains('/') {
        return Err(format!("trust domain must not contain '/', found {value}"));
    }
    Ok(())
}

/// Whether a `*` sits strictly inside a value, where Istio matches it literally.
pub fn has_inner_wildcard(value: &str) -> bool {
    value.len() > 2 && value[1..value.len() - 1].contains('*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_templates_match_istio() {
        let ok = [
            "/a/{*}/b",
            "/a/{**}",
            "/{*}/{**}",
            "/plain/path*",
            "/a/{*}/b.txt",
        ];
        for p in ok {
            assert_eq!(check_path_template("Paths", p), Ok(()), "{p}");
        }
        let bad: &[(&str, &str)] = &[
            (
                "/a/{**}/{*}",
                "invalid or unsupported path a/{**}/{*}, found in Paths. {**} is not the last operator",
            ),
            (
                "/a/{x}",
                "invalid or unsupported path a/{x}, found in Paths. Contains '{' or '}' beyond a supported path template",
            ),
            (
                "/a*/{*}",
                "invalid or unsupported path a*/{*}, found in Paths. Contains segment a* with invalid string literal",
            ),
        ];
        for (p, want) in bad {
            assert_eq!(
                check_path_template("Paths", p),
                Err(PathTemplateError(want.to_string())),
                "{p}"
            );
        }
    }
}
