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
