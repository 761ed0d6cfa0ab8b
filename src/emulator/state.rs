//! The emulator's records for one organization, and their JSON dump for the admin route.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub(super) struct CustomerRec {
    pub id: String,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    pub address: Option<String>,
    /// Identifiers of assigned devices, in assignment order.
    pub devices: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone)]
pub(super) struct DeviceRec {
    pub id: String,
    pub device_type: Option<String>,
    pub properties: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketRec {
    pub id: String,
    pub title: String,
    pub description: String,
    pub priority: String,
    pub customer_id: String,
    pub category: Option<String>,
    pub messages: Vec<Value>,
    pub created_at: String,
}

/// One organization's records.
#[derive(Debug)]
pub struct OrgState {
    pub(super) id: String,
    /// By customer id.
    pub(super) customers: BTreeMap<String, CustomerRec>,
    /// Lower-cased email → customer id.
    pub(super) by_email: HashMap<String, String>,
    /// By identifier.
    pub(super) devices: BTreeMap<String, DeviceRec>,
    pub(super) tickets: Vec<TicketRec>,
    next_id: u64,
}

impl OrgState {
    pub(super) fn new(id: String) -> OrgState {
        OrgState {
            id,
            customers: BTreeMap::new(),
            by_email: HashMap::new(),
            devices: BTreeMap::new(),
            tickets: Vec::new(),
            next_id: 0,
        }
    }

    /// A fresh id: `prefix` and 12 hex digits, deterministic in creation order.
    pub(super) fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        let h = self.next_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (self.id.len() as u64);
        format!("{prefix}{:012x}", h & 0xFFFF_FFFF_FFFF)
    }

    pub(super) fn new_uuid(&mut self) -> String {
        self.next_id += 1;
        let h = self.next_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            h >> 32,
            (h >> 16) & 0xFFFF,
            h & 0xFFF,
            (h >> 20) & 0xFFF,
            self.next_id
        )
    }

    pub(super) fn customer_by_email(&self, email: &str) -> Option<&CustomerRec> {
        self.customers.get(self.by_email.get(email)?)
    }

    /// Creates a customer named after its email's local part (what Telemetron does when it
    /// auto-creates one). `email` must be normalized.
    pub(super) fn create_customer(&mut self, email: &str, name: Option<String>) -> String {
        let id = self.new_id("cust_");
        let now = crate::time::now_rfc3339();
        let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or("").to_string());
        self.customers.insert(
            id.clone(),
            CustomerRec {
                id: id.clone(),
                email: email.to_string(),
                name,
                phone: None,
                address: None,
                devices: Vec::new(),
                created_at: now.clone(),
                updated_at: now,
            },
        );
        self.by_email.insert(email.to_string(), id.clone());
        id
    }

    pub(super) fn create_device(
        &mut self,
        identifier: &str,
        device_type: Option<String>,
        properties: Map<String, Value>,
    ) -> String {
        let id = self.new_id("dev_");
        let now = crate::time::now_rfc3339();
        self.devices.insert(
            identifier.to_string(),
            DeviceRec { id: id.clone(), device_type, properties, created_at: now.clone(), updated_at: now },
        );
        id
    }

    /// The customer as queryCustomer and getCustomer return it.
    pub(super) fn customer_json(&self, c: &CustomerRec) -> Value {
        let mut v = serde_json::json!({
            "id": c.id,
            "organizationId": self.id,
            "name": c.name,
            "email": c.email,
            "devices": c.devices,
            "orders": [],
            "metadata": {},
            "createdAt": c.created_at,
            "updatedAt": c.updated_at,
        });
        if let Some(p) = &c.phone {
            v["phone"] = p.clone().into();
        }
        if let Some(a) = &c.address {
            v["address"] = a.clone().into();
        }
        v
    }

    pub(super) fn drift(&mut self, d: &super::Drift) -> Result<(), String> {
        for ident in &d.delete_devices {
            self.devices.remove(ident).ok_or_else(|| format!("no device {ident}"))?;
            for c in self.customers.values_mut() {
                c.devices.retain(|x| x != ident);
            }
        }
        if d.customer.is_empty() && !d.delete_devices.is_empty() {
            return Ok(());
        }
        let email = d.customer.trim().to_lowercase();
        let id = self.by_email.get(&email).cloned().ok_or_else(|| format!("no customer {email}"))?;
        if d.delete {
            self.customers.remove(&id);
            self.by_email.remove(&email);
            return Ok(());
        }
        for ident in d.assign.iter().chain(&d.unassign) {
            if !self.devices.contains_key(ident) {
                return Err(format!("no device {ident}"));
            }
        }
        let c = self.customers.get_mut(&id).expect("indexed");
        for (field, value) in &d.set {
            let value = value.clone().filter(|v| !v.is_empty());
            match field.as_str() {
                "name" => c.name = value.unwrap_or_default(),
                "phone" => c.phone = value,
                "address" => c.address = value,
                other => return Err(format!("cannot set {other:?}: name, phone or address")),
            }
        }
        for ident in &d.assign {
            if !c.devices.contains(ident) {
                c.devices.push(ident.clone());
            }
        }
        c.devices.retain(|x| !d.unassign.contains(x));
        Ok(())
    }

    pub(super) fn dump(&self) -> OrgDump {
        let mut owners: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for c in self.customers.values() {
            for d in &c.devices {
                owners.entry(d).or_default().push(c.email.clone());
            }
        }
        let mut customers: Vec<Value> = self.customers.values().map(|c| self.customer_json(c)).collect();
        customers.sort_by(|a, b| a["email"].as_str().cmp(&b["email"].as_str()));
        OrgDump {
            id: self.id.clone(),
            customers,
            devices: self
                .devices
                .iter()
                .map(|(ident, d)| {
                    let mut o = owners.remove(ident.as_str()).unwrap_or_default();
                    o.sort();
                    DeviceDump {
                        id: d.id.clone(),
                        identifier: ident.clone(),
                        device_type: d.device_type.clone(),
                        properties: d.properties.clone(),
                        owners: o,
                        created_at: d.created_at.clone(),
                        updated_at: d.updated_at.clone(),
                    }
                })
                .collect(),
            tickets: self.tickets.clone(),
        }
    }
}

/// `GET /_emulator/state`.
#[derive(Debug, Clone, Serialize)]
pub struct StateDump {
    pub organizations: Vec<OrgDump>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrgDump {
    pub id: String,
    /// Sorted by email.
    pub customers: Vec<Value>,
    /// Sorted by identifier.
    pub devices: Vec<DeviceDump>,
    pub tickets: Vec<TicketRec>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceDump {
    pub id: String,
    pub identifier: String,
    #[serde(rename = "type")]
    pub device_type: Option<String>,
    pub properties: Map<String, Value>,
    /// Owners' emails, sorted.
    pub owners: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}
