//! The ad-hoc commands: one ext-v1 call (or a few) from the command line, for support staff
//! fixing one record by hand and for scripts. Each prints the API's answer as JSON on stdout;
//! failures go to stderr as one clear line.

use serde::Serialize;

use crate::api;
use crate::cli::exit::{Ended, Figures};
use crate::cli::settings::Settings;
use crate::cli::{AssignArgs, CustomerCommand, DeviceCommand, TicketCommand, UnassignArgs};
use crate::client::{ApiError, Client, Rejection};
use crate::error::Error;

use crate::sync::runtime;

fn client(s: &Settings) -> Result<Client, Error> {
    s.api()?.client()
}

fn print_json(value: &impl Serialize) -> Result<(), Error> {
    super::stdout_write(|out| {
        serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
        writeln!(out)
    })
}

/// `key=value` pairs (checked by the command line) into a JSON object of strings; a key given
/// twice keeps its last value.
fn properties(pairs: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    pairs.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect()
}

pub fn customer(cmd: &CustomerCommand, s: &Settings) -> Result<Ended, Error> {
    let rt = runtime()?;
    match cmd {
        CustomerCommand::Upsert { fields: crate::cli::CustomerFields { email, name, phone, address }, id } => {
            let client = client(s)?;
            let mut req = api::CustomerUpsert {
                email: email.as_str().to_string(),
                name: name.clone(),
                phone: phone.clone(),
                address: address.clone(),
                telemetron_customer_id: id.clone(),
            };
            let answer = rt.block_on(async {
                if req.telemetron_customer_id.is_some() {
                    return client.create_or_update_customer(&req).await;
                }
                match client.create_or_update_customer(&req).await {
                    Err(ApiError::Rejected {
                        rejection: Rejection::AlreadyExists { telemetron_customer_id }, ..
                    }) => {
                        // Create is not an upsert: take the existing customer's id and update it,
                        // once it is read back as this email's customer.
                        let found = match telemetron_customer_id {
                            Some(id) => client.get_customer(&id).await?,
                            None => client.query_customer(email.as_str()).await?,
                        };
                        crate::client::same_customer(email.as_str(), &found)?;
                        let id = found.id;
                        tracing::info!(customer = %id, "the email exists (409); updating that customer");
                        req.telemetron_customer_id = Some(id);
                        client.create_or_update_customer(&req).await
                    }
                    other => other,
                }
            })?;
            print_json(&answer)?;
        }
        CustomerCommand::Query { email } => {
            let client = client(s)?;
            print_json(&rt.block_on(client.query_customer(email.as_str()))?)?;
        }
        CustomerCommand::Get { id } => {
            let client = client(s)?;
            print_json(&rt.block_on(client.get_customer(id))?)?;
        }
    }
    Ok(Ended::done())
}

pub fn device(cmd: &DeviceCommand, s: &Settings) -> Result<Ended, Error> {
    let rt = runtime()?;
    match cmd {
        DeviceCommand::Upsert { identifier, device_type, properties: props } => {
            let req = api::DeviceUpsert {
                identifier: identifier.as_str().to_string(),
                device_type: device_type.clone(),
                properties: if props.is_empty() { None } else { Some(properties(props)) },
            };
            let client = client(s)?;
            print_json(&rt.block_on(client.upsert_device(&req))?)?;
            Ok(Ended::done())
        }
        DeviceCommand::Metadata { identifier, properties: props, from } => {
            // The command line takes exactly one of --identifier and --from, and --property
            // only with --identifier.
            let (batches, rejected) = match (identifier, from) {
                (Some(id), _) => {
                    let mut devices = std::collections::BTreeMap::new();
                    devices.insert(id.as_str().to_string(), properties(props));
                    (vec![api::BulkMetadata { devices }], 0)
                }
                (None, Some(path)) => metadata_from_csv(path, s)?,
                (None, None) => (Vec::new(), 0),
            };
            let client = client(s)?;
            let answers = rt.block_on(async {
                let mut answers = Vec::new();
                for b in &batches {
                    answers.push(client.bulk_metadata(b).await?);
                }
                Ok::<_, ApiError>(answers)
            })?;
            let not_found: Vec<&str> = answers
                .iter()
                .flat_map(|a| &a.results)
                .filter(|r| r.status != api::BulkMetadataStatus::Updated)
                .map(|r| r.identifier.as_str())
                .collect();
            if answers.len() == 1 {
                print_json(&answers[0])?;
            } else {
                print_json(&answers)?;
            }
            if !not_found.is_empty() {
                tracing::warn!(
                    "{} device(s) not found, so not updated (bulk-metadata never creates devices): {}",
                    not_found.len(),
                    not_found.iter().take(20).copied().collect::<Vec<_>>().join(", ")
                );
            }
            let figures = Figures {
                calls: answers.len() as u64,
                failed_operations: not_found.len() as u64,
                rejected_rows: rejected as u64,
                ..Figures::default()
            };
            Ok(Ended::counted(figures))
        }
    }
}

/// Every device of a devices export as bulk-metadata requests of at most 1,000 devices, and
/// how many rows were rejected.
fn metadata_from_csv(path: &std::path::Path, s: &Settings) -> Result<(Vec<api::BulkMetadata>, usize), Error> {
    let args = crate::cli::InputArgs { devices: Some(path.into()), ..Default::default() };
    let settings = crate::cli::settings::InputSettings::resolve(s, &args, None, true)?;
    let mut export = crate::load::read(&settings.sources)?;
    for r in &export.rejects {
        tracing::warn!("rejected {}", crate::cli::report::reject_line_for_log(r));
    }
    let devices = export.devices.take().map(|d| d.entries).unwrap_or_default();
    let mut sorted: Vec<_> = devices.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut batches = Vec::new();
    for chunk in sorted.chunks(api::BULK_METADATA_MAX) {
        let devices = chunk
            .iter()
            .map(|(id, e)| {
                let props = e.record.properties.to_map().into_iter().map(|(k, v)| (k, v.into())).collect();
                (id.to_string(), props)
            })
            .collect();
        batches.push(api::BulkMetadata { devices });
    }
    if batches.is_empty() {
        return Err(Error::BadFile {
            path: path.to_owned(),
            message: "no devices to send; it has no valid device row".into(),
        });
    }
    Ok((batches, export.rejected_rows()))
}

pub fn assign(args: &AssignArgs, s: &Settings) -> Result<Ended, Error> {
    let req = api::AssignDeviceToOwners {
        device_identifier: args.device.as_str().to_string(),
        customer_emails: args.customers.iter().map(|e| e.as_str().to_string()).collect(),
        auto_create_device: args.auto_create_device,
        device_type: args.device_type.clone(),
    };
    let client = client(s)?;
    print_json(&runtime()?.block_on(client.assign_device_to_owners(&req))?)?;
    Ok(Ended::done())
}

pub fn unassign(args: &UnassignArgs, s: &Settings) -> Result<Ended, Error> {
    let req = api::UnassignDeviceFromOwner {
        device_identifier: args.device.as_str().to_string(),
        customer_email: args.customer.as_str().to_string(),
    };
    let client = client(s)?;
    print_json(&runtime()?.block_on(client.unassign_device_from_owner(&req))?)?;
    Ok(Ended::done())
}

pub fn ticket(cmd: &TicketCommand, s: &Settings) -> Result<Ended, Error> {
    let TicketCommand::Create(args) = cmd;
    // The priority goes to the server as given, so that a wrong one is refused with its words.
    let req = api::CreateTicket {
        title: args.title.clone(),
        description: args.description.clone(),
        priority: args.priority.clone(),
        customer_email: args.customer_email.as_ref().map(|e| e.as_str().to_string()),
        customer_id: args.customer_id.clone(),
        category: args.category.clone(),
        messages: args.messages.clone(),
    };
    let client = client(s)?;
    print_json(&runtime()?.block_on(client.create_ticket(&req))?)?;
    Ok(Ended::done())
}
