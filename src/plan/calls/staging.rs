//! The calls for `apply`: the named customers' creates first, made as they are sent; the rest
//! with the assign and properties calls streamed as they are made.

use super::*;

/// The creates of customers with details beyond an email, which no assign call can make
/// (`autoCreateOwners` creates an email and nothing else): known without the grouping, so
/// `apply` sends them while [`calls_but_named_creates`] makes the rest. In the operations' order,
/// each made as it is asked for (a migration has millions, and they go out over hours), from
/// operations the iterator holds.
pub fn named_creates(ops: Arc<Vec<Operation>>) -> impl Iterator<Item = ApiCall> + Send {
    (0..ops.len()).filter_map(move |i| named_create(&ops[i]))
}

/// How many calls [`named_creates`] makes.
pub fn named_create_count(ops: &[Operation]) -> usize {
    ops.iter().filter(|op| named_create_of(op).is_some()).count()
}

pub(super) fn named_create_of(op: &Operation) -> Option<&CustomerCreate> {
    match op {
        Operation::CreateCustomer(c) if !email_only(&c.email, &c.record) => Some(c),
        _ => None,
    }
}

pub(super) fn named_create(op: &Operation) -> Option<ApiCall> {
    named_create_of(op).map(|c| ApiCall::CreateCustomer { email: c.email.clone(), record: c.record.clone() })
}

/// Which of the two phases [`staged_calls`] streams a call is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Late {
    Assign,
    Properties,
}

/// The calls of a plan, for `apply`: those of [`calls_but_named_creates`] (of [`calls`] when
/// `named`), the assign and properties calls one at a time. At a migration those two phases
/// are millions of calls, gigabytes beside the operations, and go out last, after hours of
/// creates: `first` is given the rest (the two phases empty) with how many calls each of the
/// two will have, before any of them is made; then `send` is given each assign call, then each
/// properties call, as they are made. `send` may wait (a bounded channel, read as the phases
/// run); once it answers false (nobody reads them any more), nothing more is made.
pub fn staged_calls(
    ops: &[Operation],
    batching: Batching,
    named: bool,
    first: impl FnOnce(Calls, usize, usize),
    send: impl FnMut(Late, ApiCall) -> bool,
) {
    let named = if named { Named::Include } else { Named::Leave };
    let mut staging = Staging { calls: Calls::default(), first: Some(first), send, gone: false };
    calls_into(ops, batching, named, &mut staging);
}

/// The sink of [`staged_calls`]: keeps the calls until [`Sink::late`], then streams.
pub(super) struct Staging<F, S> {
    pub(super) calls: Calls,
    /// `None` once the rest has been handed to it: from then on the assign and properties
    /// calls are sent.
    pub(super) first: Option<F>,
    pub(super) send: S,
    /// `send` answered false.
    pub(super) gone: bool,
}

impl<F: FnOnce(Calls, usize, usize), S: FnMut(Late, ApiCall) -> bool> Sink for Staging<F, S> {
    const ORDERED: bool = true;

    fn push(&mut self, phase: Phase, call: impl FnOnce() -> ApiCall) {
        let late = match phase {
            Phase::Assign => Late::Assign,
            Phase::Properties => Late::Properties,
            _ => return self.calls.push(phase, call),
        };
        if self.first.is_some() {
            // Only the assign calls made without a grouping come before `late`.
            self.calls.push(phase, call);
        } else if !self.gone {
            self.gone = !(self.send)(late, call());
        }
    }

    fn late(&mut self, assign: usize, properties: usize) {
        let made = std::mem::take(&mut self.calls.assign);
        debug_assert!(self.calls.properties.is_empty());
        if let Some(first) = self.first.take() {
            first(std::mem::take(&mut self.calls), made.len() + assign, properties);
        }
        for call in made {
            if self.gone {
                break;
            }
            self.gone = !(self.send)(Late::Assign, call);
        }
    }
}
