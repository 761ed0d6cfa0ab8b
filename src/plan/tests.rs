use super::*;

fn props(pairs: &[(&str, &str)]) -> Properties {
    Properties::from_map(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

#[test]
fn the_inverse_puts_back_the_before_images() {
    let email = Email::parse("a@x.io").unwrap();
    let dev = DeviceIdent::parse("D1").unwrap();
    let update = CustomerUpdate {
        email: email.clone(),
        telemetron_id: None,
        before: CustomerRecord::new(Some("Ann"), Some("1"), None, Some("C1")),
        after: CustomerRecord::new(Some("Ann"), Some("2"), Some("Main St"), Some("C1")),
    };
    let device = DeviceUpdate {
        identifier: dev.clone(),
        telemetron_id: None,
        device_type: Some(Change { before: Some("a".into()), after: Some("b".into()) }),
        properties: Some(Change {
            before: props(&[("fw", "1"), ("gone", "x")]),
            after: props(&[("fw", "2"), ("new", "y")]),
        }),
    };
    let moved = Assignment { device: dev.clone(), customer: Email::parse("b@x.io").unwrap() };
    let old = Assignment { device: dev.clone(), customer: email.clone() };
    let ops = vec![
        Operation::UpdateCustomer(Box::new((&update).into())),
        Operation::UpdateDevice(Box::new((&device).into())),
        Operation::Unassign(old.clone()),
        Operation::Assign(moved.clone()),
    ];
    let undo = inverse(&ops);
    let Operation::UpdateCustomer(c) = &undo.operations[0] else { panic!("{:?}", undo.operations) };
    assert_eq!(c.after, update.before);
    let Operation::UpdateDevice(d) = &undo.operations[1] else { panic!() };
    assert_eq!(d.device_type.as_ref().unwrap().after.as_deref(), Some("a"));
    assert_eq!(d.properties_after.as_ref(), Some(&props(&[("fw", "1"), ("gone", "x")])));
    // A transfer goes back the documented way: unassign the new owner, then assign the old.
    assert_eq!(undo.operations[2..], [Operation::Unassign(moved), Operation::Assign(old)]);
    assert!(undo.not_undoable.is_empty());
}

#[test]
fn creations_are_not_undoable() {
    let ops = vec![Operation::CreateCustomer(CustomerCreate {
        email: Email::parse("a@x.io").unwrap(),
        record: CustomerRecord::default(),
    })];
    let undo = inverse(&ops);
    assert!(undo.operations.is_empty());
    assert_eq!(undo.not_undoable[0].op, "create_customer");
}

/// What `apply` stores, serialized one inverse at a time, is the undo plan itself: the same
/// JSON, read back as the same plan (a type set where there was none is listed, not inverted).
#[test]
fn the_undo_plan_stored_lazily_is_the_undo_plan() {
    let email = Email::parse("a@x.io").unwrap();
    let dev = DeviceIdent::parse("D1").unwrap();
    let typed = DeviceUpdate {
        identifier: dev.clone(),
        telemetron_id: None,
        device_type: Some(Change { before: None, after: Some("b".into()) }),
        properties: Some(Change { before: props(&[("fw", "1")]), after: props(&[("fw", "2")]) }),
    };
    let retyped = DeviceUpdate {
        identifier: DeviceIdent::parse("D2").unwrap(),
        telemetron_id: None,
        device_type: Some(Change { before: None, after: Some("c".into()) }),
        properties: None,
    };
    let pair = |d: &DeviceIdent| Assignment { device: d.clone(), customer: email.clone() };
    let ops = vec![
        Operation::Assign(pair(&dev)),
        Operation::CreateCustomer(CustomerCreate { email: email.clone(), record: CustomerRecord::default() }),
        Operation::UpdateDevice(Box::new((&typed).into())),
        Operation::Unassign(pair(&retyped.identifier)),
        Operation::UpdateDevice(Box::new((&retyped).into())),
        Operation::CreateDevice(DeviceCreate {
            identifier: DeviceIdent::parse("D3").unwrap(),
            device_type: "t".into(),
            properties: Properties::empty(),
        }),
    ];
    let built = inverse(&ops);
    assert_eq!(
        built.not_undoable.iter().map(|n| &*n.op).collect::<Vec<_>>(),
        ["create_customer", "update_device", "update_device", "create_device"]
    );
    assert_eq!(built.operations.len(), 3, "the properties of D1, then the pair added, then the pair removed");
    let stored = serde_json::to_string(&Inverse(&ops)).unwrap();
    assert_eq!(serde_json::from_str::<UndoPlan>(&stored).unwrap(), built);
    let runs = &serde_json::from_str::<serde_json::Value>(&stored).unwrap()["not_undoable_runs"];
    assert_eq!(
        runs.as_array().unwrap().iter().map(|r| (r["op"].as_str().unwrap(), r["keys"].to_string())).collect::<Vec<_>>(),
        [
            ("create_customer", r#"["a@x.io"]"#.to_string()),
            ("update_device", r#"["D1","D2"]"#.to_string()),
            ("create_device", r#"["D3"]"#.to_string())
        ]
    );
    // The form earlier versions stored, one object for each, is still read.
    assert_eq!(serde_json::from_str::<UndoPlan>(&serde_json::to_string(&built).unwrap()).unwrap(), built);
    assert_eq!(serde_json::to_string(&Inverse(&[])).unwrap(), r#"{"operations":[],"not_undoable_runs":[]}"#);
}

/// The stored form (runs of one operation and reason) reads back as the plan `inverse` builds,
/// for seeded mixes of operations where the runs break at every kind of neighbour.
#[test]
fn a_stored_undo_plan_reads_back_as_built() {
    let mut next = crate::model::seeded(13);
    for round in 0..300 {
        let ops: Vec<Operation> = (0..next() % 40)
            .map(|i| {
                let ident =
                    DeviceIdent::parse(&format!("DEV-{round}-{i}-{}", "x".repeat((next() % 30) as usize))).unwrap();
                let email = Email::parse(&format!("c{round}.{i}@example-{}.com", next() % 5)).unwrap();
                match next() % 6 {
                    0 => Operation::CreateCustomer(CustomerCreate { email, record: CustomerRecord::default() }),
                    1 => Operation::CreateDevice(DeviceCreate {
                        identifier: ident,
                        device_type: "t".into(),
                        properties: Properties::empty(),
                    }),
                    2 | 3 => Operation::UpdateDevice(Box::new(
                        (&DeviceUpdate {
                            identifier: ident,
                            telemetron_id: None,
                            device_type: Some(Change {
                                before: next().is_multiple_of(2).then(|| "a".into()),
                                after: Some("b".into()),
                            }),
                            properties: None,
                        })
                            .into(),
                    )),
                    4 => Operation::Assign(Assignment { device: ident, customer: email }),
                    _ => Operation::Unassign(Assignment { device: ident, customer: email }),
                }
            })
            .collect();
        let stored = serde_json::to_string(&Inverse(&ops)).unwrap();
        assert_eq!(serde_json::from_str::<UndoPlan>(&stored).unwrap(), inverse(&ops), "round {round}: {stored}");
    }
}

/// One assign call auto-creates devices of one type: a new customer's own new devices of two
/// types need two calls, whatever the cover says (one customer covers every pair), and the
/// bound counts them.
#[test]
fn the_lower_bound_counts_one_call_per_type_of_a_customers_own_new_devices() {
    let email = Email::parse("ann@x.io").unwrap();
    let named = CustomerRecord::new(Some("Ann"), None, None, None);
    let device = |id: &str, t: &str| DeviceCreate {
        identifier: DeviceIdent::parse(id).unwrap(),
        device_type: t.into(),
        properties: Properties::empty(),
    };
    let assign = |id: &str| Assignment { device: DeviceIdent::parse(id).unwrap(), customer: email.clone() };
    let ops = vec![
        Operation::CreateCustomer(CustomerCreate { email: email.clone(), record: named }),
        Operation::CreateDevice(device("T1", "thermostat")),
        Operation::CreateDevice(device("T2", "thermostat")),
        Operation::CreateDevice(device("L1", "smart-lock")),
        Operation::Assign(assign("T1")),
        Operation::Assign(assign("T2")),
        Operation::Assign(assign("L1")),
    ];
    let (count, bound) = call_count_and_lower_bound(&ops, Batching::default());
    let calls = calls(&ops, Batching::default());
    // The named create, then one assign call per type (the cover alone would say one).
    assert_eq!(bound, 3);
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(count, 3, "the count plan reports is the calls apply makes");
    assert_eq!(calls.assign.len(), 2);
}

/// A new device two customers share: alone it goes in one device call that creates it; when
/// both owners have calls anyway it is created by `POST /device` with its properties and rides
/// in theirs, and the bound counts that grouping (three calls, no bulk-metadata).
#[test]
fn a_shared_new_device_costs_one_call_and_rides_with_owners_that_have_calls() {
    let c1 = Email::parse("c1@x.io").unwrap();
    let c2 = Email::parse("c2@x.io").unwrap();
    let create = |id: &str, properties: Properties| {
        Operation::CreateDevice(DeviceCreate {
            identifier: DeviceIdent::parse(id).unwrap(),
            device_type: "t".into(),
            properties,
        })
    };
    let assign = |id: &str, c: &Email| {
        Operation::Assign(Assignment { device: DeviceIdent::parse(id).unwrap(), customer: c.clone() })
    };
    let alone = vec![create("S", props(&[("fw", "1")])), assign("S", &c1), assign("S", &c2)];
    let made = calls(&alone, Batching::default());
    assert_eq!((made.assign.len(), made.devices.len(), made.properties.len()), (1, 0, 1), "{made:?}");
    assert_eq!(call_count_and_lower_bound(&alone, Batching::default()), (2, 2));

    let mut with_owners = alone.clone();
    with_owners.extend([
        create("P1", Properties::empty()),
        create("P2", Properties::empty()),
        assign("P1", &c1),
        assign("P2", &c2),
    ]);
    let made = calls(&with_owners, Batching::default());
    assert_eq!((made.assign.len(), made.devices.len(), made.properties.len()), (2, 1, 0), "{made:?}");
    assert!(
        matches!(&made.devices[0], ApiCall::UpsertDevice { properties: Some(p), create: true, .. } if !p.is_empty())
    );
    assert_eq!(call_count_and_lower_bound(&with_owners, Batching::default()), (3, 3));
}

/// xorshift64*: seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Small random plans, the shapes that make the planner's choices (shared new devices,
/// email-only customers of several types, transfers to new customers, existing devices beside
/// new ones, tiny batches): the bound never exceeds the calls made, `plan`'s count is `apply`'s
/// calls, every new pair is in exactly one assign call, and every new entity is created by
/// exactly one call (a phase's calls run at once, so two creating calls would race).
#[test]
fn random_plans_keep_the_bound_below_the_calls_and_create_each_entity_once() {
    use crate::plan::calls::ApiCall;
    use std::collections::{BTreeMap, BTreeSet};
    let mut rng = Rng(0x5eed_cafe);
    for round in 0..3000 {
        let customers: Vec<Email> =
            (0..1 + rng.below(5)).map(|i| Email::parse(&format!("c{i}@x.io")).unwrap()).collect();
        let devices: Vec<DeviceIdent> =
            (0..1 + rng.below(8)).map(|i| DeviceIdent::parse(&format!("D{i}")).unwrap()).collect();
        let mut ops = Vec::new();
        let mut new_customers = BTreeSet::new();
        for (i, email) in customers.iter().enumerate() {
            match rng.below(3) {
                0 => {}
                1 => ops.push(Operation::CreateCustomer(CustomerCreate {
                    email: email.clone(),
                    record: CustomerRecord::default(),
                })),
                _ => ops.push(Operation::CreateCustomer(CustomerCreate {
                    email: email.clone(),
                    record: CustomerRecord::new(Some(&format!("Person {i}")), None, None, None),
                })),
            }
            if rng.below(3) != 0 {
                new_customers.insert(email.clone());
            }
        }
        ops.retain(|op| !matches!(op, Operation::CreateCustomer(c) if !new_customers.contains(&c.email)));
        let mut new_devices = BTreeSet::new();
        for (i, ident) in devices.iter().enumerate() {
            if rng.below(2) == 0 {
                new_devices.insert(ident.clone());
                let properties = if rng.below(2) == 0 { Properties::empty() } else { props(&[("fw", &i.to_string())]) };
                let device_type: Arc<str> = if rng.below(2) == 0 { "a".into() } else { "b".into() };
                ops.push(Operation::CreateDevice(DeviceCreate { identifier: ident.clone(), device_type, properties }));
            } else if rng.below(3) == 0 {
                ops.push(Operation::UpdateDevice(Box::new(DeviceUpdateDoc {
                    identifier: ident.clone(),
                    telemetron_id: None,
                    device_type: (rng.below(2) == 0)
                        .then(|| Change { before: Some("a".into()), after: Some("b".into()) }),
                    properties: None,
                    properties_after: Some(props(&[("fw", "9")])),
                })));
            }
        }
        let mut pairs = BTreeSet::new();
        for _ in 0..rng.below(12) {
            let c = customers[rng.below(customers.len() as u64) as usize].clone();
            let d = devices[rng.below(devices.len() as u64) as usize].clone();
            pairs.insert((c, d));
        }
        for (customer, device) in &pairs {
            if !new_customers.contains(customer) && !new_devices.contains(device) && rng.below(4) == 0 {
                ops.push(Operation::Unassign(Assignment { device: device.clone(), customer: customer.clone() }));
            } else {
                ops.push(Operation::Assign(Assignment { device: device.clone(), customer: customer.clone() }));
            }
        }
        let batching = Batching {
            batch_size: 1 + rng.below(3) as usize,
            metadata_batch_size: [1000, 1, 2][round % 3],
            ..Batching::default()
        };
        let (count, bound) = call_count_and_lower_bound(&ops, batching);
        let made = calls(&ops, batching);
        let context = format!("round {round}: {ops:?}\n{made:?}");
        assert_eq!(count, made.len(), "{context}");
        assert!(bound <= count, "bound {bound} above {count} calls, {context}");
        // What `apply` sends first and what it plans meanwhile are the plan's calls, with or
        // without the grouping.
        for batching in [batching, Batching { optimize: false, ..batching }] {
            let whole = calls(&ops, batching);
            let named: Vec<ApiCall> = named_creates(std::sync::Arc::new(ops.clone())).collect();
            assert_eq!(named.len(), named_create_count(&ops), "{context}");
            let mut rest = calls_but_named_creates(&ops, batching);
            let mut customers = named.clone();
            customers.append(&mut rest.customers);
            let key = |c: &ApiCall| format!("{c:?}");
            customers.sort_by_key(key);
            let mut expected = whole.customers.clone();
            expected.sort_by_key(key);
            assert_eq!(customers, expected, "{context}");
            assert!(named.iter().all(|c| matches!(c, ApiCall::CreateCustomer { .. })), "{context}");
            assert_eq!(Calls { customers: Vec::new(), ..whole.clone() }, rest, "{context}");
            // Staged, the same calls in the same order, the two late phases as many as said.
            for (named, want) in [(false, calls_but_named_creates(&ops, batching)), (true, whole)] {
                let mut got = (Calls::default(), 0, 0);
                let (mut assign, mut properties) = (Vec::new(), Vec::new());
                staged_calls(
                    &ops,
                    batching,
                    named,
                    |first, a, p| got = (first, a, p),
                    |late, call| {
                        match late {
                            Late::Assign => assign.push(call),
                            Late::Properties => properties.push(call),
                        }
                        true
                    },
                );
                let (first, a, p) = got;
                assert_eq!((a, p), (assign.len(), properties.len()), "{context}");
                assert_eq!(Calls { assign, properties, ..first }, want, "{context}");
            }
            // A reader that goes away stops the making at once.
            let mut sent = 0;
            staged_calls(
                &ops,
                batching,
                false,
                |_, _, _| {},
                |_, _| {
                    sent += 1;
                    false
                },
            );
            assert!(sent <= 1, "{context}");
        }

        let mut held: BTreeMap<(Email, DeviceIdent), usize> = BTreeMap::new();
        let mut device_creates: BTreeMap<DeviceIdent, usize> = BTreeMap::new();
        let mut customer_creates: BTreeMap<Email, usize> = BTreeMap::new();
        let all = made.customers.iter().chain(&made.devices).chain(&made.assign);
        for call in all {
            match call {
                ApiCall::CreateCustomer { email, .. } => *customer_creates.entry(email.clone()).or_default() += 1,
                ApiCall::UpsertDevice { identifier, create: true, .. } => {
                    *device_creates.entry(identifier.clone()).or_default() += 1
                }
                ApiCall::AssignDevicesToOwner { customer, devices, create, create_customer } => {
                    for d in devices {
                        *held.entry((customer.clone(), d.clone())).or_default() += 1;
                    }
                    // A list of its own only for some of the call's devices, never all of them.
                    let only = create.as_ref().and_then(|c| c.only.as_ref());
                    assert!(only.is_none_or(|o| o.len() < devices.len()), "{context}");
                    for d in create.iter().flat_map(|c| c.of(devices)) {
                        assert!(new_devices.contains(d), "{d} existed: {context}");
                        *device_creates.entry(d.clone()).or_default() += 1;
                    }
                    if create_customer.is_some() {
                        *customer_creates.entry(customer.clone()).or_default() += 1;
                    }
                }
                ApiCall::AssignDeviceToOwners { device, customers, create, create_customers } => {
                    for c in customers {
                        *held.entry((c.clone(), device.clone())).or_default() += 1;
                    }
                    if create.is_some() {
                        *device_creates.entry(device.clone()).or_default() += 1;
                    }
                    for (c, _) in create_customers {
                        *customer_creates.entry(c.clone()).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
        let assigned: BTreeMap<(Email, DeviceIdent), usize> = ops
            .iter()
            .filter_map(|op| match op {
                Operation::Assign(a) => Some(((a.customer.clone(), a.device.clone()), 1)),
                _ => None,
            })
            .collect();
        assert_eq!(held, assigned, "{context}");
        assert_eq!(device_creates, new_devices.iter().map(|d| (d.clone(), 1)).collect(), "{context}");
        let created: BTreeMap<Email, usize> = ops
            .iter()
            .filter_map(|op| match op {
                Operation::CreateCustomer(c) => Some((c.email.clone(), 1)),
                _ => None,
            })
            .collect();
        assert_eq!(customer_creates, created, "{context}");
    }
}

#[test]
fn durations_read_as_people_say_them() {
    assert_eq!((seconds_at(0, 10.0), seconds_at(143, 10.0), seconds_at(1, 0.0)), (0, 15, 0));
    assert_eq!(human_duration(45), "45 s");
    assert_eq!(human_duration(600), "10 min");
    assert_eq!(human_duration(7_500), "2 h 05 min");
    assert_eq!(human_duration(155_600), "1 d 20 h");
}

/// A saved plan has one layout both ways: what `plan --out` writes, `apply --plan` reads back
/// (operations, inputs, snapshot, state, and the count of rejected rows, listed or not).
#[test]
fn a_saved_plan_reads_back_as_written() {
    let email = Email::parse("a@x.io").unwrap();
    let mut plan = build_uncounted(crate::diff::Diff::default(), &Export::default(), Held::default());
    plan.operations = vec![
        Operation::CreateCustomer(CustomerCreate { email: email.clone(), record: CustomerRecord::default() }),
        Operation::Assign(Assignment { device: DeviceIdent::parse("D1").unwrap(), customer: email }),
    ];
    plan.summary.rejected_rows = 12_345;
    let inputs = [InputInfo { kind: "customers".into(), path: "c.csv".into(), sha256: "ab".into(), rows: 3 }];
    let snapshot = SnapshotVersion { id: Some("s1".into()), generation: 7, schema: 6, missing: false };
    let written = SavedPlan {
        plan: &plan,
        inputs: Cow::Borrowed(&inputs[..]),
        snapshot: Cow::Borrowed(&snapshot),
        state: Some(Cow::Borrowed("/x/s.db")),
        created_at: Some(Cow::Borrowed("2026-12-08T03:00:00Z")),
    };
    let bytes = serde_json::to_vec(&written).unwrap();
    let read = read_saved(&bytes[..]).unwrap();
    assert_eq!(read.plan.format, FORMAT);
    assert_eq!(serde_json::to_value(&read.plan.operations).unwrap(), serde_json::to_value(&plan.operations).unwrap());
    assert_eq!(read.plan.rejected_rows(), 12_345);
    assert_eq!((&*read.inputs, &*read.snapshot, read.state.as_deref()), (&inputs[..], &snapshot, Some("/x/s.db")));
    assert_eq!(read.created_at.as_deref(), Some("2026-12-08T03:00:00Z"));
}
