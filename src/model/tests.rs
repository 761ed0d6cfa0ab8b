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
    assert_eq!(a.json(), r#"{"a":"1","b":"2"}"#);
    assert_eq!(a.to_map(), m);
}

#[test]
fn properties_escape_like_serde_json() {
    let mut m = BTreeMap::new();
    m.insert("k\"ey".to_string(), "line\nbreak\u{1}é".to_string());
    let p = Properties::from_map(&m);
    assert_eq!(p.json(), serde_json::to_string(&m).unwrap());
}

/// The promise of the two ways a device's properties are held: a row's values against its
/// file's keys are equal to — and hash, encode, serialize and read back as — the canonical
/// JSON of the same pairs, and unequal to any other; whatever the keys and values hold
/// (quotes, backslashes, control characters, the separator itself, other scripts, empty cells).
#[test]
fn properties_held_as_values_are_the_canonical_json_of_their_pairs() {
    use std::hash::{BuildHasher, RandomState};
    let mut draw = seeded(0x9e37_79b9_7f4a_7c15);
    let mut next = move |n: usize| (draw() % n as u64) as usize;
    let alphabet = ["a", "Z", "0", " ", ",", "\"", "\\", "\n", "\t", "\u{1}", "\u{1f}", "é", "Ж", "語", "/", ":", "{"];
    let text = |next: &mut dyn FnMut(usize) -> usize, max: usize| -> String {
        (0..next(max + 1)).map(|_| alphabet[next(alphabet.len())]).collect()
    };
    let hasher = RandomState::new();
    // One buffer through all rounds, as a bulk write uses it: a longer earlier value must not
    // show through a shorter later one.
    let mut buf = Vec::new();
    for round in 0..2000 {
        let mut keys: Vec<String> = (0..next(6)).map(|_| text(&mut next, 5)).filter(|k| !k.is_empty()).collect();
        keys.sort();
        keys.dedup();
        let table = PropertyKeys::new(keys.clone());
        let mut values = PropertyValues::new(&table);
        let mut map = BTreeMap::new();
        for k in &keys {
            let v = if next(3) == 0 { String::new() } else { text(&mut next, 6) };
            values.push(&v);
            if !v.is_empty() {
                map.insert(k.clone(), v);
            }
        }
        let held = values.properties();
        let json = Properties::from_map(&map);
        assert_eq!(held, json, "round {round}: {map:?}");
        assert_eq!(json, held, "round {round}");
        assert_eq!(held.json(), json.json(), "round {round}");
        assert!(held.is_json(&json.json()), "round {round}");
        assert_eq!(held.json_in(&mut buf), json.json(), "round {round}");
        assert_eq!(json.json_in(&mut buf), json.json(), "round {round}");
        assert_eq!(held.to_map(), map, "round {round}");
        assert_eq!(held.is_empty(), map.is_empty(), "round {round}");
        assert_eq!(serde_json::to_string(&held).unwrap(), serde_json::to_string(&json).unwrap(), "round {round}");
        assert_eq!(hasher.hash_one(&held), hasher.hash_one(&json), "round {round}");
        assert_eq!(Properties::from_json(&held.json()).unwrap(), held, "round {round}");
        // The same values against another copy of the keys are still the same properties.
        let mut again = PropertyValues::new(&PropertyKeys::new(keys.clone()));
        for k in &keys {
            again.push(map.get(k).map_or("", String::as_str));
        }
        assert_eq!(again.properties(), held, "round {round}");

        // Any other pairs are other properties, however they are held.
        let mut other = map.clone();
        match (keys.is_empty(), next(3)) {
            (true, _) | (_, 0) => {
                other.insert(format!("{}x", text(&mut next, 3)), "v".into());
            }
            (false, 1) => {
                other.remove(&keys[next(keys.len())]);
            }
            _ => {
                let k = &keys[next(keys.len())];
                let v = other.get(k).cloned().unwrap_or_default();
                other.insert(k.clone(), format!("{v}{}", alphabet[next(alphabet.len())]));
            }
        }
        if other != map {
            let other = Properties::from_map(&other);
            assert_ne!(held, other, "round {round}: {map:?}");
            assert_ne!(other, held, "round {round}");
            assert!(!held.is_json(&other.json()), "round {round}");
        }
    }
}

/// The owners of marked devices read back as the emails pushed, whether their domain got a
/// number or (past 65,535 domains) the email is held whole, and compare as those emails only.
#[test]
fn marked_devices_owners_are_the_emails_pushed_whatever_their_domains() {
    // Three in four with a domain of their own: 75,000 domains, more than can be numbered; and
    // 2.6 MB of text, across chunks.
    let n = 100_000;
    let mut same = SameDevices::new(n, n, n);
    let email = |i: usize| match i % 4 {
        0 => format!("ann.{i}@shared.example"),
        1 => format!("b{i}@d{i}.example"),
        2 => format!("x@y@d{i}.co"),
        _ => format!("ann.{i}@d{i}.example.org"),
    };
    for i in 0..n {
        assert!(same.push(i));
        assert!(same.push_owner(i, &email(i)));
        if i % 7 == 0 {
            assert!(same.push_owner(i, &format!("z{i}@shared.example")));
        }
    }
    assert!(same.finish());
    for i in 0..n {
        let owners: Vec<OwnerEmail<'_>> = same.owners(i).collect();
        let want = email(i);
        assert_eq!(owners.len(), if i % 7 == 0 { 2 } else { 1 }, "device {i}");
        assert!(owners[0].is(&want), "device {i}: {} is {want}", owners[0]);
        assert_eq!(owners[0].to_string(), want);
        assert_eq!(owners[0].to_email().as_str(), want);
        for other in [format!("{want}x"), format!("x{want}"), want.replacen('@', ".", 1), want.replace('.', "-")] {
            assert!(!owners[0].is(&other), "device {i}: {} is not {other}", owners[0]);
        }
        if i % 7 == 0 {
            assert_eq!(owners[1].to_string(), format!("z{i}@shared.example"));
        }
    }
    assert_eq!(same.owner_count(), n + n.div_ceil(7));
    assert!(same.owners(n - 1).next().is_some_and(|o| o.domain.is_empty()), "the last held whole");
}

/// `INLINE_KEY_BYTES` is where a key starts to need an allocation of its own: the ownership
/// read shares only the identifiers past it.
#[test]
fn keys_up_to_the_inline_size_need_no_allocation() {
    let at = |n: usize| smol_str::SmolStr::new("k".repeat(n)).is_heap_allocated();
    assert!(!at(INLINE_KEY_BYTES));
    assert!(at(INLINE_KEY_BYTES + 1));
}
