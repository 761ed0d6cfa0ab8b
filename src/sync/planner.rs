//! The calls of a run, made on a thread of their own: from a plan's operations (the customers
//! named in creates first, the assign and properties calls fed as the executor reads them), or
//! handed over whole (`event`, whose calls are made by hand).

use std::sync::Arc;
use std::time::Instant;

use crate::error::Error;
use crate::execute::{self, Feeds};
use crate::plan::{self, ApiCall, Calls, Operation};
use crate::snapshot::Store;

use super::{Spec, Work};

/// How many assign or properties calls the planner makes ahead of the executor.
const FED_AHEAD: usize = 4096;

/// The calls sent before the rest are made: how many, and the calls, made as they are sent.
pub(super) type Early = (u64, Box<dyn Iterator<Item = ApiCall> + Send>);

/// A run's calls under way: the early ones, the rest once made (with their feeds), and their
/// count (all that the planner made).
pub(super) struct Planner {
    pub early: Early,
    pub made: tokio::sync::oneshot::Receiver<(Calls, Feeds)>,
    pub count: tokio::sync::oneshot::Receiver<u64>,
    pub thread: std::thread::JoinHandle<u64>,
}

impl Planner {
    /// Whether calls go out before the rest are made.
    pub fn apart(&self) -> bool {
        self.early.0 > 0
    }
}

/// Starts making the calls of `work`. For operations, the undo plan is stored meanwhile (before
/// any call is sent), serialized one inverse at a time, never built whole.
pub(super) fn start(work: Work, spec: &Spec<'_>, store: &mut Store, t: Instant) -> Result<Planner, Error> {
    let (made_tx, made) = tokio::sync::oneshot::channel::<(Calls, Feeds)>();
    let (count_tx, count) = tokio::sync::oneshot::channel::<u64>();
    let operations = match work {
        Work::Calls(mut calls) => {
            let n = calls.len() as u64;
            // The executor reads these two phases from feeds: they are fed all at once.
            let feeds = Feeds {
                assign: fed(std::mem::take(&mut calls.assign)),
                properties: fed(std::mem::take(&mut calls.properties)),
            };
            let thread = std::thread::spawn(move || {
                let _ = made_tx.send((calls, feeds));
                let _ = count_tx.send(n);
                n
            });
            return Ok(Planner { early: (0, Box::new(std::iter::empty())), made, count, thread });
        }
        Work::Operations(operations) => operations,
    };
    // Customers with details beyond an email need a create call whatever the grouping says:
    // those go out first, and the rest follows when it is made (a migration's grouping takes
    // as long as its reading).
    let early_calls = plan::named_create_count(&operations) as u64;
    let apart = early_calls > 0;
    let operations = Arc::new(operations);
    // Made as they are sent, from the operations, which they keep until the last is made.
    let early: Early = (early_calls, Box::new(plan::named_creates(operations.clone())));
    let thread = {
        let (operations, batching) = (operations.clone(), spec.batching);
        std::thread::spawn(move || {
            // The assign and properties calls are made as the executor reads them, a few
            // thousand ahead: at a migration they are gigabytes, and wanted only after hours.
            let (assign_tx, assign_rx) = tokio::sync::mpsc::channel(FED_AHEAD);
            let (properties_tx, properties_rx) = tokio::sync::mpsc::channel(FED_AHEAD);
            let mut made = 0;
            plan::staged_calls(
                &operations,
                batching,
                !apart,
                |calls, assign, properties| {
                    tracing::debug!(
                        elapsed_ms = t.elapsed().as_millis() as u64,
                        customers = calls.customers.len(),
                        devices = calls.devices.len(),
                        unassign = calls.unassign.len(),
                        assign,
                        customer_updates = calls.customer_updates.len(),
                        properties,
                        rss_mib = crate::mem::rss_mib(),
                        "calls made, but the assign and properties calls, made as they are sent"
                    );
                    made = (calls.len() + assign + properties) as u64;
                    let feeds = Feeds {
                        assign: execute::Feed { len: assign as u64, calls: assign_rx },
                        properties: execute::Feed { len: properties as u64, calls: properties_rx },
                    };
                    // Unheard only when the run ended before the calls were made.
                    let _ = made_tx.send((calls, feeds));
                    let _ = count_tx.send(made);
                },
                // False once the executor is gone: nothing more is made.
                |late, call| match late {
                    plan::Late::Assign => assign_tx.blocking_send(call).is_ok(),
                    plan::Late::Properties => properties_tx.blocking_send(call).is_ok(),
                },
            );
            made
        })
    };
    if let (Some(keep), false) = (spec.keep_undo, operations.is_empty()) {
        store.put_undo(spec.run_id, &plan::Inverse(&operations), keep)?;
        tracing::debug!(
            elapsed_ms = t.elapsed().as_millis() as u64,
            rss_mib = crate::mem::rss_mib(),
            "undo plan stored"
        );
    }
    Ok(Planner { early, made, count, thread })
}

/// A feed of calls made beforehand.
fn fed(calls: Vec<ApiCall>) -> execute::Feed {
    let (tx, rx) = tokio::sync::mpsc::channel(calls.len().max(1));
    let len = calls.len() as u64;
    for call in calls {
        // The channel holds them all; the receiver is right here.
        let _ = tx.try_send(call);
    }
    execute::Feed { len, calls: rx }
}

/// The operations of a run, for the guard: none for calls made by hand.
pub(super) fn operations(work: &Work) -> &[Operation] {
    match work {
        Work::Operations(ops) => ops,
        Work::Calls(_) => &[],
    }
}
