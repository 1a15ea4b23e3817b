//! The dynamic batcher (`dynamic_batching { ... }`): one thread per model version that holds
//! the queued requests and forms batches, handing each to the first idle instance.
//!
//! While every instance is busy the pending batch keeps growing, up to the largest preferred
//! batch size; an idle instance gets a batch at once when the queue holds a preferred size (or
//! when no delay is configured), otherwise after `max_queue_delay_microseconds` counted from
//! the oldest request. Requests are batched only with requests whose non-batch dimensions
//! match; a request whose client went away leaves the queue without running.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender, TryRecvError};

/// What the batcher needs to know of a queued request.
pub trait Batchable {
    /// Its share of a batch (its first dimension; 1 for models that do not batch).
    fn batch_size(&self) -> u64;
    /// Whether it may run in one batch with `other` (same inputs, same non-batch dims).
    fn compatible(&self, other: &Self) -> bool;
    /// When it was queued.
    fn enqueued(&self) -> Instant;
    /// Whether nobody waits for it any more.
    fn abandoned(&self) -> bool;
}

/// The model configuration's batching settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchPolicy {
    pub max_batch_size: u64,
    /// Ascending, not empty (Triton's default is `[max_batch_size]`).
    pub preferred: Vec<u64>,
    pub max_delay: Duration,
}

impl BatchPolicy {
    pub fn new(max_batch_size: u64, preferred: &[i32], max_delay_us: u64) -> BatchPolicy {
        let mut preferred: Vec<u64> = preferred
            .iter()
            .filter(|&&p| p > 0)
            .map(|&p| (p as u64).min(max_batch_size))
            .collect();
        if preferred.is_empty() {
            preferred.push(max_batch_size);
        }
        preferred.sort_unstable();
        preferred.dedup();
        BatchPolicy {
            max_batch_size: max_batch_size.max(1),
            preferred,
            max_delay: Duration::from_micros(max_delay_us),
        }
    }

    fn largest_preferred(&self) -> u64 {
        *self.preferred.last().expect("never empty")
    }
}

/// Why a batch was sent (logged at debug level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The largest preferred batch size was reached.
    Full,
    /// The pending requests make up a preferred batch size.
    Preferred,
    /// No delay is configured: an idle instance takes what there is.
    NoDelay,
    /// The oldest request waited `max_queue_delay_microseconds`.
    DelayExpired,
    /// The model is unloading: what is queued still runs.
    Draining,
}

/// What to do with the pending requests now.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Send the requests at these positions (ascending) as one batch.
    Send(Vec<usize>, Reason),
    /// Wait for more requests until this time (or indefinitely).
    Wait(Option<Instant>),
}

fn decide<J: Batchable>(
    pending: &VecDeque<J>,
    policy: &BatchPolicy,
    now: Instant,
    draining: bool,
) -> Decision {
    let Some(head) = pending.front() else {
        return Decision::Wait(None);
    };
    let target = policy.largest_preferred();
    let mut picked = Vec::new();
    let mut total = 0u64;
    for (i, job) in pending.iter().enumerate() {
        if i > 0 && !job.compatible(head) {
            continue;
        }
        let size = job.batch_size();
        if total + size > policy.max_batch_size || (total >= target) {
            break;
        }
        if total + size > target && total > 0 {
            break;
        }
        total += size;
        picked.push(i);
    }
    if total >= target {
        return Decision::Send(picked, Reason::Full);
    }
    if policy.preferred.contains(&total) {
        return Decision::Send(picked, Reason::Preferred);
    }
    if draining {
        return Decision::Send(picked, Reason::Draining);
    }
    if policy.max_delay.is_zero() {
        return Decision::Send(picked, Reason::NoDelay);
    }
    let due = head.enqueued() + policy.max_delay;
    if now >= due {
        Decision::Send(picked, Reason::DelayExpired)
    } else {
        Decision::Wait(Some(due))
    }
}

/// Removes the requests at `positions` (ascending) from `pending`, in order.
fn take<J>(pending: &mut VecDeque<J>, positions: &[usize]) -> Vec<J> {
    let mut batch = Vec::with_capacity(positions.len());
    for (removed, &p) in positions.iter().enumerate() {
        if let Some(job) = pending.remove(p - removed) {
            batch.push(job);
        }
    }
    batch
}

/// Runs the batcher until `input` is closed and everything queued was handed out. `cancel`
/// answers a request that leaves the queue without running.
pub fn run<J: Batchable>(
    model: &str,
    policy: BatchPolicy,
    input: Receiver<J>,
    instances: Sender<Vec<J>>,
    cancel: impl Fn(J),
) {
    let mut pending: VecDeque<J> = VecDeque::new();
    let mut draining = false;
    loop {
        // Take in what has arrived.
        while !draining {
            match input.try_recv() {
                Ok(job) => pending.push_back(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => draining = true,
            }
        }
        // Requests nobody waits for leave the queue.
        if pending.iter().any(Batchable::abandoned) {
            let (gone, kept): (Vec<J>, Vec<J>) = pending.drain(..).partition(Batchable::abandoned);
            pending = kept.into();
            gone.into_iter().for_each(&cancel);
        }
        if draining && pending.is_empty() {
            return;
        }
        match decide(&pending, &policy, Instant::now(), draining) {
            Decision::Send(positions, reason) => {
                // Hand the batch to the first idle instance; a request arriving meanwhile may
                // change the decision (a bigger batch).
                let mut select = Select::new();
                let send = select.send(&instances);
                let recv = (!draining).then(|| select.recv(&input));
                let op = select.select();
                if op.index() == send {
                    let batch = take(&mut pending, &positions);
                    let size: u64 = batch.iter().map(Batchable::batch_size).sum();
                    tracing::debug!(
                        "model '{model}': batch of {} request(s), batch size {size}, closed: {reason:?}",
                        batch.len()
                    );
                    if let Err(failed) = op.send(&instances, batch) {
                        // Every instance is gone: nothing can run these.
                        failed.into_inner().into_iter().for_each(&cancel);
                        pending.drain(..).for_each(&cancel);
                        return;
                    }
                } else if Some(op.index()) == recv {
                    match op.recv(&input) {
                        Ok(job) => pending.push_back(job),
                        Err(_) => draining = true,
                    }
                }
            }
            Decision::Wait(until) => {
                let next = match until {
                    Some(t) => input.recv_timeout(t.saturating_duration_since(Instant::now())),
                    None => input.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                match next {
                    Ok(job) => pending.push_back(job),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => draining = true,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Debug)]
    struct J {
        id: usize,
        size: u64,
        dims: u32,
        at: Instant,
        gone: Arc<AtomicBool>,
    }

    impl Batchable for J {
        fn batch_size(&self) -> u64 {
            self.size
        }
        fn compatible(&self, other: &Self) -> bool {
            self.dims == other.dims
        }
        fn enqueued(&self) -> Instant {
            self.at
        }
        fn abandoned(&self) -> bool {
            self.gone.load(Ordering::Relaxed)
        }
    }

    fn job(id: usize, size: u64, dims: u32, at: Instant) -> J {
        J {
            id,
            size,
            dims,
            at,
            gone: Arc::new(AtomicBool::new(false)),
        }
    }

    fn ids(pending: &VecDeque<J>, d: &Decision) -> Vec<usize> {
        match d {
            Decision::Send(p, _) => p.iter().map(|&i| pending[i].id).collect(),
            Decision::Wait(_) => vec![],
        }
    }

    #[test]
    fn preferred_sizes_and_delay() {
        let now = Instant::now();
        let policy = BatchPolicy::new(8, &[4, 8], 100);
        let mut q: VecDeque<J> = (0..3).map(|i| job(i, 1, 16, now)).collect();
        // 3 requests: no preferred size, delay not expired -> wait until the oldest is due.
        assert_eq!(
            decide(&q, &policy, now, false),
            Decision::Wait(Some(now + Duration::from_micros(100)))
        );
        // ... and then send what there is.
        let later = now + Duration::from_micros(100);
        assert_eq!(
            decide(&q, &policy, later, false),
            Decision::Send(vec![0, 1, 2], Reason::DelayExpired)
        );
        // 4 make a preferred size: sent at once.
        q.push_back(job(3, 1, 16, now));
        assert_eq!(
            decide(&q, &policy, now, false),
            Decision::Send(vec![0, 1, 2, 3], Reason::Preferred)
        );
        // 10 queued: the largest preferred size (8) goes first.
        for i in 4..10 {
            q.push_back(job(i, 1, 16, now));
        }
        let d = decide(&q, &policy, now, false);
        assert_eq!(ids(&q, &d), (0..8).collect::<Vec<_>>());
        assert!(matches!(d, Decision::Send(_, Reason::Full)));
    }

    #[test]
    fn requests_with_other_dims_wait_for_their_own_batch_and_big_requests_fit() {
        let now = Instant::now();
        let policy = BatchPolicy::new(8, &[], 0);
        let q: VecDeque<J> = vec![
            job(0, 2, 16, now),
            job(1, 3, 32, now),
            job(2, 5, 16, now),
            job(3, 2, 16, now),
        ]
        .into();
        // head dims 16: 2 + 5 = 7, then 2 more would exceed 8
        let d = decide(&q, &policy, now, false);
        assert_eq!(ids(&q, &d), vec![0, 2]);
        assert!(matches!(d, Decision::Send(_, Reason::NoDelay)));
    }

    #[test]
    fn batches_grow_while_instances_are_busy_and_the_queue_drains_at_the_end() {
        let (in_tx, in_rx) = crossbeam_channel::unbounded();
        let (out_tx, out_rx) = crossbeam_channel::bounded::<Vec<J>>(0);
        let cancelled = Arc::new(std::sync::Mutex::new(Vec::new()));
        let c = Arc::clone(&cancelled);
        let batcher = std::thread::spawn(move || {
            run(
                "m",
                BatchPolicy::new(8, &[8], 1_000_000),
                in_rx,
                out_tx,
                move |j: J| c.lock().unwrap().push(j.id),
            )
        });
        // No instance takes a batch yet: 11 requests arrive, one of them abandoned.
        let now = Instant::now();
        for i in 0..11 {
            let j = job(i, 1, 16, now);
            if i == 5 {
                j.gone.store(true, Ordering::Relaxed);
            }
            in_tx.send(j).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        // The first idle instance gets the full preferred batch of 8 (5 left out).
        let first: Vec<usize> = out_rx.recv().unwrap().into_iter().map(|j| j.id).collect();
        assert_eq!(first, vec![0, 1, 2, 3, 4, 6, 7, 8]);
        // Closing the queue: the rest runs before the batcher ends, without waiting the delay.
        drop(in_tx);
        let rest: Vec<usize> = out_rx.recv().unwrap().into_iter().map(|j| j.id).collect();
        assert_eq!(rest, vec![9, 10]);
        batcher.join().unwrap();
        assert_eq!(*cancelled.lock().unwrap(), vec![5]);
    }
}
