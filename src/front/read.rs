//! The reads of the front, on two threads: the three files and the snapshot, each read once.

use super::InputSettings;
use crate::error::Error;
use crate::load;
use crate::model::{Export, SnapshotData};
use crate::snapshot;

/// The reads, on two threads. The snapshot is read after the file of its kind, sharing every
/// key and record equal to the export's instead of holding a copy: this thread reads the
/// customers file, then the snapshot's customers, then (unless `with_ownership` is false: the
/// caller reads it later) the ownership file, once the devices file is read: its long
/// identifiers are shared too; the other the devices file, then the
/// snapshot's devices and assignments, on a second reader this thread opens and hands over.
/// (The owners of the snapshot's devices are not looked up among the customers: a search per
/// assignment on the other thread, the longer one, cost more time than the memory was worth.)
pub(super) fn read_all(settings: &InputSettings, with_ownership: bool) -> Reads {
    use std::sync::mpsc;
    let state = &settings.state;
    // What the devices thread needs from this one: a reader of its own, of the same state.
    let (hand_over, handed) = mpsc::sync_channel::<Option<snapshot::Reading>>(1);
    // What this thread needs from the other: the devices file, in `devices_file` once `read`
    // says so (or the other thread stopped, and the ownership file is read without it).
    let devices_file = std::sync::OnceLock::<Result<Export, Error>>::new();
    let (devices_read, read) = mpsc::sync_channel::<()>(1);
    let ((customers, snap_customers, ownership), snap_devices) = std::thread::scope(|s| {
        let devices_file = &devices_file;
        let other = s.spawn(move || {
            let devices = devices_file.get_or_init(|| load::read_part(&settings.sources, load::Part::Devices));
            let _ = devices_read.send(());
            // Nothing handed over: this thread stopped before it could; it reports why.
            let Ok(reading) = handed.recv() else { return None };
            let t = std::time::Instant::now();
            let share = devices.as_ref().ok().and_then(|e| e.devices.as_ref());
            let snap = reading.map(|r| r.devices(share).map(|d| (r.version().clone(), d)));
            tracing::debug!(
                elapsed_ms = t.elapsed().as_millis() as u64,
                rss_mib = crate::mem::rss_mib(),
                "snapshot's devices read"
            );
            snap
        });
        // The snapshot is opened first, so that the other thread can read its half whenever
        // it is ready for it.
        let opened = snapshot::open(state).and_then(|reading| {
            let Some(reading) = reading else { return Ok(None) };
            Ok(Some((reading.another()?, reading)))
        });
        let mine = match opened {
            Ok(Some((theirs, mine))) => {
                let _ = hand_over.send(Some(theirs));
                Ok(Some(mine))
            }
            Ok(None) => {
                let _ = hand_over.send(None);
                Ok(None)
            }
            Err(e) => {
                drop(hand_over);
                Err(e)
            }
        };
        // On one CPU the two threads would only take turns, each evicting what the other had
        // in the caches: the other one runs to its end first.
        let mut other = Some(other);
        let mut joined = None;
        if crate::model::one_cpu()
            && let Some(o) = other.take()
        {
            joined = Some(o.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        let customers = load::read_part(&settings.sources, load::Part::Customers);
        let share = customers.as_ref().ok().and_then(|e| e.customers.as_ref());
        let t = std::time::Instant::now();
        let snap = mine.map(|mine| mine.map(|mine| mine.customers(share).map(|c| (mine.version().clone(), c))));
        tracing::debug!(
            elapsed_ms = t.elapsed().as_millis() as u64,
            rss_mib = crate::mem::rss_mib(),
            "snapshot's customers read"
        );
        let ownership = if with_ownership {
            let devices = read.recv().ok().and_then(|()| devices_file.get()).and_then(|d| d.as_ref().ok());
            load::read_ownership_beside(&settings.sources, share, devices.and_then(|e| e.devices.as_ref()))
        } else {
            Ok(Export::default())
        };
        let theirs = match other {
            Some(o) => o.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            None => joined.flatten(),
        };
        ((customers, snap, ownership), theirs)
    });
    // Set by the other thread before anything else it did (it returned, so it did).
    let devices = devices_file.into_inner().unwrap_or_else(|| Ok(Export::default()));
    let share = snapshot::Share {
        customers: customers.as_ref().ok().and_then(|e| e.customers.as_ref()),
        devices: devices.as_ref().ok().and_then(|e| e.devices.as_ref()),
    };
    let snap = join_halves(state, share, snap_customers, snap_devices);
    Reads { customers, devices, ownership, snap }
}

/// One half of the snapshot as one reader read it, with the version that reader saw.
type Half<K, V, S> = Result<(crate::model::SnapshotVersion, (crate::model::SortedMap<K, V>, S)), Error>;

/// The snapshot from its two halves — when both readers saw one state of the file; otherwise a
/// writer committed between them (an `apply` beside a `plan`), and it is read again on one.
fn join_halves(
    state: &std::path::Path,
    share: snapshot::Share<'_>,
    customers: Result<
        Option<Half<crate::model::Email, crate::model::StoredCustomer, crate::model::SameCustomers>>,
        Error,
    >,
    devices: Option<Half<crate::model::DeviceIdent, crate::model::StoredDevice, crate::model::SameDevices>>,
) -> Result<SnapshotData, Error> {
    match (customers, devices) {
        (Err(e), _) => Err(e),
        (Ok(None), _) => Ok(SnapshotData::default()),
        (Ok(Some(Ok((version, (customers, same_customers))))), Some(Ok((theirs, (devices, same_devices)))))
            if theirs == version =>
        {
            Ok(SnapshotData { customers, devices, version, same_customers, same_devices })
        }
        (Ok(Some(Err(e))), _) | (_, Some(Err(e))) => Err(e),
        (Ok(Some(Ok(_))), _) => {
            tracing::debug!("the snapshot changed between its two readers; read again on one");
            snapshot::open(state).and_then(|r| r.map_or_else(|| Ok(SnapshotData::default()), |r| r.all(share)))
        }
    }
}

/// What [`read_all`] read, each with its own outcome.
pub(super) struct Reads {
    pub(super) customers: Result<Export, Error>,
    pub(super) devices: Result<Export, Error>,
    pub(super) ownership: Result<Export, Error>,
    pub(super) snap: Result<SnapshotData, Error>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CustomerRecord, DeviceIdent, DeviceRecord, Email, Properties};

    /// The two readers of `read_all` each see one state; when a write commits between their
    /// openings, the halves are of two states and must not be joined.
    #[test]
    fn halves_read_around_a_commit_are_read_again_as_one_state() {
        let dir =
            std::env::temp_dir().join(format!("tsync-halves-{}-{}", std::process::id(), snapshot::new_snapshot_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        let (email, dev) = (|s: &str| Email::parse(s).unwrap(), |s: &str| DeviceIdent::parse(s).unwrap());
        let typed = DeviceRecord { device_type: Some("t".into()), properties: Properties::empty() };
        let mut store = snapshot::Store::open(&path).unwrap();
        let mut w = store.writer().unwrap();
        w.put_customer(&email("a@b.co"), None, &CustomerRecord::default()).unwrap();
        w.put_device(&dev("D1"), None, &typed).unwrap();
        w.commit().unwrap();

        let first = snapshot::open(&path).unwrap().unwrap();
        // Another command writes between the two openings.
        let mut w = store.writer().unwrap();
        w.put_customer(&email("b@b.co"), None, &CustomerRecord::default()).unwrap();
        w.put_device(&dev("D2"), None, &typed).unwrap();
        w.commit().unwrap();
        let second = first.another().unwrap();
        assert_ne!(first.version(), second.version(), "the second reader sees the later state");

        let customers = first.customers(None).map(|c| (first.version().clone(), c));
        let devices = second.devices(None).map(|d| (second.version().clone(), d));
        let of_first_state = customers.as_ref().map(|(_, (c, _))| c.len()).unwrap();
        assert_eq!(of_first_state, 1, "the first reader still sees the state it began in");
        let joined = join_halves(&path, snapshot::Share::default(), Ok(Some(customers)), Some(devices)).unwrap();
        let now = snapshot::read(&path).unwrap();
        assert_eq!(joined.version, now.version);
        assert_eq!(joined.customers, now.customers, "not the first reader's customers");
        assert_eq!(joined.devices, now.devices);
        assert_eq!(joined.customers.len(), 2);

        // Readers of one state: their halves, as read.
        let (one, two) = (snapshot::open(&path).unwrap().unwrap(), snapshot::open(&path).unwrap().unwrap());
        let customers = one.customers(None).map(|c| (one.version().clone(), c));
        let devices = two.devices(None).map(|d| (two.version().clone(), d));
        let joined = join_halves(&path, snapshot::Share::default(), Ok(Some(customers)), Some(devices)).unwrap();
        assert_eq!((joined.customers, joined.devices), (now.customers, now.devices));
        let _ = std::fs::remove_dir_all(dir);
    }
}
