//! `preserve_ordering`: final responses leave in the order their requests arrived, whichever
//! instance finished first. Each request takes a ticket when it is queued; a finished request
//! whose predecessors are not done yet waits in the gate, and every request (answered,
//! refused, cancelled) gives its ticket back exactly once, so the gate never stalls.

use std::collections::BTreeMap;

use parking_lot::Mutex;

type Deliver = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    /// The next ticket handed out.
    issued: u64,
    /// The next ticket whose response may leave.
    next: u64,
    /// Finished requests waiting for their predecessors.
    ready: BTreeMap<u64, Deliver>,
}

/// One model version's ordering gate.
#[derive(Default)]
pub struct OrderGate {
    state: Mutex<State>,
}

impl OrderGate {
    /// A ticket for a request being queued.
    pub fn ticket(&self) -> u64 {
        let mut s = self.state.lock();
        let t = s.issued;
        s.issued += 1;
        t
    }

    /// The request holding `ticket` is done: `deliver` runs once every earlier request is
    /// done too (at once if they are), followed by any later ones it was holding up.
    pub fn complete(&self, ticket: u64, deliver: Deliver) {
        let due: Vec<Deliver> = {
            let mut s = self.state.lock();
            s.ready.insert(ticket, deliver);
            let mut due = Vec::new();
            loop {
                let next = s.next;
                match s.ready.remove(&next) {
                    Some(d) => {
                        due.push(d);
                        s.next += 1;
                    }
                    None => break,
                }
            }
            due
        };
        // Deliver outside the lock, in order.
        for d in due {
            d();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn out_of_order_completions_leave_in_order() {
        let gate = OrderGate::default();
        let out = Arc::new(Mutex::new(Vec::new()));
        let tickets: Vec<u64> = (0..4).map(|_| gate.ticket()).collect();
        let record = |t: u64| {
            let out = Arc::clone(&out);
            Box::new(move || out.lock().push(t)) as Deliver
        };
        gate.complete(tickets[2], record(2));
        gate.complete(tickets[1], record(1));
        assert!(out.lock().is_empty(), "0 is not done yet");
        gate.complete(tickets[0], record(0));
        assert_eq!(*out.lock(), vec![0, 1, 2]);
        // A refused request gives its ticket back with nothing to deliver.
        gate.complete(tickets[3], Box::new(|| {}));
        let t = gate.ticket();
        gate.complete(t, record(4));
        assert_eq!(*out.lock(), vec![0, 1, 2, 4]);
    }
}
