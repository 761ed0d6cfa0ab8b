//! `plan --format json` written on every core: the bytes `serde_json::to_writer_pretty` writes,
//! with the operations — a migration's are 600 MB of JSON for a million devices — serialized
//! in chunks by worker threads and written in order as they come.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::plan::{Operation, Plan};

/// Operations per chunk: a few MB of JSON, enough that a chunk's overhead is nothing.
const CHUNK: usize = 4096;

/// The operations field as the pretty printer writes it when the list is empty: found once in
/// the document written without them (the fields before it are a constant and numbers).
const EMPTY: &[u8] = b"\n  \"operations\": []";

/// Writes `doc` pretty-printed, byte for byte as `serde_json::to_writer_pretty(out, doc)`.
/// The operations are taken out while the rest is serialized, and put back.
pub fn write_plan(out: &mut dyn Write, doc: &mut Plan) -> io::Result<()> {
    // A day's plan is a few MB: threads would only cost their memory.
    if doc.operations.len() < 16 * CHUNK {
        return serde_json::to_writer_pretty(out, &*doc).map_err(io::Error::from);
    }
    let operations = std::mem::take(&mut doc.operations);
    let head = serde_json::to_vec_pretty(&*doc).map_err(io::Error::from);
    doc.operations = operations;
    let head = head?;
    let at = memchr::memmem::find(&head, EMPTY)
        .ok_or_else(|| io::Error::other("the plan's JSON has no operations field"))?;
    let (before, after) = head.split_at(at + EMPTY.len() - 1);
    out.write_all(before)?;
    write_operations(out, &doc.operations)?;
    out.write_all(b"\n  ")?;
    out.write_all(after)
}

/// The elements of the operations array, from the newline before the first to the end of the
/// last, as they stand at depth 2 of the document.
fn write_operations(out: &mut dyn Write, operations: &[Operation]) -> io::Result<()> {
    let chunks: Vec<&[Operation]> = operations.chunks(CHUNK).collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4).min(chunks.len());
    let (next, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, io::Result<Vec<u8>>)>(2 * workers);
        for _ in 0..workers {
            let (tx, chunks, next, stop) = (tx.clone(), &chunks, &next, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(chunk) = chunks.get(i) else { break };
                    if tx.send((i, chunk_json(chunk, i == 0))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Written in order; a chunk done early waits here (a few, as the workers keep pace).
        let mut waiting: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut due = 0;
        let written = (|| {
            for (i, json) in &rx {
                waiting.insert(i, json?);
                while let Some(json) = waiting.remove(&due) {
                    out.write_all(&json)?;
                    due += 1;
                }
            }
            Ok(())
        })();
        // On an error the workers stop at their next chunk (and the channel is dropped).
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        written
    })
}

/// One chunk's elements: serialized as the only element of an array in an array, which puts
/// them at depth 2 as in the document, with the framing cut off; a chunk after the first
/// starts with the comma that separates it from the one before.
fn chunk_json(chunk: &[Operation], first: bool) -> io::Result<Vec<u8>> {
    let mut json = Vec::with_capacity(chunk.len() * 320);
    serde_json::to_writer_pretty(&mut json, &[chunk])?;
    // "[\n  [" ... "\n  ]\n]": the framing is cut off in place, the comma put where it was.
    json.truncate(json.len().saturating_sub(6));
    let from = if first { 5 } else { 4 };
    if !first {
        json[4] = b',';
    }
    json.drain(..from.min(json.len()));
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Assignment;
    use crate::model::{DeviceIdent, Email};

    /// Byte for byte what serde_json writes, for no operations, one, the least written on
    /// threads, and many chunks with a short last one.
    #[test]
    fn writes_what_serde_json_writes() {
        for n in [0, 1, 16 * CHUNK, 19 * CHUNK + 17] {
            let mut doc =
                crate::plan::build_uncounted(crate::diff::Diff::default(), &Default::default(), Default::default());
            doc.operations = (0..n)
                .map(|i| {
                    Operation::Assign(Assignment {
                        device: DeviceIdent::parse(&format!("D{i}")).unwrap(),
                        customer: Email::parse(&format!("c{i}@x.io")).unwrap(),
                    })
                })
                .collect();
            let want = serde_json::to_vec_pretty(&doc).unwrap();
            let mut got = Vec::new();
            write_plan(&mut got, &mut doc).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap(), "{n} operations");
            assert_eq!(doc.operations.len(), n, "the operations are put back");
        }
    }
}
