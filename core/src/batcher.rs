//! The dynamic batcher (`dynamic_batching { ... }`): one thread per model version that holds
//! the queued requests and forms batches, handing each to the first idle instance.
//!
//! While every instance is busy the pending batch keeps growing, up to the largest preferred
//! batch size; an idle instance gets a batch at once when the queue holds a preferred size (or
//! when no delay is configured), otherwise after `max_queue_delay_microseconds` counted from
//! the oldest request. Requests are batched only with requests whose non-batch dimensions
//! match; a request whose client went away leaves the queue without running.
//!
//! Priorities and queue policies (`priority_levels`, `default_queue_policy`,
//! `priority_queue_policy`): higher levels (1 is the highest) are served first; each level's
//! queue may be bounded (`max_queue_size`, refused with UNAVAILABLE at once) and its requests
//! may time out (`default_timeout_microseconds`, or the request's `timeout` parameter when
//! `allow_timeout_override`): REJECT answers UNAVAILABLE, DELAY moves the request behind
//! everything else. Timeouts are driven by the batcher's own timer, not by instances freeing
//! up.

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
    /// Its priority level, 0-based (0 is served first).
    fn level(&self) -> usize {
        0
    }
    /// When it times out in the queue, and what happens then.
    fn timeout(&self) -> Option<(Instant, TimeoutAction)> {
        None
    }
}

/// What happens to a request that waits in the queue past its timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutAction {
    /// Answered UNAVAILABLE "Request timeout expired".
    Reject,
    /// Moved behind every other request.
    Delay,
}

/// Why a request left the queue without running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Its client went away.
    Abandoned,
    /// It timed out with the REJECT action.
    TimedOut,
    /// Every instance is gone.
    NoInstance,
}

/// One level's queue policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePolicy {
    pub action: TimeoutAction,
    pub default_timeout: Option<Duration>,
    pub allow_override: bool,
    /// 0: unbounded.
    pub max_queue_size: usize,
}

impl QueuePolicy {
    fn from_proto(p: &ferrite_proto::inference::ModelQueuePolicy) -> QueuePolicy {
        QueuePolicy {
            action: if p.timeout_action == 1 {
                TimeoutAction::Delay
            } else {
                TimeoutAction::Reject
            },
            default_timeout: (p.default_timeout_microseconds > 0)
                .then(|| Duration::from_micros(p.default_timeout_microseconds)),
            allow_override: p.allow_timeout_override,
            max_queue_size: p.max_queue_size as usize,
        }
    }
}

/// Priority levels and their queue policies; counts each level's queued requests so that a
/// full queue refuses at once, on the caller's thread.
#[derive(Debug)]
pub struct Queues {
    default_level: usize,
    policies: Vec<QueuePolicy>,
    counts: Vec<std::sync::atomic::AtomicUsize>,
}

/// A request's place in its level's queue: freed when dropped (the request ran, was answered
/// without running, or was never queued).
#[derive(Debug)]
pub struct QueuePlace {
    queues: std::sync::Arc<Queues>,
    level: usize,
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.queues.counts[self.level].fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Where an admitted request queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    pub level: usize,
    pub timeout: Option<(Instant, TimeoutAction)>,
}

impl Queues {
    pub fn from_config(db: &ferrite_proto::inference::ModelDynamicBatching) -> Queues {
        let levels = (db.priority_levels as usize).max(1);
        let default_policy = db
            .default_queue_policy
            .as_ref()
            .map(QueuePolicy::from_proto)
            .unwrap_or(QueuePolicy {
                action: TimeoutAction::Reject,
                default_timeout: None,
                allow_override: false,
                max_queue_size: 0,
            });
        let policies = (1..=levels as u64)
            .map(|level| {
                db.priority_queue_policy
                    .get(&level)
                    .map(QueuePolicy::from_proto)
                    .unwrap_or(default_policy)
            })
            .collect();
        let default_level = match db.default_priority_level as usize {
            0 => levels.div_ceil(2).saturating_sub(1),
            n => (n - 1).min(levels - 1),
        };
        Queues {
            default_level,
            policies,
            counts: (0..levels).map(|_| Default::default()).collect(),
        }
    }

    /// Places a request: its level from the `priority` parameter (1 is the highest; 0 or out
    /// of range means the default level, as in Triton), its timeout from the level's policy or
    /// the `timeout` parameter (microseconds) where the policy allows it. Refuses it when its
    /// level's queue is full. The place is held until the returned [`QueuePlace`] is dropped.
    pub fn admit(
        self: &std::sync::Arc<Self>,
        parameters: &crate::request::Parameters,
        now: Instant,
        model: &str,
    ) -> crate::Result<(Admission, QueuePlace)> {
        use std::sync::atomic::Ordering;
        let number = |key: &str| parameters.get(key).and_then(serde_json::Value::as_u64);
        let level = match number("priority") {
            Some(p) if p >= 1 && (p as usize) <= self.policies.len() => p as usize - 1,
            _ => self.default_level,
        };
        let policy = &self.policies[level];
        let timeout = match number("timeout") {
            Some(us) if policy.allow_override && us > 0 => Some(Duration::from_micros(us)),
            _ => policy.default_timeout,
        };
        if policy.max_queue_size > 0 {
            let admitted = self.counts[level]
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < policy.max_queue_size).then_some(n + 1)
                })
                .is_ok();
            if !admitted {
                return Err(crate::Error::unavailable(format!(
                    "Exceeds maximum queue size for model '{model}'"
                )));
            }
        } else {
            self.counts[level].fetch_add(1, Ordering::AcqRel);
        }
        let place = QueuePlace {
            queues: std::sync::Arc::clone(self),
            level,
        };
        Ok((
            Admission {
                level,
                // A timeout too far to reckon (a client's u64::MAX) is none at all.
                timeout: timeout
                    .and_then(|t| now.checked_add(t))
                    .map(|at| (at, policy.action)),
            },
            place,
        ))
    }

    pub fn levels(&self) -> usize {
        self.policies.len()
    }
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
pub(crate) enum Decision {
    /// Send the requests at these positions (ascending) as one batch.
    Send(Vec<usize>, Reason),
    /// Wait for more requests until this time (or indefinitely).
    Wait(Option<Instant>),
}

/// A queued request and its place: `rank` orders the queue (its level; delayed requests go
/// behind every level).
struct Entry<J> {
    job: J,
    rank: usize,
}

impl<J> std::ops::Deref for Entry<J> {
    type Target = J;
    fn deref(&self) -> &J {
        &self.job
    }
}

/// Puts `entry` behind every entry of its rank or a higher one.
fn insert<J>(pending: &mut VecDeque<Entry<J>>, entry: Entry<J>) {
    let at = pending
        .iter()
        .rposition(|e| e.rank <= entry.rank)
        .map_or(0, |i| i + 1);
    pending.insert(at, entry);
}

/// Triton's `DynamicBatchScheduler::GetDynamicBatch`, for a batch not yet handed out. The
/// queue is walked in order (highest priority first) and the batch is always a prefix of it:
/// it ends where the next request would exceed `max_batch_size` or has other shapes than the
/// batch (then it goes at once: it cannot grow), and it is cut back to the last preferred size
/// it passed, or to where it first outgrew the largest preferred size, which goes at once
/// while the oldest request's delay has not run out. Otherwise it waits for more requests
/// until that delay runs out, then goes as it is.
fn decide<J: Batchable>(
    pending: &VecDeque<Entry<J>>,
    policy: &BatchPolicy,
    now: Instant,
    draining: bool,
) -> Decision {
    let Some(head) = pending.front() else {
        return Decision::Wait(None);
    };
    let queue = pending
        .iter()
        .map(|e| (e.batch_size(), e.job.compatible(&head.job)));
    decide_queue(queue, head.enqueued(), policy, now, draining)
}

/// [`decide`] over a queue given as each request's batch size and whether it may join the
/// head's batch, the head queued at `head_enqueued` (the `oldest` sequence batcher forms its
/// batches with the same rules, as Triton's runs a dynamic batcher over its sequences).
pub(crate) fn decide_queue(
    queue: impl Iterator<Item = (u64, bool)>,
    head_enqueued: Instant,
    policy: &BatchPolicy,
    now: Instant,
    draining: bool,
) -> Decision {
    let max_preferred = policy.largest_preferred();
    let mut size = 0u64;
    let mut count = 0usize;
    // (requests, batch size) of the preferred cut, once there is one.
    let mut best: Option<usize> = None;
    let mut cannot_grow = false;
    for (next, compatible) in queue {
        let next = next.max(1);
        if count > 0 {
            if size + next > max_preferred && best.is_none() {
                best = Some(count);
            }
            if size + next > policy.max_batch_size || !compatible {
                cannot_grow = true;
                break;
            }
        }
        size += next;
        count += 1;
        if policy.preferred.contains(&size) {
            best = Some(count);
        }
    }
    if count == 0 {
        return Decision::Wait(None);
    }
    let all = || (0..count).collect::<Vec<_>>();
    let delay_exceeded = !policy.max_delay.is_zero() && now >= head_enqueued + policy.max_delay;
    if let Some(best) = best
        && !delay_exceeded
    {
        let reason = if best == count && size >= max_preferred {
            Reason::Full
        } else {
            Reason::Preferred
        };
        return Decision::Send((0..best).collect(), reason);
    }
    if cannot_grow || size >= max_preferred {
        return Decision::Send(all(), Reason::Full);
    }
    if draining {
        return Decision::Send(all(), Reason::Draining);
    }
    if policy.max_delay.is_zero() {
        return Decision::Send(all(), Reason::NoDelay);
    }
    if delay_exceeded {
        Decision::Send(all(), Reason::DelayExpired)
    } else {
        Decision::Wait(Some(head_enqueued + policy.max_delay))
    }
}

/// Removes the requests at `positions` (ascending) from `pending`, in order.
fn take<J>(pending: &mut VecDeque<Entry<J>>, positions: &[usize]) -> Vec<J> {
    let mut batch = Vec::with_capacity(positions.len());
    for (removed, &p) in positions.iter().enumerate() {
        if let Some(entry) = pending.remove(p - removed) {
            batch.push(entry.job);
        }
    }
    batch
}

/// The earliest queue timeout among `pending` (delayed requests, ranked at or beyond
/// `levels`, time out no more).
fn next_timeout<J: Batchable>(pending: &VecDeque<Entry<J>>, levels: usize) -> Option<Instant> {
    pending
        .iter()
        .filter(|e| e.rank < levels)
        .filter_map(|e| e.timeout())
        .map(|(at, _)| at)
        .min()
}

/// Applies what is due: abandoned requests and rejected timeouts leave the queue, delayed
/// ones move behind everything.
fn expire<J: Batchable>(
    pending: &mut VecDeque<Entry<J>>,
    levels: usize,
    now: Instant,
    drop: &impl Fn(J, Dropped),
) {
    if !pending
        .iter()
        .any(|e| e.abandoned() || e.rank < levels && e.timeout().is_some_and(|(at, _)| at <= now))
    {
        return;
    }
    let mut delayed = Vec::new();
    for entry in std::mem::take(pending) {
        let due = entry.rank < levels && entry.timeout().is_some_and(|(at, _)| at <= now);
        if entry.abandoned() {
            drop(entry.job, Dropped::Abandoned);
        } else if due
            && entry
                .timeout()
                .is_some_and(|(_, action)| action == TimeoutAction::Reject)
        {
            drop(entry.job, Dropped::TimedOut);
        } else if due {
            delayed.push(Entry {
                job: entry.job,
                rank: levels,
            });
        } else {
            pending.push_back(entry);
        }
    }
    pending.extend(delayed);
}

/// How early a timed wait for the queue delay wakes to watch the queue itself: a parked
/// thread takes tens of microseconds to run again once its timer fires (more on a busy
/// machine), which a delay of 100 us cannot absorb.
const WAKE_EARLY: Duration = Duration::from_micros(50);

/// The next request, or `Timeout` at `deadline`: parked until shortly before it, then
/// watching the queue until it is due, so that the batch goes on time.
fn wait_until<J>(input: &Receiver<J>, deadline: Instant) -> Result<J, RecvTimeoutError> {
    let now = Instant::now();
    if deadline > now + WAKE_EARLY {
        match input.recv_timeout(deadline - WAKE_EARLY - now) {
            Err(RecvTimeoutError::Timeout) => {}
            other => return other,
        }
    }
    loop {
        match input.try_recv() {
            Ok(job) => return Ok(job),
            Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) if Instant::now() >= deadline => {
                return Err(RecvTimeoutError::Timeout);
            }
            Err(TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
}

/// Runs the batcher until `input` is closed and everything queued was handed out. `drop`
/// answers a request that leaves the queue without running; `levels` is the number of
/// priority levels (ranks at or beyond it are delayed requests).
pub fn run<J: Batchable>(
    model: &str,
    policy: BatchPolicy,
    levels: usize,
    input: Receiver<J>,
    instances: Sender<Vec<J>>,
    drop: impl Fn(J, Dropped),
) {
    // The delay is a bound: waits on it must not overrun by the kernel's timer slack.
    crate::clock::precise_timed_waits();
    let mut pending: VecDeque<Entry<J>> = VecDeque::new();
    let mut draining = false;
    let admit = |pending: &mut VecDeque<Entry<J>>, job: J| {
        let rank = job.level();
        insert(pending, Entry { job, rank });
    };
    loop {
        // Take in what has arrived.
        while !draining {
            match input.try_recv() {
                Ok(job) => admit(&mut pending, job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => draining = true,
            }
        }
        expire(&mut pending, levels, Instant::now(), &drop);
        if draining && pending.is_empty() {
            return;
        }
        let timeout = next_timeout(&pending, levels);
        match decide(&pending, &policy, Instant::now(), draining) {
            Decision::Send(positions, reason) => {
                // Hand the batch to the first idle instance; a request arriving meanwhile may
                // change the decision (a bigger batch), and so may a timeout falling due.
                let mut select = Select::new();
                let send = select.send(&instances);
                let recv = (!draining).then(|| select.recv(&input));
                let op = match timeout {
                    Some(at) => match select.select_deadline(at) {
                        Ok(op) => op,
                        Err(_) => continue,
                    },
                    None => select.select(),
                };
                if op.index() == send {
                    let batch = take(&mut pending, &positions);
                    let size: u64 = batch.iter().map(Batchable::batch_size).sum();
                    tracing::debug!(
                        "model '{model}': batch of {} request(s), batch size {size}, closed: {reason:?}",
                        batch.len()
                    );
                    if let Err(failed) = op.send(&instances, batch) {
                        failed
                            .into_inner()
                            .into_iter()
                            .for_each(|j| drop(j, Dropped::NoInstance));
                        pending
                            .drain(..)
                            .for_each(|e| drop(e.job, Dropped::NoInstance));
                        return;
                    }
                } else if Some(op.index()) == recv {
                    match op.recv(&input) {
                        Ok(job) => admit(&mut pending, job),
                        Err(_) => draining = true,
                    }
                }
            }
            Decision::Wait(until) => {
                let until = match (until, timeout) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let next = match until {
                    Some(t) => wait_until(&input, t),
                    None => input.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                match next {
                    Ok(job) => admit(&mut pending, job),
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
        level: usize,
        timeout: Option<(Instant, TimeoutAction)>,
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
        fn level(&self) -> usize {
            self.level
        }
        fn timeout(&self) -> Option<(Instant, TimeoutAction)> {
            self.timeout
        }
    }

    fn job(id: usize, size: u64, dims: u32, at: Instant) -> J {
        J {
            id,
            size,
            dims,
            at,
            gone: Arc::new(AtomicBool::new(false)),
            level: 0,
            timeout: None,
        }
    }

    fn entries(jobs: Vec<J>) -> VecDeque<Entry<J>> {
        jobs.into_iter()
            .map(|job| Entry {
                rank: job.level(),
                job,
            })
            .collect()
    }

    fn ids(pending: &VecDeque<Entry<J>>, d: &Decision) -> Vec<usize> {
        match d {
            Decision::Send(p, _) => p.iter().map(|&i| pending[i].id).collect(),
            Decision::Wait(_) => vec![],
        }
    }

    #[test]
    fn preferred_sizes_and_delay() {
        let now = Instant::now();
        let policy = BatchPolicy::new(8, &[4, 8], 100);
        let mut q = entries((0..3).map(|i| job(i, 1, 16, now)).collect());
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
        q.push_back(Entry {
            job: job(3, 1, 16, now),
            rank: 0,
        });
        assert_eq!(
            decide(&q, &policy, now, false),
            Decision::Send(vec![0, 1, 2, 3], Reason::Preferred)
        );
        // 10 queued: the largest preferred size (8) goes first.
        for i in 4..10 {
            q.push_back(Entry {
                job: job(i, 1, 16, now),
                rank: 0,
            });
        }
        let d = decide(&q, &policy, now, false);
        assert_eq!(ids(&q, &d), (0..8).collect::<Vec<_>>());
        assert!(matches!(d, Decision::Send(_, Reason::Full)));
    }

    #[test]
    fn a_batch_is_a_prefix_of_the_queue_as_in_triton() {
        let now = Instant::now();
        // Requests of other shapes end the batch (it goes at once: it cannot grow), as Triton
        // sends its pending batch "as it is" rather than reach past them.
        let policy = BatchPolicy::new(8, &[], 1000);
        let q = entries(vec![
            job(0, 2, 16, now),
            job(1, 3, 32, now),
            job(2, 5, 16, now),
        ]);
        let d = decide(&q, &policy, now, false);
        assert_eq!(ids(&q, &d), vec![0]);
        assert!(matches!(d, Decision::Send(_, Reason::Full)));
        // The next request would exceed max_batch_size: the batch goes at once, without
        // waiting for the delay.
        let q = entries(vec![
            job(0, 2, 16, now),
            job(1, 5, 16, now),
            job(2, 2, 16, now),
        ]);
        let d = decide(&q, &policy, now, false);
        assert_eq!(ids(&q, &d), vec![0, 1]);
        // With room left it waits for the oldest request's delay.
        let q = entries(vec![job(0, 2, 16, now), job(1, 5, 16, now)]);
        assert_eq!(
            decide(&q, &policy, now, false),
            Decision::Wait(Some(now + Duration::from_micros(1000)))
        );
    }

    #[test]
    fn the_preferred_cut_goes_first_unless_the_delay_ran_out() {
        let now = Instant::now();
        let later = now + Duration::from_micros(200);
        // preferred [4, 8]: 6 queued -> the batch of 4 goes at once (Triton's "best preferred
        // batch size"), the rest stays; once the delay has run out, all 6 go.
        let policy = BatchPolicy::new(8, &[4, 8], 100);
        let q = entries((0..6).map(|i| job(i, 1, 16, now)).collect());
        let d = decide(&q, &policy, now, false);
        assert_eq!(ids(&q, &d), vec![0, 1, 2, 3]);
        assert!(matches!(d, Decision::Send(_, Reason::Preferred)));
        let d = decide(&q, &policy, later, false);
        assert_eq!(ids(&q, &d), (0..6).collect::<Vec<_>>());
        assert!(matches!(d, Decision::Send(_, Reason::DelayExpired)));
        // preferred [4], max 8: 3 + 3 outgrows 4, so the first request goes alone at once.
        let policy = BatchPolicy::new(8, &[4], 100);
        let q = entries(vec![job(0, 3, 16, now), job(1, 3, 16, now)]);
        let d = decide(&q, &policy, now, false);
        assert_eq!(ids(&q, &d), vec![0]);
        // ... and once the delay ran out, both (6 <= max_batch_size).
        assert_eq!(ids(&q, &decide(&q, &policy, later, false)), vec![0, 1]);
        // A single request bigger than every preferred size goes at once.
        let q = entries(vec![job(0, 6, 16, now)]);
        let d = decide(&q, &policy, now, false);
        assert_eq!(ids(&q, &d), vec![0]);
        assert!(matches!(d, Decision::Send(_, Reason::Full)));
    }

    fn dynamic_batching(text: &str) -> ferrite_proto::inference::ModelDynamicBatching {
        let config =
            ferrite_proto::parse_model_config(&format!("dynamic_batching {{ {text} }}")).unwrap();
        match config.scheduling_choice {
            Some(ferrite_proto::inference::model_config::SchedulingChoice::DynamicBatching(d)) => d,
            _ => unreachable!(),
        }
    }

    fn params(pairs: &[(&str, u64)]) -> crate::request::Parameters {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect()
    }

    #[test]
    fn priorities_timeouts_and_queue_sizes() {
        let queues = Arc::new(Queues::from_config(&dynamic_batching(
            "priority_levels: 3 default_priority_level: 2 \
             default_queue_policy { max_queue_size: 2 default_timeout_microseconds: 1000 } \
             priority_queue_policy { key: 1 value: { timeout_action: DELAY allow_timeout_override: true } }",
        )));
        let now = Instant::now();
        // No priority: the default level (2 -> index 1) with its policy's timeout.
        let (a, place_a) = queues.admit(&params(&[]), now, "m").unwrap();
        assert_eq!(
            a,
            Admission {
                level: 1,
                timeout: Some((now + Duration::from_micros(1000), TimeoutAction::Reject))
            }
        );
        // Out of range falls back to the default level, as in Triton.
        let (b, _place_b) = queues.admit(&params(&[("priority", 9)]), now, "m").unwrap();
        assert_eq!(b.level, 1);
        // The default level's queue holds 2: the third is refused with Triton's text.
        let e = queues.admit(&params(&[]), now, "m").unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Unavailable);
        assert_eq!(e.message(), "Exceeds maximum queue size for model 'm'");
        drop(place_a);
        assert!(queues.admit(&params(&[]), now, "m").is_ok());
        // Level 1 delays and lets the request set its timeout; level 3 has the default policy.
        let (high, _p) = queues
            .admit(&params(&[("priority", 1), ("timeout", 50)]), now, "m")
            .unwrap();
        assert_eq!(
            high,
            Admission {
                level: 0,
                timeout: Some((now + Duration::from_micros(50), TimeoutAction::Delay))
            }
        );
        let (low, _q) = queues
            .admit(&params(&[("priority", 3), ("timeout", 50)]), now, "m")
            .unwrap();
        assert_eq!(
            low.timeout,
            Some((now + Duration::from_micros(1000), TimeoutAction::Reject))
        );
    }

    #[test]
    fn delayed_requests_set_no_timer_and_huge_timeouts_are_none() {
        let now = Instant::now();
        let mut j = job(0, 1, 16, now);
        j.timeout = Some((now, TimeoutAction::Delay));
        // Delayed already (ranked past the levels): it times out no more, so no timer.
        let q: VecDeque<Entry<J>> = [Entry { job: j, rank: 1 }].into();
        assert_eq!(next_timeout(&q, 1), None);
        // A client's timeout of u64::MAX microseconds: no panic, at worst no timeout at all
        // (where the clock cannot reckon that far).
        let queues = Arc::new(Queues::from_config(&dynamic_batching(
            "default_queue_policy { allow_timeout_override: true default_timeout_microseconds: 10 }",
        )));
        let (a, _place) = queues
            .admit(&params(&[("timeout", u64::MAX)]), now, "m")
            .unwrap();
        assert!(a.timeout.is_none_or(|(at, _)| at > now));
    }

    #[test]
    fn higher_priorities_first_and_timeouts_on_a_timer() {
        let now = Instant::now();
        let mut q = VecDeque::new();
        for (id, level) in [(0, 2), (1, 0), (2, 1), (3, 0)] {
            let mut j = job(id, 1, 16, now);
            j.level = level;
            insert(
                &mut q,
                Entry {
                    rank: level,
                    job: j,
                },
            );
        }
        assert_eq!(q.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 3, 2, 0]);
        // Request 3 times out (REJECT), request 1 is delayed behind everything.
        q[0].job.timeout = Some((now, TimeoutAction::Delay));
        q[1].job.timeout = Some((now, TimeoutAction::Reject));
        let dropped = std::cell::RefCell::new(Vec::new());
        expire(&mut q, 3, now, &|j: J, why| {
            dropped.borrow_mut().push((j.id, why))
        });
        assert_eq!(*dropped.borrow(), vec![(3, Dropped::TimedOut)]);
        assert_eq!(q.iter().map(|e| e.id).collect::<Vec<_>>(), vec![2, 0, 1]);
        // A delayed request does not time out again.
        expire(&mut q, 3, now + Duration::from_secs(1), &|_: J, _| {
            panic!("nothing is due")
        });
    }

    #[test]
    fn a_queue_timeout_fires_while_instances_are_busy() {
        let (in_tx, in_rx) = crossbeam_channel::unbounded();
        let (out_tx, out_rx) = crossbeam_channel::bounded::<Vec<J>>(0);
        let (dropped_tx, dropped_rx) = crossbeam_channel::unbounded();
        let batcher = std::thread::spawn(move || {
            run(
                "m",
                BatchPolicy::new(8, &[8], 0),
                1,
                in_rx,
                out_tx,
                move |j: J, why| dropped_tx.send((j.id, why)).unwrap(),
            )
        });
        let mut j = job(0, 1, 16, Instant::now());
        j.timeout = Some((
            Instant::now() + Duration::from_millis(30),
            TimeoutAction::Reject,
        ));
        in_tx.send(j).unwrap();
        // Nobody takes the batch: the timer rejects the request anyway.
        let (id, why) = dropped_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((id, why), (0, Dropped::TimedOut));
        drop(in_tx);
        batcher.join().unwrap();
        assert!(out_rx.try_recv().is_err());
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
                1,
                in_rx,
                out_tx,
                move |j: J, why| {
                    assert_eq!(why, Dropped::Abandoned);
                    c.lock().unwrap().push(j.id)
                },
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
