//! Reading customers back from Telemetron (`queryCustomer` lists a customer's devices), and
//! settling the journal with it before a writing run plans. An earlier run may have left
//! intents unsettled: assign or unassign calls whose outcome it never learned (a timeout or a
//! 5xx after the last retry, a stop during a retry, a kill in flight). The snapshot is made to
//! say what Telemetron answers for each pair, whichever way the call went. Only then does the
//! run plan, so no device stays assigned in Telemetron without the snapshot knowing it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use futures::StreamExt;

use crate::api;
use crate::client::{ApiError, Client, Rejection};
use crate::error::Error;
use crate::execute::{Caller, Options, Progress};
use crate::model::{Email, TelemetronId};
use crate::snapshot::Store;

/// A customer read back: `None` when the run stopped before reading it; `Ok(None)` for a 404
/// (Telemetron has no such customer, so none of its pairs is assigned).
pub type ReadBack = Option<Result<Option<api::Customer>, ApiError>>;

/// Reads `customers` back through `caller` (its rate limit, retries and stop), at most
/// `concurrency` at a time, in any order: the one read-back of settling, `verify` and `event`.
pub async fn read_back<'e>(
    client: &Client,
    caller: &Caller<'_>,
    concurrency: usize,
    customers: impl IntoIterator<Item = &'e Email>,
    progress: &dyn Progress,
) -> Vec<(&'e Email, ReadBack)> {
    futures::stream::iter(customers)
        .map(|email| async move {
            let r = caller.call(|| client.query_customer(email.as_str())).await.map(|r| match r {
                Ok(c) => Ok(Some(c)),
                Err(e) if e.rejection() == Some(&Rejection::NotFound) => Ok(None),
                Err(e) => Err(e),
            });
            progress.advance(1);
            (email, r)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// Settles every unsettled intent of the snapshot at `state`, creating or migrating it first;
/// says whether there were any (the snapshot then changed). The caller holds the snapshot's
/// lock. An error leaves the intents for the next run.
pub fn journal(state: &Path, client: &Client, opts: &Options) -> Result<bool, Error> {
    let mut store = Store::open(state)?;
    let intents = store.unsettled_intents()?;
    if intents.is_empty() {
        return Ok(false);
    }
    let customers: BTreeSet<Email> = intents.iter().map(|i| i.customer.clone()).collect();
    let runs: BTreeSet<i64> = intents.iter().map(|i| i.run_id).collect();
    tracing::warn!(
        pairs = intents.len(),
        customers = customers.len(),
        runs = ?runs,
        "earlier runs left calls whose outcome they did not learn; reading them back from Telemetron before planning"
    );
    let stop = AtomicBool::new(false);
    let answers = super::runtime()?.block_on(async {
        let caller = Caller::new(opts, &stop);
        read_back(client, &caller, opts.concurrency, &customers, &crate::execute::Silent).await
    });
    let mut found: BTreeMap<&Email, Option<(TelemetronId, BTreeSet<String>)>> = BTreeMap::new();
    for (email, answer) in answers {
        let e = match answer {
            Some(Ok(c)) => {
                found.insert(email, c.map(|c| (TelemetronId::new(&c.id), c.devices.into_iter().collect())));
                continue;
            }
            Some(Err(e)) => e.to_string(),
            None => "stopped".to_string(),
        };
        return Err(Error::Setup(format!(
            "{} call(s) of an earlier run have an unknown outcome, and reading {email} back from Telemetron failed ({e}); nothing was planned or sent. Run again when Telemetron answers",
            intents.len()
        )));
    }
    let (mut assigned, mut not_assigned) = (0u64, 0u64);
    let mut w = store.writer()?;
    for i in &intents {
        let holds = match &found[&i.customer] {
            Some((id, devices)) if devices.contains(i.device.as_str()) => {
                w.ensure_customer(&i.customer, Some(id))?;
                // Its type and properties are what the next plan compares (and sets).
                w.ensure_device(&i.device, None)?;
                w.assign(&i.device, &i.customer)?;
                assigned += 1;
                "assigned"
            }
            _ => {
                w.unassign(&i.device, &i.customer)?;
                not_assigned += 1;
                "not assigned"
            }
        };
        let kind = if i.assign { "assignments_added" } else { "assignments_removed" };
        let why = format!("run {} did not learn the outcome of its call; read back from Telemetron: {holds}", i.run_id);
        w.log(kind, &crate::model::pair_key(&i.device, &i.customer), "settled", &why)?;
        w.settle_intent(i.id)?;
    }
    w.commit()?;
    tracing::warn!(
        assigned,
        not_assigned,
        "settled the earlier run's calls: the snapshot now says what Telemetron holds for each pair"
    );
    Ok(true)
}
