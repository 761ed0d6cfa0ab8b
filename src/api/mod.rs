//! The ext-v1 wire format: request and response bodies of all ten endpoints, shared by the
//! client and the emulator so that they cannot drift apart.
//!
//! Written from `shared/docs/telemetron-ext-v1.md`. Responses are read tolerantly, because the
//! reference leaves much open: unknown fields are ignored, optional fields may be absent or
//! `null`, and flags such as `deviceWasCreated` default to `false` when missing. Requests leave
//! out what they do not set. Nothing here does IO.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where Telemetron serves ext-v1.
pub const DEFAULT_BASE_URL: &str = "https://admin.telemetron.ai/api/ext-v1";

/// The header that carries the API key.
pub const KEY_HEADER: &str = "x-api-key";

/// The documented cap on entries in one bulk-metadata request.
pub const BULK_METADATA_MAX: usize = 1000;

/// The ten endpoints, for messages, logs and per-endpoint meaning of status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Endpoint {
    CreateOrUpdateCustomer,
    QueryCustomer,
    GetCustomer,
    CreateOrUpdateDevice,
    BulkUpdateDeviceMetadata,
    AssignDeviceToOwners,
    AssignDevicesToOwner,
    UnassignDeviceFromOwner,
    UnassignDevicesFromOwner,
    CreateTicket,
}

impl Endpoint {
    pub const ALL: [Endpoint; 10] = [
        Endpoint::CreateOrUpdateCustomer,
        Endpoint::QueryCustomer,
        Endpoint::GetCustomer,
        Endpoint::CreateOrUpdateDevice,
        Endpoint::BulkUpdateDeviceMetadata,
        Endpoint::AssignDeviceToOwners,
        Endpoint::AssignDevicesToOwner,
        Endpoint::UnassignDeviceFromOwner,
        Endpoint::UnassignDevicesFromOwner,
        Endpoint::CreateTicket,
    ];

    /// The path below the base URL (`getCustomer` takes the id after it).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::CreateOrUpdateCustomer => "/customer/createOrUpdateCustomer",
            Endpoint::QueryCustomer => "/customer/queryCustomer",
            Endpoint::GetCustomer => "/customer/getCustomer",
            Endpoint::CreateOrUpdateDevice => "/device",
            Endpoint::BulkUpdateDeviceMetadata => "/device/bulk-metadata",
            Endpoint::AssignDeviceToOwners => "/deviceAssignment/assignDeviceToOwners",
            Endpoint::AssignDevicesToOwner => "/deviceAssignment/assignDevicesToOwner",
            Endpoint::UnassignDeviceFromOwner => "/deviceAssignment/unassignDeviceFromOwner",
            Endpoint::UnassignDevicesFromOwner => "/deviceAssignment/unassignDevicesFromOwner",
            Endpoint::CreateTicket => "/ticket/createTicket",
        }
    }

    /// The operation name the reference uses.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::CreateOrUpdateCustomer => "createOrUpdateCustomer",
            Endpoint::QueryCustomer => "queryCustomer",
            Endpoint::GetCustomer => "getCustomer",
            Endpoint::CreateOrUpdateDevice => "createOrUpdateDevice",
            Endpoint::BulkUpdateDeviceMetadata => "bulkUpdateDeviceMetadata",
            Endpoint::AssignDeviceToOwners => "assignDeviceToOwners",
            Endpoint::AssignDevicesToOwner => "assignDevicesToOwner",
            Endpoint::UnassignDeviceFromOwner => "unassignDeviceFromOwner",
            Endpoint::UnassignDevicesFromOwner => "unassignDevicesFromOwner",
            Endpoint::CreateTicket => "createTicket",
        }
    }
}

/// A check of one field's JSON value.
type Shape = fn(&serde_json::Value) -> bool;

impl Endpoint {
    /// Whether a 2xx body confirms the call, as the reference documents its success: `None`
    /// when it does, else what it lacks. A write's success carries `success: true` and its
    /// result (the customer's id, the device, the per-record results, the assignment lists);
    /// a read carries the customer with its id, email and `devices` (an object without
    /// `devices` says nothing of them, and must not read as "no devices").
    pub fn unconfirmed(self, body: &serde_json::Value) -> Option<String> {
        let has = |k: &str, want: Shape| body.get(k).is_some_and(want);
        let text = |v: &serde_json::Value| v.as_str().is_some_and(|s| !s.is_empty());
        let list = |v: &serde_json::Value| v.is_array();
        let needs: &[(&str, Shape)] = match self {
            Endpoint::QueryCustomer | Endpoint::GetCustomer => &[("id", text), ("email", text), ("devices", list)],
            Endpoint::CreateOrUpdateCustomer => &[("telemetronCustomerId", text)],
            Endpoint::CreateOrUpdateDevice => &[("identifier", text)],
            Endpoint::BulkUpdateDeviceMetadata => &[("results", list)],
            Endpoint::AssignDeviceToOwners => &[("assignedCustomers", list)],
            Endpoint::AssignDevicesToOwner => &[("assignedDevices", list)],
            Endpoint::UnassignDeviceFromOwner => &[("devicesRemaining", list)],
            Endpoint::UnassignDevicesFromOwner => &[("unassignedDevices", list)],
            Endpoint::CreateTicket => &[("ticketId", text)],
        };
        let write = !matches!(self, Endpoint::QueryCustomer | Endpoint::GetCustomer);
        if write && body.get("success") != Some(&serde_json::Value::Bool(true)) {
            return Some(match body.get("error").and_then(|e| e.as_str()) {
                Some(e) => format!("the answer says success is not true ({e:?})"),
                None => "the answer has no \"success\": true".to_string(),
            });
        }
        let missing: Vec<&str> = needs.iter().filter(|(k, want)| !has(k, *want)).map(|(k, _)| *k).collect();
        (!missing.is_empty()).then(|| format!("the answer lacks {}", missing.join(", ")))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

// ---------------------------------------------------------------------------------------------
// Customers

/// `POST /customer/createOrUpdateCustomer`. Without `telemetron_customer_id` it creates (409 if the
/// email exists); with it, it updates that customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerUpsert {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetron_customer_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerUpsertResponse {
    #[serde(default)]
    pub success: bool,
    #[serde(default)]
    pub telemetron_customer_id: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// `POST /customer/queryCustomer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerQuery {
    pub email: String,
}

/// The customer record that queryCustomer and getCustomer return (a bare object).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Identifiers (not ids) of the devices assigned to this customer.
    #[serde(default, deserialize_with = "null_as_default")]
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Devices

/// `POST /device`: an upsert keyed on `identifier`; creating needs `type`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceUpsert {
    pub identifier: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceUpsertResponse {
    #[serde(default)]
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub identifier: Option<String>,
    #[serde(rename = "type", default)]
    pub device_type: Option<String>,
}

/// `POST /device/bulk-metadata`: replaces each listed device's metadata wholesale.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkMetadata {
    /// Identifier → the device's complete new metadata object.
    pub devices: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkMetadataResponse {
    #[serde(default)]
    pub success: bool,
    #[serde(default)]
    pub updated: u64,
    #[serde(default)]
    pub not_found: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub results: Vec<BulkMetadataResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkMetadataResult {
    pub identifier: String,
    /// Empty when the device was not found.
    #[serde(default)]
    pub device_id: String,
    pub status: BulkMetadataStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkMetadataStatus {
    Updated,
    NotFound,
    /// Anything else a newer server says.
    #[serde(other)]
    Other,
}

// ---------------------------------------------------------------------------------------------
// Assignments

/// `POST /deviceAssignment/assignDeviceToOwners`: one device, many owners (additive).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignDeviceToOwners {
    pub device_identifier: String,
    pub customer_emails: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub auto_create_device: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignDeviceToOwnersResponse {
    #[serde(default)]
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub device_id: Option<String>,
    /// Missing means `false` (older docs sent it only with `autoCreateDevice`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub device_was_created: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub assigned_customers: Vec<AssignedCustomer>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedCustomer {
    pub email: String,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub was_created: bool,
}

/// `POST /deviceAssignment/assignDevicesToOwner`: many devices, one owner. Unknown devices are
/// *skipped* (not an error) unless `auto_create_devices` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignDevicesToOwner {
    pub customer_email: String,
    pub device_identifiers: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub auto_create_devices: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignDevicesToOwnerResponse {
    #[serde(default)]
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub customer_was_created: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub assigned_devices: Vec<AssignedDevice>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub already_assigned: Vec<AssignedDevice>,
    /// Identifiers not found (and not auto-created): these were **not** assigned.
    #[serde(default, deserialize_with = "null_as_default")]
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedDevice {
    pub identifier: String,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub was_created: bool,
}

/// `POST /deviceAssignment/unassignDeviceFromOwner`. Not idempotent: a repeat gets a 400.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnassignDeviceFromOwner {
    pub device_identifier: String,
    pub customer_email: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnassignDeviceFromOwnerResponse {
    #[serde(default)]
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub device_identifier: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub devices_remaining: Vec<String>,
}

/// `POST /deviceAssignment/unassignDevicesFromOwner`: identifiers not assigned are `skipped`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnassignDevicesFromOwner {
    pub customer_email: String,
    pub device_identifiers: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnassignDevicesFromOwnerResponse {
    #[serde(default)]
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub unassigned_devices: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub skipped: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub devices_remaining: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Tickets

/// `POST /ticket/createTicket`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTicket {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `low`, `medium` (the default), `high` or `urgent`; anything else gets a 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<TicketMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketMessage {
    /// `customer`, `agent` or `bot`.
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTicketResponse {
    #[serde(default)]
    pub success: bool,
    #[serde(default)]
    pub ticket_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An error body: `{"error": "..."}` plus whatever else the endpoint adds
/// (`telemetronCustomerId` on a 409, `currentDevices` on "not assigned").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetron_customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_devices: Option<Vec<String>>,
}

/// `null` reads as the type's default, as an absent field does.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_tolerate_missing_null_and_unknown_fields() {
        let r: AssignDeviceToOwnersResponse =
            serde_json::from_str(r#"{"success":true,"deviceId":"dev_1","assignedCustomers":null,"newField":1}"#)
                .unwrap();
        assert!(!r.device_was_created);
        assert!(r.assigned_customers.is_empty());
        let c: Customer = serde_json::from_str(r#"{"id":"c","email":"a@b.co","phone":null,"devices":null}"#).unwrap();
        assert_eq!(c.phone, None);
        assert!(c.devices.is_empty());
        let b: BulkMetadataResponse =
            serde_json::from_str(r#"{"results":[{"identifier":"x","deviceId":"","status":"archived"}]}"#).unwrap();
        assert_eq!(b.results[0].status, BulkMetadataStatus::Other);
    }

    #[test]
    fn requests_leave_out_what_they_do_not_set() {
        let r = AssignDevicesToOwner {
            customer_email: "a@b.co".into(),
            device_identifiers: vec!["D".into()],
            ..Default::default()
        };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"customerEmail":"a@b.co","deviceIdentifiers":["D"]}"#);
    }
}
