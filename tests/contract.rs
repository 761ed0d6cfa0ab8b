//! Contract tests: every endpoint and every documented status code, through the real client
//! against the emulator over loopback HTTP.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};
use telemetron_sync::api::*;
use telemetron_sync::client::{ApiError, ApiKey, Client, Rejection};
use telemetron_sync::emulator::AllUnknownAssign;

use crate::util::{Emu, KEY};

fn client(emu: &Emu) -> Client {
    Client::new(&emu.base_url, &ApiKey::new(KEY).unwrap(), Duration::from_secs(5)).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn upsert(email: &str) -> CustomerUpsert {
    CustomerUpsert { email: email.into(), ..Default::default() }
}

#[track_caller]
fn rejected(e: ApiError, status: u16) -> (Rejection, String) {
    match e {
        ApiError::Rejected { status: s, rejection, message, .. } if s == status => (rejection, message),
        other => panic!("expected a {status} rejection, got {other:?}"),
    }
}

fn props(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect()
}

#[test]
fn every_endpoint_answers_401_to_a_wrong_key() {
    let emu = Emu::start();
    let bad = Client::new(&emu.base_url, &ApiKey::new("wrong").unwrap(), Duration::from_secs(5)).unwrap();
    rt().block_on(async {
        let errors = vec![
            bad.create_or_update_customer(&upsert("a@x.io")).await.unwrap_err(),
            bad.query_customer("a@x.io").await.unwrap_err(),
            bad.get_customer("cust_1").await.unwrap_err(),
            bad.upsert_device(&DeviceUpsert { identifier: "D".into(), ..Default::default() }).await.unwrap_err(),
            bad.bulk_metadata(&BulkMetadata::default()).await.unwrap_err(),
            bad.assign_device_to_owners(&AssignDeviceToOwners::default()).await.unwrap_err(),
            bad.assign_devices_to_owner(&AssignDevicesToOwner::default()).await.unwrap_err(),
            bad.unassign_device_from_owner(&UnassignDeviceFromOwner::default()).await.unwrap_err(),
            bad.unassign_devices_from_owner(&UnassignDevicesFromOwner::default()).await.unwrap_err(),
            bad.create_ticket(&CreateTicket::default()).await.unwrap_err(),
        ];
        assert_eq!(errors.len(), Endpoint::ALL.len());
        for e in errors {
            assert!(matches!(e, ApiError::Unauthorized { .. }) && e.is_fatal() && !e.is_retryable(), "{e:?}");
            assert!(!e.to_string().contains(KEY));
        }
    });
    assert!(emu.org()["customers"].as_array().unwrap().is_empty(), "nothing was written");
}

#[test]
fn create_or_update_customer() {
    let emu = Emu::start();
    let c = client(&emu);
    rt().block_on(async {
        // 200 create; the name defaults to the email's local part.
        let created = c.create_or_update_customer(&upsert("Jane.Doe@Example.com")).await.unwrap();
        assert!(created.success);
        let id = created.telemetron_customer_id.unwrap();
        let got = c.query_customer("jane.doe@example.com").await.unwrap();
        assert_eq!((got.id.as_str(), got.name.as_deref()), (id.as_str(), Some("jane.doe")));

        // 409 on creating an existing email (any case), with the existing id.
        let (r, msg) = rejected(c.create_or_update_customer(&upsert("JANE.DOE@example.com")).await.unwrap_err(), 409);
        assert_eq!(r, Rejection::AlreadyExists { telemetron_customer_id: Some(id.clone()) });
        assert!(msg.contains("already exists"), "{msg}");

        // 200 update by id: given fields change, omitted ones stay.
        let mut update = upsert("jane.doe@example.com");
        update.telemetron_customer_id = Some(id.clone());
        update.phone = Some("+1 555 0100".into());
        c.create_or_update_customer(&update).await.unwrap();
        update.phone = None;
        update.address = Some("1 Main St".into());
        c.create_or_update_customer(&update).await.unwrap();
        let got = c.get_customer(&id).await.unwrap();
        assert_eq!(got.phone.as_deref(), Some("+1 555 0100"));
        assert_eq!(got.address.as_deref(), Some("1 Main St"));

        // 404 updating an unknown id.
        update.telemetron_customer_id = Some("cust_nope".into());
        let (r, _) = rejected(c.create_or_update_customer(&update).await.unwrap_err(), 404);
        assert_eq!(r, Rejection::NotFound);

        // 400 without an email, and with a malformed one.
        let (r, msg) = rejected(c.create_or_update_customer(&upsert("")).await.unwrap_err(), 400);
        assert_eq!((r, msg.as_str()), (Rejection::Invalid, "Email is required"));
        rejected(c.create_or_update_customer(&upsert("not-an-email")).await.unwrap_err(), 400);
    });
}

#[test]
fn query_and_get_customer() {
    let emu = Emu::start();
    let c = client(&emu);
    rt().block_on(async {
        let id = c.create_or_update_customer(&upsert("a@x.io")).await.unwrap().telemetron_customer_id.unwrap();
        assert_eq!(c.query_customer("A@X.IO").await.unwrap().id, id, "lookup is case-insensitive");
        assert_eq!(c.get_customer(&id).await.unwrap().email, "a@x.io");
        let (r, _) = rejected(c.query_customer("b@x.io").await.unwrap_err(), 404);
        assert_eq!(r, Rejection::NotFound);
        rejected(c.query_customer("").await.unwrap_err(), 400);
        rejected(c.get_customer("cust_unknown").await.unwrap_err(), 404);
        let (_, msg) = rejected(c.get_customer("").await.unwrap_err(), 400);
        assert_eq!(msg, "Customer ID is required");
    });
}

#[test]
fn create_or_update_device() {
    let emu = Emu::start();
    let c = client(&emu);
    rt().block_on(async {
        let create = DeviceUpsert {
            identifier: "SN-1".into(),
            device_type: Some("thermostat".into()),
            properties: Some(props(&[("fw", "1.0"), ("loc", "hall")])),
        };
        let r = c.upsert_device(&create).await.unwrap();
        assert_eq!((r.identifier.as_deref(), r.device_type.as_deref()), (Some("SN-1"), Some("thermostat")));
        let id = r.device_id.unwrap();
        let update =
            DeviceUpsert { identifier: "SN-1".into(), device_type: None, properties: Some(props(&[("fw", "2.0")])) };
        assert_eq!(c.upsert_device(&update).await.unwrap().device_id.unwrap(), id, "an upsert keyed on identifier");
        // 400: a new device needs a type.
        let (r, msg) = rejected(
            c.upsert_device(&DeviceUpsert { identifier: "SN-2".into(), ..Default::default() }).await.unwrap_err(),
            400,
        );
        assert_eq!(r, Rejection::Invalid);
        assert!(msg.contains("type is required"), "{msg}");
        rejected(c.upsert_device(&DeviceUpsert::default()).await.unwrap_err(), 400);
    });
    let dev = &emu.org()["devices"][0];
    assert_eq!(
        dev["properties"],
        json!({"fw": "2.0"}),
        "the emulator replaces properties on update (its stated choice)"
    );
    assert_eq!(dev["type"], "thermostat");
}

#[test]
fn bulk_metadata_replaces_wholesale_with_the_documented_messages() {
    let emu = Emu::start();
    let c = client(&emu);
    rt().block_on(async {
        for id in ["A", "B"] {
            let d = DeviceUpsert {
                identifier: id.into(),
                device_type: Some("t".into()),
                properties: Some(props(&[("keep", "x")])),
            };
            c.upsert_device(&d).await.unwrap();
        }
        let mut devices = BTreeMap::new();
        devices.insert("A".to_string(), props(&[("fw", "3")]));
        devices.insert("B".to_string(), Map::new());
        devices.insert("ZZ".to_string(), props(&[("fw", "3")]));
        let r = c.bulk_metadata(&BulkMetadata { devices }).await.unwrap();
        assert_eq!((r.updated, r.not_found), (2, 1));
        let order: Vec<(&str, BulkMetadataStatus)> =
            r.results.iter().map(|x| (x.identifier.as_str(), x.status)).collect();
        assert_eq!(
            order,
            [
                ("A", BulkMetadataStatus::Updated),
                ("B", BulkMetadataStatus::Updated),
                ("ZZ", BulkMetadataStatus::NotFound)
            ]
        );
        assert_eq!(r.results[2].device_id, "");

        let (_, msg) = rejected(c.bulk_metadata(&BulkMetadata::default()).await.unwrap_err(), 400);
        assert_eq!(msg, "devices must contain at least one entry");
        let many = (0..1001).map(|i| (format!("D{i}"), Map::new())).collect();
        let (_, msg) = rejected(c.bulk_metadata(&BulkMetadata { devices: many }).await.unwrap_err(), 400);
        assert_eq!(msg, "Too many devices. Maximum 1000 per request");
    });
    let devices = emu.org()["devices"].clone();
    assert_eq!(devices[0]["properties"], json!({"fw": "3"}), "no merge: 'keep' is gone");
    assert_eq!(devices[1]["properties"], json!({}));

    // The messages for bodies the typed client cannot send.
    let raw = |body: &str| -> (u16, Value) {
        rt().block_on(async {
            let r = reqwest::Client::new()
                .post(format!("{}/device/bulk-metadata", emu.base_url))
                .header("x-api-key", KEY)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json().await.unwrap())
        })
    };
    assert_eq!(raw("{not json"), (400, json!({"error": "Invalid JSON payload"})));
    assert_eq!(
        raw(r#"{"devices": []}"#),
        (400, json!({"error": "devices is required and must be an object mapping identifiers to metadata"}))
    );
    assert_eq!(
        raw(r#"{"devices": {"A": null}}"#),
        (400, json!({"error": "Invalid metadata for device \"A\": must be a JSON object"}))
    );
    let (status, body) = raw(r#"{"devices": {"  A  ": {"trimmed": "yes"}}}"#);
    assert_eq!((status, body["results"][0]["identifier"].as_str()), (200, Some("A")), "keys are trimmed");
}

#[test]
fn assign_device_to_owners() {
    let emu = Emu::start();
    let c = client(&emu);
    rt().block_on(async {
        c.create_or_update_customer(&upsert("a@x.io")).await.unwrap();
        let req = AssignDeviceToOwners {
            device_identifier: "SN-1".into(),
            customer_emails: vec![" A@x.io ".into(), "new.owner@x.io".into(), "not-an-email".into()],
            auto_create_device: true,
            device_type: Some("lock".into()),
        };
        let r = c.assign_device_to_owners(&req).await.unwrap();
        assert!(r.device_was_created);
        let owners: Vec<(&str, bool)> =
            r.assigned_customers.iter().map(|a| (a.email.as_str(), a.was_created)).collect();
        assert_eq!(owners, [("a@x.io", false), ("new.owner@x.io", true)], "invalid emails are skipped");
        // Idempotent: again, no duplicate.
        let again = c
            .assign_device_to_owners(&AssignDeviceToOwners {
                auto_create_device: false,
                device_type: None,
                ..req.clone()
            })
            .await
            .unwrap();
        assert!(!again.device_was_created);
        let who = c.query_customer("new.owner@x.io").await.unwrap();
        assert_eq!((who.name.as_deref(), who.devices), (Some("new.owner"), vec!["SN-1".to_string()]));

        // 404: unknown device without auto-create.
        let unknown = AssignDeviceToOwners {
            device_identifier: "SN-9".into(),
            customer_emails: vec!["a@x.io".into()],
            ..Default::default()
        };
        let (r, msg) = rejected(c.assign_device_to_owners(&unknown).await.unwrap_err(), 404);
        assert_eq!(r, Rejection::NotFound);
        assert!(msg.contains("Set autoCreateDevice to true"), "{msg}");
        // 400: auto-create without a type; no valid email.
        let (_, msg) = rejected(
            c.assign_device_to_owners(&AssignDeviceToOwners { auto_create_device: true, ..unknown.clone() })
                .await
                .unwrap_err(),
            400,
        );
        assert_eq!(msg, "deviceType is required when creating a new device");
        let (_, msg) = rejected(
            c.assign_device_to_owners(&AssignDeviceToOwners { customer_emails: vec!["nope".into()], ..req.clone() })
                .await
                .unwrap_err(),
            400,
        );
        assert_eq!(msg, "No valid customer emails provided");
    });
    let dev = &emu.org()["devices"][0];
    assert_eq!(dev["owners"], json!(["a@x.io", "new.owner@x.io"]), "a multi-owner device");
}

#[test]
fn assign_devices_to_owner_sorts_into_three_buckets() {
    let emu = Emu::start();
    let c = client(&emu);
    rt().block_on(async {
        for id in ["A", "B"] {
            c.upsert_device(&DeviceUpsert {
                identifier: id.into(),
                device_type: Some("t".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let req = |ids: &[&str]| AssignDevicesToOwner {
            customer_email: "o@x.io".into(),
            device_identifiers: ids.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let first = c.assign_devices_to_owner(&req(&["A"])).await.unwrap();
        assert!(first.customer_was_created, "the owner is auto-created");
        let r = c.assign_devices_to_owner(&req(&["A", "B", "GHOST"])).await.unwrap();
        assert!(!r.customer_was_created);
        let ids = |l: &[AssignedDevice]| l.iter().map(|d| d.identifier.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&r.assigned_devices), ["B"]);
        assert_eq!(ids(&r.already_assigned), ["A"]);
        assert_eq!(r.skipped, ["GHOST"], "an unknown device is skipped silently, not an error");

        let created = c
            .assign_devices_to_owner(&AssignDevicesToOwner {
                auto_create_devices: true,
                device_type: Some("t".into()),
                ..req(&["C"])
            })
            .await
            .unwrap();
        assert!(created.assigned_devices[0].was_created);
        let (_, msg) = rejected(c.assign_devices_to_owner(&req(&[])).await.unwrap_err(), 400);
        assert!(msg.contains("non-empty"), "{msg}");
        let all_unknown = c.assign_devices_to_owner(&req(&["X", "Y"])).await.unwrap();
        assert_eq!(all_unknown.skipped, ["X", "Y"], "the default [UNDOC] choice: 200, all skipped");
    });

    let strict = Emu::with(|c| c.all_unknown_assign = AllUnknownAssign::BadRequest);
    let c = client(&strict);
    rt().block_on(async {
        let req = AssignDevicesToOwner {
            customer_email: "o@x.io".into(),
            device_identifiers: vec!["X".into()],
            ..Default::default()
        };
        let (_, msg) = rejected(c.assign_devices_to_owner(&req).await.unwrap_err(), 400);
        assert_eq!(msg, "No valid devices found");
    });
    assert!(strict.org()["customers"].as_array().unwrap().is_empty(), "a 400 creates no customer");
}

#[test]
fn unassign_device_from_owner_is_not_idempotent() {
    let emu = Emu::start();
    let c = client(&emu);
    rt().block_on(async {
        let assign = AssignDeviceToOwners {
            device_identifier: "A".into(),
            customer_emails: vec!["o@x.io".into()],
            auto_create_device: true,
            device_type: Some("t".into()),
        };
        c.assign_device_to_owners(&assign).await.unwrap();
        c.assign_device_to_owners(&AssignDeviceToOwners { device_identifier: "B".into(), ..assign }).await.unwrap();
        let req = UnassignDeviceFromOwner { device_identifier: "A".into(), customer_email: "O@x.io".into() };
        let r = c.unassign_device_from_owner(&req).await.unwrap();
        assert_eq!(r.devices_remaining, ["B"]);
        let (r, msg) = rejected(c.unassign_device_from_owner(&req).await.unwrap_err(), 400);
        assert_eq!(r, Rejection::NotAssigned { current_devices: vec!["B".into()] });
        assert_eq!(msg, "Device is not assigned to this customer");
        let (r, _) = rejected(
            c.unassign_device_from_owner(&UnassignDeviceFromOwner {
                customer_email: "ghost@x.io".into(),
                ..req.clone()
            })
            .await
            .unwrap_err(),
            404,
        );
        assert_eq!(r, Rejection::NotFound);
        let (r, msg) = rejected(
            c.unassign_device_from_owner(&UnassignDeviceFromOwner { customer_email: "bad".into(), ..req })
                .await
                .unwrap_err(),
            400,
        );
        assert_eq!((r, msg.as_str()), (Rejection::Invalid, "Invalid email format"));
    });
}

#[test]
fn unassign_devices_from_owner() {
    let emu = Emu::start();
    let c = client(&emu);
    rt().block_on(async {
        let assign = AssignDevicesToOwner {
            customer_email: "o@x.io".into(),
            device_identifiers: vec!["A".into(), "B".into(), "C".into()],
            auto_create_devices: true,
            device_type: Some("t".into()),
        };
        c.assign_devices_to_owner(&assign).await.unwrap();
        let req = UnassignDevicesFromOwner {
            customer_email: "o@x.io".into(),
            device_identifiers: vec!["A".into(), "Z".into()],
        };
        let r = c.unassign_devices_from_owner(&req).await.unwrap();
        assert_eq!(
            (r.unassigned_devices, r.skipped, r.devices_remaining),
            (vec!["A".into()], vec!["Z".into()], vec!["B".to_string(), "C".into()])
        );
        let again = c.unassign_devices_from_owner(&req).await.unwrap();
        assert_eq!(again.skipped, ["A", "Z"], "repeating is harmless");
        rejected(
            c.unassign_devices_from_owner(&UnassignDevicesFromOwner {
                customer_email: "ghost@x.io".into(),
                ..req.clone()
            })
            .await
            .unwrap_err(),
            404,
        );
        rejected(
            c.unassign_devices_from_owner(&UnassignDevicesFromOwner { device_identifiers: vec![], ..req })
                .await
                .unwrap_err(),
            400,
        );
    });
}

#[test]
fn create_ticket() {
    let emu = Emu::start();
    let c = client(&emu);
    rt().block_on(async {
        let ticket = CreateTicket {
            title: "Thermostat offline".into(),
            customer_email: Some("New@x.io".into()),
            messages: vec![TicketMessage { role: "customer".into(), content: "It stopped.".into() }],
            ..Default::default()
        };
        let r = c.create_ticket(&ticket).await.unwrap();
        assert!(r.success && r.ticket_id.is_some());
        let who = c.query_customer("new@x.io").await.unwrap();
        assert_eq!(who.name.as_deref(), Some("new"), "an unknown email auto-creates the customer");
        let by_id = CreateTicket {
            customer_email: None,
            customer_id: Some(who.id.clone()),
            priority: Some("urgent".into()),
            ..ticket.clone()
        };
        c.create_ticket(&by_id).await.unwrap();

        let (_, msg) = rejected(
            c.create_ticket(&CreateTicket { priority: Some("asap".into()), ..ticket.clone() }).await.unwrap_err(),
            400,
        );
        assert_eq!(msg, "Invalid priority. Must be one of: low, medium, high, urgent");
        rejected(c.create_ticket(&CreateTicket { title: "x".repeat(256), ..ticket.clone() }).await.unwrap_err(), 400);
        rejected(c.create_ticket(&CreateTicket { title: String::new(), ..ticket.clone() }).await.unwrap_err(), 400);
        rejected(c.create_ticket(&CreateTicket { customer_email: None, ..ticket.clone() }).await.unwrap_err(), 400);
        let bad_role = vec![TicketMessage { role: "robot".into(), content: "x".into() }];
        rejected(c.create_ticket(&CreateTicket { messages: bad_role, ..ticket.clone() }).await.unwrap_err(), 400);
        let (r, _) = rejected(
            c.create_ticket(&CreateTicket { customer_email: None, customer_id: Some("cust_x".into()), ..ticket })
                .await
                .unwrap_err(),
            404,
        );
        assert_eq!(r, Rejection::NotFound);
    });
    let tickets = emu.org()["tickets"].clone();
    assert_eq!(tickets.as_array().unwrap().len(), 2);
    assert_eq!(tickets[0]["priority"], "medium", "the default priority");
    assert_eq!(tickets[0]["description"], "It stopped.", "made from the messages");
    assert_eq!(tickets[1]["priority"], "urgent");
}

#[test]
fn injected_failures_are_retryable_and_some_land_anyway() {
    let emu = Emu::with(|c| {
        c.fail_rate = 1.0;
        c.seed = 7;
    });
    let c = client(&emu);
    rt().block_on(async {
        for i in 0..20 {
            let e = c.create_or_update_customer(&upsert(&format!("u{i}@x.io"))).await.unwrap_err();
            assert!(matches!(e, ApiError::Server { status: 500, .. }) && e.is_retryable(), "{e:?}");
        }
    });
    let landed = emu.org()["customers"].as_array().unwrap().len();
    assert!(landed > 0 && landed < 20, "some 500s came after the write (lost responses): {landed} of 20 landed");
    assert!(emu.emulator.requests().iter().all(|r| r.status == 500));
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let emu = Emu::with(|c| c.rate_limit = Some(3));
    let c = client(&emu);
    let results = rt().block_on(async {
        let mut out = Vec::new();
        for _ in 0..6 {
            out.push(c.query_customer("a@x.io").await);
        }
        out
    });
    let limited: Vec<&ApiError> =
        results.iter().filter_map(|r| r.as_ref().err()).filter(|e| matches!(e, ApiError::RateLimited { .. })).collect();
    assert!(!limited.is_empty(), "{results:?}");
    assert!(limited.iter().all(|e| e.retry_after() == Some(Duration::from_secs(1)) && e.is_retryable()));
}

#[test]
fn a_slow_answer_is_a_retryable_timeout() {
    let emu = Emu::with(|c| c.latency = Duration::from_millis(400));
    let c = Client::new(&emu.base_url, &ApiKey::new(KEY).unwrap(), Duration::from_millis(100)).unwrap();
    let e = rt().block_on(c.query_customer("a@x.io")).unwrap_err();
    assert!(matches!(e, ApiError::Timeout { .. }) && e.is_retryable(), "{e:?}");
}

#[test]
fn admin_routes_show_state_and_the_request_log() {
    let emu = Emu::start();
    let c = client(&emu);
    rt().block_on(async {
        c.create_or_update_customer(&upsert("a@x.io")).await.unwrap();
        c.query_customer("zz@x.io").await.unwrap_err();
    });
    let (state, log): (Value, Value) = rt().block_on(async {
        let base = emu.base_url.trim_end_matches("/api/ext-v1").to_string();
        let admin = reqwest::Client::new();
        let get = |p: &str| admin.get(format!("{base}{p}")).header("x-api-key", KEY).send();
        (
            get("/_emulator/state").await.unwrap().json().await.unwrap(),
            get("/_emulator/requests").await.unwrap().json().await.unwrap(),
        )
    });
    assert_eq!(state["organizations"][0]["customers"][0]["email"], "a@x.io");
    let lines: Vec<(String, String, u64)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (l["method"].as_str().unwrap().into(), l["path"].as_str().unwrap().into(), l["status"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("POST".to_string(), "/api/ext-v1/customer/createOrUpdateCustomer".to_string(), 200),
            ("POST".to_string(), "/api/ext-v1/customer/queryCustomer".to_string(), 404),
        ]
    );
    assert!(log[0]["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn client_refuses_plain_http_beyond_loopback() {
    let key = ApiKey::new(KEY).unwrap();
    let e = Client::new("http://telemetron.example.com/api/ext-v1", &key, Duration::from_secs(1)).unwrap_err();
    assert!(e.contains("use https"), "{e}");
    assert!(Client::new("https://admin.telemetron.ai/api/ext-v1", &key, Duration::from_secs(1)).is_ok());
}

/// Issue 11, case 10: wrong-typed fields get the reference's 400, a percent-encoded id in the
/// path is decoded, and an over-size body gets the API's JSON error shape (raw HTTP, since the
/// client never sends any of these).
#[test]
fn the_emulator_refuses_wrong_types_decodes_ids_and_sizes_bodies_in_json() {
    let emu = Emu::start();
    let ours = client(&emu); // installs the process's crypto provider, which reqwest needs
    let http = reqwest::Client::new();
    rt().block_on(async {
        let post = |path: &str, body: Vec<u8>| {
            http.post(format!("{}{path}", emu.base_url))
                .header("x-api-key", KEY)
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        for (path, body, field) in [
            ("/customer/createOrUpdateCustomer", json!({"email": "a@x.io", "phone": 5}), "phone"),
            (
                "/deviceAssignment/assignDevicesToOwner",
                json!({"customerEmail": "a@x.io", "deviceIdentifiers": "SN-1"}),
                "deviceIdentifiers",
            ),
            (
                "/deviceAssignment/assignDeviceToOwners",
                json!({"deviceIdentifier": "SN-1", "customerEmails": ["a@x.io"], "autoCreateDevice": "yes"}),
                "autoCreateDevice",
            ),
            ("/device", json!({"identifier": "SN-1", "properties": ["x"]}), "properties"),
        ] {
            let r = post(path, body.to_string().into_bytes()).await.unwrap();
            assert_eq!(r.status(), 400, "{path}");
            let v: Value = r.json().await.unwrap();
            assert!(v["error"].as_str().unwrap().contains(&format!("Invalid field {field}")), "{path}: {v}");
        }
        let r = post(
            "/customer/createOrUpdateCustomer",
            json!({"email": "a@x.io", "phone": null}).to_string().into_bytes(),
        );
        assert_eq!(r.await.unwrap().status(), 200, "null counts as absent");

        let id = ours.query_customer("a@x.io").await.unwrap().id;
        let encoded: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
        let r = http
            .get(format!("{}/customer/getCustomer/{encoded}", emu.base_url))
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the id is percent-decoded");

        let big = vec![b' '; telemetron_sync::emulator::MAX_BODY + 1];
        let r = post("/device/bulk-metadata", big).await.unwrap();
        assert_eq!(r.status(), 413);
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{v}");
    });
}
