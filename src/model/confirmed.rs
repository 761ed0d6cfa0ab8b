//! What flows from the executor to the snapshot: Telemetron's confirmations (and refusals),
//! and the journal's intents. Defined here so that neither stage imports the other.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{CustomerRecord, DeviceIdent, Email, Properties, TelemetronId};

/// One (device, customer) ownership pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Assignment {
    pub device: DeviceIdent,
    pub customer: Email,
}

/// What Telemetron acknowledged; the snapshot records exactly these.
#[derive(Debug, Clone)]
pub enum Confirmed {
    Customer {
        email: Email,
        id: Option<TelemetronId>,
        record: CustomerRecord,
    },
    DeviceCreated {
        identifier: DeviceIdent,
        id: Option<TelemetronId>,
        device_type: Arc<str>,
        properties: Properties,
    },
    DeviceType {
        identifier: DeviceIdent,
        device_type: Arc<str>,
    },
    DeviceProperties {
        identifier: DeviceIdent,
        properties: Properties,
    },
    Assigned(Assignment),
    Unassigned(Assignment),
    /// Telemetron does not have this device (skipped, 404, not_found): the snapshot forgets it
    /// and its assignments, so the next run creates it deliberately, with its own type.
    DeviceMissing(DeviceIdent),
    /// Telemetron has no customer with this email (read back by `verify --heal`): the snapshot
    /// forgets it and its assignments, so the next run creates it again.
    CustomerMissing(Email),
    /// Not a confirmation: Telemetron refused this record on its own. The snapshot counts the
    /// runs in a row it was refused in, for the quarantine; a confirmation of it clears them.
    Refused(super::Refusal),
}

impl Confirmed {
    /// The record this confirms, keyed as refusals are: none for a record Telemetron does not
    /// have, or for a refusal.
    pub fn record_key(&self) -> Option<(super::RecordKind, String)> {
        use super::{RecordKind, pair_key};
        Some(match self {
            Confirmed::Customer { email, .. } => (RecordKind::Customer, email.to_string()),
            Confirmed::DeviceCreated { identifier, .. } | Confirmed::DeviceType { identifier, .. } => {
                (RecordKind::Device, identifier.to_string())
            }
            Confirmed::DeviceProperties { identifier, .. } => (RecordKind::Properties, identifier.to_string()),
            Confirmed::Assigned(a) => (RecordKind::Assignment, pair_key(&a.device, &a.customer)),
            Confirmed::Unassigned(a) => (RecordKind::Unassignment, pair_key(&a.device, &a.customer)),
            Confirmed::DeviceMissing(_) | Confirmed::CustomerMissing(_) | Confirmed::Refused(_) => return None,
        })
    }
}

/// A (device, customer) pair an assign or unassign call is about to be sent for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub assign: bool,
    pub device: DeviceIdent,
    pub customer: Email,
}
