use super::*;

const N: &str = "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw";

fn rsa(kid: &str) -> String {
    format!(r#"{{"kty":"RSA","kid":"{kid}","alg":"RS256","use":"sig","n":"{N}","e":"AQAB"}}"#)
}

fn ec(kid: &str) -> String {
    format!(
        r#"{{"kty":"EC","kid":"{kid}","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}"#
    )
}

const OKP: &str =
    r#"{"kty":"OKP","kid":"ed","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;

fn body(keys: &[String]) -> Vec<u8> {
    format!(r#"{{"keys":[{}]}}"#, keys.join(",")).into_bytes()
}

#[test]
fn accepts_rsa_ec_and_okp_keys() {
    let set = KeySet::parse(&body(&[rsa("r1"), ec("e1"), OKP.to_owned()])).unwrap();
    assert_eq!(set.key_count(), 3);
    assert_eq!(set.kids(), ["e1", "ed", "r1"]);
    assert!(set.has_kid("r1"));
    assert!(!set.has_kid("r2"));
    assert!(set.dropped().is_empty());
}

#[test]
fn normalizes_to_sorted_minimal_members() {
    let with_extras = format!(
        r#"{{"keys":[{{"kty":"RSA","kid":"b","n":"{N}","e":"AQAB","x5c":["MIIB"],"x5t":"abc"}},{}],"extra":true}}"#,
        rsa("a")
    );
    let set = KeySet::parse(with_extras.as_bytes()).unwrap();
    let v: Value = serde_json::from_str(set.json()).unwrap();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys[0]["kid"], "a");
    assert_eq!(keys[0]["alg"], "RS256");
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(keys[1]["kid"], "b");
    assert!(keys[1].get("x5c").is_none(), "x5c dropped");
    assert_eq!(v.as_object().unwrap().len(), 1, "only \"keys\" is kept");
}

#[test]
fn equal_sets_in_another_order_normalize_identically() {
    let a = KeySet::parse(&body(&[rsa("r1"), ec("e1"), OKP.to_owned()])).unwrap();
    let b = KeySet::parse(&body(&[OKP.to_owned(), rsa("r1"), ec("e1")])).unwrap();
    assert_eq!(a.json(), b.json());
    // Member order inside a key does not matter either.
    let reordered = format!(
        r#"{{"keys":[{{"e":"AQAB","n":"{N}","use":"sig","alg":"RS256","kid":"r1","kty":"RSA"}}]}}"#
    );
    let single = KeySet::parse(&body(&[rsa("r1")])).unwrap();
    assert_eq!(
        KeySet::parse(reordered.as_bytes()).unwrap().json(),
        single.json()
    );
}

#[test]
fn same_kid_is_ordered_by_full_json_and_duplicates_removed() {
    let rsa_other = format!(r#"{{"kty":"RSA","kid":"k","n":"{N}","e":"AQAC"}}"#);
    let rsa_same = format!(r#"{{"kty":"RSA","kid":"k","n":"{N}","e":"AQAB"}}"#);
    let a = KeySet::parse(&body(&[
        rsa_other.clone(),
        rsa_same.clone(),
        rsa_same.clone(),
    ]))
    .unwrap();
    let b = KeySet::parse(&body(&[rsa_same.clone(), rsa_other.clone()])).unwrap();
    assert_eq!(a.key_count(), 2);
    assert_eq!(a.json(), b.json());
}

#[test]
fn keys_without_kid_are_usable_but_not_listed() {
    let no_kid = format!(r#"{{"kty":"RSA","n":"{N}","e":"AQAB"}}"#);
    let set = KeySet::parse(&body(&[no_kid, rsa("x")])).unwrap();
    assert_eq!(set.key_count(), 2);
    assert_eq!(set.kids(), ["x"]);
}

#[test]
fn private_key_members_drop_the_key() {
    let private = format!(
        r#"{{"kty":"RSA","kid":"leak","n":"{N}","e":"AQAB","d":"AQAB","p":"AQAB","q":"AQAB"}}"#
    );
    let set = KeySet::parse(&body(&[private.clone(), rsa("ok")])).unwrap();
    assert_eq!(set.kids(), ["ok"]);
    assert_eq!(set.dropped().len(), 1);
    assert!(set.dropped()[0].contains("\"leak\""), "{:?}", set.dropped());
    assert!(set.dropped()[0].contains("private"), "{:?}", set.dropped());
    assert!(!set.json().contains("\"d\""));

    let err = KeySet::parse(&body(&[private])).unwrap_err();
    assert!(err.to_string().contains("private"), "{err}");
    let symmetric = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#;
    assert!(matches!(
        KeySet::parse(symmetric.as_bytes()),
        Err(InvalidJwks::NoUsableKey { .. })
    ));
}

#[test]
fn bad_bodies_are_rejected() {
    let big_but_bad = "x".repeat(10_000);
    let cases: &[(&str, &str)] = &[
        ("<html><body>Login</body></html>", "not valid JSON"),
        ("", "not valid JSON"),
        (r#"{"keys":[{"kty":"RSA","n":"#, "not valid JSON"),
        (&big_but_bad, "not valid JSON"),
        ("[]", "must be a JSON object, got an array"),
        ("\"keys\"", "must be a JSON object, got a string"),
        ("{}", "no \"keys\" member"),
        (r#"{"keys":5}"#, "must be an array, got a number"),
        (r#"{"keys":null}"#, "must be an array, got null"),
        (r#"{"keys":[]}"#, "no usable public key (\"keys\" is empty)"),
        (r#"{"keys":[5]}"#, "not an object"),
        (r#"{"keys":[{"kty":"RSA","e":"AQAB"}]}"#, "missing \"n\""),
        (
            r#"{"keys":[{"kty":"RSA","n":"","e":"AQAB"}]}"#,
            "\"n\" is empty",
        ),
        (
            r#"{"keys":[{"kty":"RSA","n":"!!!","e":"AQAB"}]}"#,
            "\"n\" is not non-empty base64url",
        ),
        (
            r#"{"keys":[{"kty":"RSA","n":7,"e":"AQAB"}]}"#,
            "\"n\" must be a string",
        ),
        (r#"{"keys":[{"n":"AQAB","e":"AQAB"}]}"#, "missing \"kty\""),
        (
            r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AQAB"}]}"#,
            "missing \"y\"",
        ),
        (
            r#"{"keys":[{"kty":"EC","crv":"secp256k1","x":"AQAB","y":"AQAB"}]}"#,
            "unsupported EC curve",
        ),
        (
            r#"{"keys":[{"kty":"OKP","crv":"X25519","x":"AQAB"}]}"#,
            "unsupported OKP curve",
        ),
        (r#"{"keys":[{"kty":"DSA"}]}"#, "unsupported \"kty\""),
        (
            r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":1}]}"#,
            "\"kid\" must be a string",
        ),
    ];
    for (body, expected) in cases {
        let err = KeySet::parse(body.as_bytes()).expect_err(body);
        assert!(
            err.to_string().contains(expected),
            "{body:?}: {err} (expected {expected:?})"
        );
    }
}

#[test]
fn a_body_that_is_not_utf8_is_rejected() {
    assert!(matches!(
        KeySet::parse(&[0xff, 0xfe, 0x00]),
        Err(InvalidJwks::NotJson(_))
    ));
}
