//! The ten endpoints' behaviour, as pure functions of an organization's state and a request
//! body. See the module doc of `emulator` for the choices made where the reference is silent.

use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::state::{OrgState, TicketRec};
use super::{AllUnknownAssign, Config, EmailMatch, EmptyOnUpdate, PropertiesOnUpdate};
use crate::api::BULK_METADATA_MAX;
use crate::model::Email;

type Reply = (StatusCode, Value);

fn bad(msg: &str) -> Reply {
    (StatusCode::BAD_REQUEST, json!({ "error": msg }))
}

fn not_found(msg: &str) -> Reply {
    (StatusCode::NOT_FOUND, json!({ "error": msg }))
}

fn ok(v: Value) -> Reply {
    (StatusCode::OK, v)
}

fn now() -> String {
    crate::time::now_rfc3339()
}

pub(super) fn dispatch(org: &mut OrgState, cfg: &Config, method: &Method, path: &str, body: &[u8]) -> Reply {
    if let Some(id) = path.strip_prefix("/customer/getCustomer") {
        if method != Method::GET {
            return (StatusCode::METHOD_NOT_ALLOWED, json!({"error": "Method not allowed"}));
        }
        return get_customer(org, &percent_decode(id.trim_start_matches('/')));
    }
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, json!({"error": "Method not allowed"}));
    }
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return bad("Invalid JSON payload");
    };
    let Value::Object(body) = body else {
        return bad("Invalid JSON payload");
    };
    if let Some(reply) = wrong_types(path, &body) {
        return reply;
    }
    match path {
        "/customer/createOrUpdateCustomer" => upsert_customer(org, cfg, &body),
        "/customer/queryCustomer" => query_customer(org, &body),
        "/device" => upsert_device(org, cfg, &body),
        "/device/bulk-metadata" => bulk_metadata(org, &body),
        "/deviceAssignment/assignDeviceToOwners" => assign_device_to_owners(org, &body),
        "/deviceAssignment/assignDevicesToOwner" => assign_devices_to_owner(org, cfg, &body),
        "/deviceAssignment/unassignDeviceFromOwner" => unassign_device(org, &body),
        "/deviceAssignment/unassignDevicesFromOwner" => unassign_devices(org, &body),
        "/ticket/createTicket" => create_ticket(org, &body),
        _ => not_found("Not found"),
    }
}

/// The answer to a write that names one of the refused records ([`super::Emulator::refuse`]).
pub(super) fn refused(refuse: &[String], path: &str, body: &[u8]) -> Option<Reply> {
    if refuse.is_empty() || path.starts_with("/customer/getCustomer") || path == "/customer/queryCustomer" {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    names_refused(refuse, &v).then(|| bad("invalid device identifier or email"))
}

/// Whether a request names one of the refused records anywhere: a string value, or a key of
/// bulk-metadata's `devices`, compared trimmed and without case.
fn names_refused(refuse: &[String], v: &Value) -> bool {
    let hit = |s: &str| refuse.iter().any(|r| r.trim().eq_ignore_ascii_case(s.trim()));
    match v {
        Value::String(s) => hit(s),
        Value::Array(items) => items.iter().any(|i| names_refused(refuse, i)),
        Value::Object(map) => map.iter().any(|(k, v)| hit(k) || names_refused(refuse, v)),
        _ => false,
    }
}

/// The type a request field must have.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Object,
    StrList,
    Array,
}

/// Request fields and their types, per endpoint, as the reference documents them.
fn schema(path: &str) -> &'static [(&'static str, Kind)] {
    use Kind::*;
    match path {
        "/customer/createOrUpdateCustomer" => {
            &[("email", Str), ("name", Str), ("phone", Str), ("address", Str), ("telemetronCustomerId", Str)]
        }
        "/customer/queryCustomer" => &[("email", Str)],
        "/device" => &[("identifier", Str), ("type", Str), ("properties", Object)],
        // bulk-metadata's 400s are documented word for word: its own checks give them.
        "/deviceAssignment/assignDeviceToOwners" => {
            &[("deviceIdentifier", Str), ("customerEmails", StrList), ("autoCreateDevice", Bool), ("deviceType", Str)]
        }
        "/deviceAssignment/assignDevicesToOwner" => {
            &[("customerEmail", Str), ("deviceIdentifiers", StrList), ("autoCreateDevices", Bool), ("deviceType", Str)]
        }
        "/deviceAssignment/unassignDeviceFromOwner" => &[("deviceIdentifier", Str), ("customerEmail", Str)],
        "/deviceAssignment/unassignDevicesFromOwner" => &[("customerEmail", Str), ("deviceIdentifiers", StrList)],
        "/ticket/createTicket" => &[
            ("title", Str),
            ("description", Str),
            ("priority", Str),
            ("customerEmail", Str),
            ("customerId", Str),
            ("category", Str),
            ("messages", Array),
        ],
        _ => &[],
    }
}

/// A 400 for a documented field given with the wrong JSON type (`null` counts as absent).
fn wrong_types(path: &str, body: &Map<String, Value>) -> Option<Reply> {
    for (key, kind) in schema(path) {
        let Some(v) = body.get(*key).filter(|v| !v.is_null()) else { continue };
        let (fits, what) = match kind {
            Kind::Str => (v.is_string(), "a string"),
            Kind::Bool => (v.is_boolean(), "a boolean"),
            Kind::Object => (v.is_object(), "an object"),
            Kind::Array => (v.is_array(), "an array"),
            Kind::StrList => (v.as_array().is_some_and(|a| a.iter().all(Value::is_string)), "an array of strings"),
        };
        if !fits {
            return Some(bad(&format!("Invalid field {key}: expected {what}")));
        }
    }
    None
}

/// Decodes `%XX` escapes of a path segment (bytes that do not decode stay as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn str_field<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// A non-empty string field, or `None`.
fn nonempty<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    str_field(body, key).filter(|s| !s.trim().is_empty())
}

fn string_list(body: &Map<String, Value>, key: &str) -> Option<Vec<String>> {
    let list = body.get(key)?.as_array()?;
    list.iter().map(|v| v.as_str().map(str::to_string)).collect()
}

fn normalize_email(raw: &str) -> Option<String> {
    Email::parse(raw).ok().map(|e| e.as_str().to_string())
}

// ---------------------------------------------------------------------------------------------
// Customers

/// An email with the accents of Latin letters taken off, for [`EmailMatch::FoldAccents`].
fn fold_accents(email: &str) -> String {
    const FROM: &str = "àáâãäåçèéêëìíîïñòóôõöøùúûüýÿ";
    const TO: &str = "aaaaaaceeeeiiiinoooooouuuuyy";
    email.chars().map(|c| FROM.chars().position(|f| f == c).and_then(|i| TO.chars().nth(i)).unwrap_or(c)).collect()
}

fn upsert_customer(org: &mut OrgState, cfg: &Config, body: &Map<String, Value>) -> Reply {
    let Some(raw_email) = nonempty(body, "email") else { return bad("Email is required") };
    let Some(email) = normalize_email(raw_email) else { return bad("Invalid email format") };
    let field = |k: &str| str_field(body, k).map(str::to_string);
    match nonempty(body, "telemetronCustomerId") {
        Some(id) => {
            if !org.customers.contains_key(id) {
                return not_found("Customer not found or does not belong to this organization");
            }
            if let Some(other) = org.by_email.get(&email).filter(|other| other.as_str() != id) {
                return (
                    StatusCode::CONFLICT,
                    json!({"error": "Another customer already has this email", "telemetronCustomerId": other}),
                );
            }
            let c = org.customers.get_mut(id).expect("checked above");
            let old_email = std::mem::replace(&mut c.email, email.clone());
            if let Some(n) = field("name").filter(|n| !n.is_empty()) {
                c.name = n;
            }
            let clears = cfg.empty_on_update == EmptyOnUpdate::Clears;
            if let Some(p) = field("phone").filter(|p| clears || !p.is_empty()) {
                c.phone = (!p.is_empty()).then_some(p);
            }
            if let Some(a) = field("address").filter(|a| clears || !a.is_empty()) {
                c.address = (!a.is_empty()).then_some(a);
            }
            c.updated_at = now();
            let id = c.id.clone();
            org.by_email.remove(&old_email);
            org.by_email.insert(email, id.clone());
            ok(json!({"success": true, "telemetronCustomerId": id, "message": "Customer updated successfully"}))
        }
        None => {
            let loose = || {
                let folded = fold_accents(&email);
                org.customers.values().find(|c| fold_accents(&c.email) == folded)
            };
            let existing = match cfg.email_match {
                EmailMatch::Exact => org.customer_by_email(&email),
                EmailMatch::FoldAccents => org.customer_by_email(&email).or_else(loose),
            };
            if let Some(existing) = existing {
                return (
                    StatusCode::CONFLICT,
                    json!({
                        "error": "Customer already exists with this email. Specify telemetronCustomerId to update fields.",
                        "telemetronCustomerId": existing.id,
                    }),
                );
            }
            let id = org.create_customer(&email, field("name").filter(|n| !n.is_empty()));
            let c = org.customers.get_mut(&id).expect("just created");
            c.phone = field("phone").filter(|p| !p.is_empty());
            c.address = field("address").filter(|a| !a.is_empty());
            ok(json!({"success": true, "telemetronCustomerId": id, "message": "Customer created successfully"}))
        }
    }
}

fn query_customer(org: &mut OrgState, body: &Map<String, Value>) -> Reply {
    let Some(raw) = nonempty(body, "email") else { return bad("Email is required") };
    let email = raw.trim().to_lowercase();
    match org.customer_by_email(&email) {
        Some(c) => ok(org.customer_json(c)),
        None => not_found("Customer not found"),
    }
}

fn get_customer(org: &mut OrgState, id: &str) -> Reply {
    if id.trim().is_empty() {
        return bad("Customer ID is required");
    }
    match org.customers.get(id) {
        Some(c) => ok(org.customer_json(c)),
        None => not_found("Customer not found"),
    }
}

// ---------------------------------------------------------------------------------------------
// Devices

fn upsert_device(org: &mut OrgState, cfg: &Config, body: &Map<String, Value>) -> Reply {
    let Some(identifier) = nonempty(body, "identifier") else {
        return bad("identifier is required and must be a non-empty string");
    };
    let device_type = match body.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if !t.trim().is_empty() => Some(t.clone()),
        Some(_) => return bad("type must be a non-empty string"),
    };
    let properties = match body.get("properties") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => return bad("properties must be a JSON object"),
    };
    if let Some(d) = org.devices.get_mut(identifier) {
        if let Some(t) = device_type {
            d.device_type = Some(t);
        }
        if let Some(p) = properties {
            match cfg.properties_on_update {
                PropertiesOnUpdate::Replace => d.properties = p,
                PropertiesOnUpdate::Merge => d.properties.extend(p),
            }
        }
        d.updated_at = now();
        return ok(json!({
            "success": true, "message": "Device updated successfully",
            "deviceId": d.id, "identifier": identifier, "type": d.device_type,
        }));
    }
    let Some(t) = device_type else { return bad("type is required when creating a new device") };
    let id = org.create_device(identifier, Some(t.clone()), properties.unwrap_or_default());
    ok(
        json!({"success": true, "message": "Device created successfully", "deviceId": id, "identifier": identifier, "type": t}),
    )
}

fn bulk_metadata(org: &mut OrgState, body: &Map<String, Value>) -> Reply {
    let Some(Value::Object(devices)) = body.get("devices") else {
        return bad("devices is required and must be an object mapping identifiers to metadata");
    };
    if devices.is_empty() {
        return bad("devices must contain at least one entry");
    }
    if devices.len() > BULK_METADATA_MAX {
        return bad("Too many devices. Maximum 1000 per request");
    }
    if let Some((k, _)) = devices.iter().find(|(_, v)| !v.is_object()) {
        return bad(&format!("Invalid metadata for device \"{k}\": must be a JSON object"));
    }
    let now = now();
    let (mut updated, mut not_found) = (0u64, 0u64);
    let mut results = Vec::with_capacity(devices.len());
    for (key, meta) in devices {
        let ident = key.trim();
        match org.devices.get_mut(ident) {
            Some(d) => {
                d.properties = meta.as_object().cloned().unwrap_or_default();
                d.updated_at = now.clone();
                updated += 1;
                results.push(json!({"identifier": ident, "deviceId": d.id, "status": "updated"}));
            }
            None => {
                not_found += 1;
                results.push(json!({"identifier": ident, "deviceId": "", "status": "not_found"}));
            }
        }
    }
    ok(json!({"success": true, "updated": updated, "notFound": not_found, "results": results}))
}

// ---------------------------------------------------------------------------------------------
// Assignments

/// Links a device to a customer; false when it already was.
fn link(org: &mut OrgState, customer_id: &str, identifier: &str) -> bool {
    let c = org.customers.get_mut(customer_id).expect("caller checked");
    if c.devices.iter().any(|d| d == identifier) {
        return false;
    }
    c.devices.push(identifier.to_string());
    c.updated_at = now();
    true
}

/// The customer's id, creating the customer (named after the email) if missing.
fn ensure_customer(org: &mut OrgState, email: &str) -> (String, bool) {
    match org.by_email.get(email) {
        Some(id) => (id.clone(), false),
        None => (org.create_customer(email, None), true),
    }
}

fn assign_device_to_owners(org: &mut OrgState, body: &Map<String, Value>) -> Reply {
    let Some(identifier) = nonempty(body, "deviceIdentifier") else { return bad("deviceIdentifier is required") };
    let Some(raw_emails) = string_list(body, "customerEmails").filter(|l| !l.is_empty()) else {
        return bad("customerEmails must be a non-empty array of emails");
    };
    let mut emails: Vec<String> = Vec::new();
    for e in raw_emails.iter().filter_map(|e| normalize_email(e)) {
        if !emails.contains(&e) {
            emails.push(e);
        }
    }
    if emails.is_empty() {
        return bad("No valid customer emails provided");
    }
    let auto_create = body.get("autoCreateDevice").and_then(Value::as_bool).unwrap_or(false);
    let device_type = nonempty(body, "deviceType").map(str::to_string);
    if auto_create && device_type.is_none() {
        return bad("deviceType is required when creating a new device");
    }
    let (device_id, created) = match org.devices.get(identifier) {
        Some(d) => (d.id.clone(), false),
        None if auto_create => (org.create_device(identifier, device_type, Map::new()), true),
        None => {
            return not_found(
                "Device not found with the provided identifier. Set autoCreateDevice to true to create it automatically.",
            );
        }
    };
    let mut assigned = Vec::new();
    for email in &emails {
        let (cid, was_created) = ensure_customer(org, email);
        link(org, &cid, identifier);
        assigned.push(json!({"email": email, "customerId": cid, "wasCreated": was_created}));
    }
    ok(json!({
        "success": true,
        "message": format!("Successfully assigned device to {} customer(s)", assigned.len()),
        "deviceId": device_id,
        "deviceWasCreated": created,
        "assignedCustomers": assigned,
    }))
}

fn assign_devices_to_owner(org: &mut OrgState, cfg: &Config, body: &Map<String, Value>) -> Reply {
    let Some(raw_email) = nonempty(body, "customerEmail") else { return bad("customerEmail is required") };
    let Some(email) = normalize_email(raw_email) else { return bad("Invalid email format") };
    let Some(idents) = string_list(body, "deviceIdentifiers").filter(|l| !l.is_empty()) else {
        return bad("deviceIdentifiers must be a non-empty array of strings");
    };
    let auto_create = body.get("autoCreateDevices").and_then(Value::as_bool).unwrap_or(false);
    let device_type = nonempty(body, "deviceType").map(str::to_string);
    if auto_create && device_type.is_none() {
        return bad("deviceType is required when autoCreateDevices is true");
    }
    let mut unique: Vec<&str> = Vec::new();
    for i in &idents {
        if !unique.contains(&i.as_str()) {
            unique.push(i);
        }
    }
    if !auto_create
        && cfg.all_unknown_assign == AllUnknownAssign::BadRequest
        && unique.iter().all(|i| !org.devices.contains_key(*i))
    {
        return bad("No valid devices found");
    }
    let (cid, customer_created) = ensure_customer(org, &email);
    let (mut assigned, mut already, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for ident in unique {
        if ident.trim().is_empty() {
            skipped.push(ident.to_string());
            continue;
        }
        let (device_id, created) = match org.devices.get(ident) {
            Some(d) => (d.id.clone(), false),
            None if auto_create => (org.create_device(ident, device_type.clone(), Map::new()), true),
            None => {
                skipped.push(ident.to_string());
                continue;
            }
        };
        let item = json!({"identifier": ident, "deviceId": device_id, "wasCreated": created});
        if link(org, &cid, ident) { assigned.push(item) } else { already.push(item) }
    }
    ok(json!({
        "success": true,
        "message": format!("Successfully assigned {} device(s) to customer", assigned.len()),
        "customerId": cid,
        "customerWasCreated": customer_created,
        "assignedDevices": assigned,
        "alreadyAssigned": already,
        "skipped": skipped,
    }))
}

fn unassign_device(org: &mut OrgState, body: &Map<String, Value>) -> Reply {
    let (Some(identifier), Some(raw_email)) = (nonempty(body, "deviceIdentifier"), nonempty(body, "customerEmail"))
    else {
        return bad("deviceIdentifier and customerEmail are required");
    };
    let Some(email) = normalize_email(raw_email) else { return bad("Invalid email format") };
    let Some(cid) = org.by_email.get(&email).cloned() else {
        return not_found("Customer not found for this organization");
    };
    let c = org.customers.get_mut(&cid).expect("indexed");
    let Some(pos) = c.devices.iter().position(|d| d == identifier) else {
        return (
            StatusCode::BAD_REQUEST,
            json!({
                "error": "Device is not assigned to this customer",
                "customerId": cid,
                "deviceIdentifier": identifier,
                "currentDevices": c.devices,
            }),
        );
    };
    c.devices.remove(pos);
    c.updated_at = now();
    ok(json!({
        "success": true,
        "message": "Device successfully unassigned from customer",
        "customerId": cid,
        "deviceIdentifier": identifier,
        "devicesRemaining": c.devices,
    }))
}

fn unassign_devices(org: &mut OrgState, body: &Map<String, Value>) -> Reply {
    let Some(raw_email) = nonempty(body, "customerEmail") else { return bad("customerEmail is required") };
    let Some(email) = normalize_email(raw_email) else { return bad("Invalid email format") };
    let Some(idents) = string_list(body, "deviceIdentifiers").filter(|l| !l.is_empty()) else {
        return bad("deviceIdentifiers must be a non-empty array of strings");
    };
    let Some(cid) = org.by_email.get(&email).cloned() else {
        return not_found("Customer not found for this organization");
    };
    let c = org.customers.get_mut(&cid).expect("indexed");
    let (mut removed, mut skipped) = (Vec::new(), Vec::new());
    for ident in idents {
        match c.devices.iter().position(|d| *d == ident) {
            Some(pos) => {
                c.devices.remove(pos);
                removed.push(ident);
            }
            None => skipped.push(ident),
        }
    }
    if !removed.is_empty() {
        c.updated_at = now();
    }
    ok(json!({
        "success": true,
        "message": format!("Successfully unassigned {} device(s) from customer", removed.len()),
        "customerId": cid,
        "unassignedDevices": removed,
        "skipped": skipped,
        "devicesRemaining": c.devices,
    }))
}

// ---------------------------------------------------------------------------------------------
// Tickets

const PRIORITIES: [&str; 4] = ["low", "medium", "high", "urgent"];
const ROLES: [&str; 3] = ["customer", "agent", "bot"];

fn create_ticket(org: &mut OrgState, body: &Map<String, Value>) -> Reply {
    let Some(title) = nonempty(body, "title") else { return bad("title is required") };
    if title.chars().count() > 255 {
        return bad("title must be at most 255 characters");
    }
    let priority = match body.get("priority") {
        None | Some(Value::Null) => "medium".to_string(),
        Some(Value::String(p)) if PRIORITIES.contains(&p.as_str()) => p.clone(),
        Some(_) => return bad("Invalid priority. Must be one of: low, medium, high, urgent"),
    };
    let messages = match body.get("messages") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => {
            let valid = list.iter().all(|m| {
                m.get("role").and_then(Value::as_str).is_some_and(|r| ROLES.contains(&r))
                    && m.get("content").is_some_and(Value::is_string)
            });
            if !valid {
                return bad("Invalid messages: each needs a role (customer, agent or bot) and a string content");
            }
            list.clone()
        }
        Some(_) => return bad("Invalid messages: must be an array"),
    };
    let customer_id = match (nonempty(body, "customerId"), nonempty(body, "customerEmail")) {
        (Some(id), _) => {
            if !org.customers.contains_key(id) {
                return not_found("Customer not found");
            }
            id.to_string()
        }
        (None, Some(raw)) => {
            let Some(email) = normalize_email(raw) else { return bad("Invalid email format") };
            ensure_customer(org, &email).0
        }
        (None, None) => return bad("Either customerEmail or customerId is required"),
    };
    let description = nonempty(body, "description").map(str::to_string).unwrap_or_else(|| {
        messages.iter().filter_map(|m| m.get("content").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
    });
    let id = org.new_uuid();
    org.tickets.push(TicketRec {
        id: id.clone(),
        title: title.to_string(),
        description,
        priority,
        customer_id,
        category: nonempty(body, "category").map(str::to_string),
        messages,
        created_at: now(),
    });
    ok(json!({"success": true, "ticketId": id, "message": "Ticket created successfully"}))
}
