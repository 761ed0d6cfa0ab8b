use std::collections::BTreeMap;

use super::*;

#[test]
fn a_sorted_map_keeps_key_order_whatever_the_appends() {
    let mut m = SortedMap::default();
    for (k, v) in [("b", 1), ("d", 2), ("a", 3), ("d", 4), ("c", 5)] {
        m.push(k.to_string(), v);
    }
    m.finish();
    let got: Vec<(&str, i32)> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(got, [("a", 3), ("b", 1), ("c", 5), ("d", 4)], "sorted, the last of equal keys kept");
    assert_eq!(m.get("c"), Some(&5));
    assert!(!m.contains_key("e"));
    assert_eq!(m.insert("bb".into(), 6), None);
    assert_eq!(m.insert("a".into(), 7), Some(3));
    assert_eq!(m.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "b", "bb", "c", "d"]);
}

#[test]
fn long_keys_are_kept_whole() {
    let long = format!("{}@example.com", "x".repeat(60));
    assert_eq!(Email::parse(&long).unwrap().as_str(), long);
    let id = "SN-".repeat(20);
    assert_eq!(DeviceIdent::parse(&id).unwrap().as_str(), id);
}

#[test]
fn emails_are_trimmed_and_lowercased() {
    assert_eq!(Email::parse("  Bob@Example.COM ").unwrap().as_str(), "bob@example.com");
}

#[test]
fn bad_emails_are_refused_with_a_reason() {
    for bad in ["", "bob", "bob@", "@x.com", "bob@x", "a@b@c.com", "bo b@x.com", "bob@x..com", "b,ob@x.com"] {
        assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
    }
    assert_eq!(Email::parse("bob").unwrap_err(), "email has no '@'");
}

#[test]
fn local_part() {
    assert_eq!(Email::parse("jane.doe@x.io").unwrap().local_part(), "jane.doe");
}

#[test]
fn identifiers_keep_case_and_refuse_empty() {
    assert_eq!(DeviceIdent::parse(" SN-aB1 ").unwrap().as_str(), "SN-aB1");
    assert!(DeviceIdent::parse("   ").is_err());
}

#[test]
fn customer_records_pack_and_unpack() {
    let r = CustomerRecord::new(Some("Ann"), None, Some("1 Main St"), Some("C1"));
    assert_eq!(r.api_fields(), [("name", Some("Ann")), ("phone", None), ("address", Some("1 Main St"))]);
    assert_eq!(r.source_id(), Some("C1"));
    assert_eq!(CustomerRecord::new(Some(""), None, None, None), CustomerRecord::default());
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(json, r#"{"name":"Ann","phone":null,"address":"1 Main St","source_id":"C1"}"#);
    assert_eq!(serde_json::from_str::<CustomerRecord>(&json).unwrap(), r);
}

#[test]
fn properties_are_canonical() {
    let a = Properties::from_json(r#"{"b":"2", "a":"1"}"#).unwrap();
    let mut m = BTreeMap::new();
    m.insert("a".to_string(), "1".to_string());
    m.insert("b".to_string(), "2".to_string());
    assert_eq!(a, Properties::from_map(&m));
    assert_eq!(a.as_json(), r#"{"a":"1","b":"2"}"#);
    assert_eq!(a.to_map(), m);
}

#[test]
fn properties_escape_like_serde_json() {
    let mut m = BTreeMap::new();
    m.insert("k\"ey".to_string(), "line\nbreak\u{1}é".to_string());
    let p = Properties::from_map(&m);
    assert_eq!(p.as_json(), serde_json::to_string(&m).unwrap());
}
