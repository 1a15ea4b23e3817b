//! How a batch is split across an instance's NeuronCores: a pure function, so the rules are
//! tested on their own.
//!
//! A NEFF is compiled for a fixed batch size (`compiled`). A batch of `batch` samples becomes
//! `ceil(batch / compiled)` shards of `compiled` samples, in sample order; the last one holds
//! what is left and is padded up to `compiled`. Shard `j` runs on core `(first + j) % cores`,
//! so every core gets a shard before any gets a second, and the cores that have shards run
//! them at the same time (each its own shards one after another). Outputs are put back in
//! sample order, each shard's real rows only.

/// One run of the NEFF on one core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Index into the instance's cores.
    pub core: usize,
    /// First sample of the batch in this shard.
    pub start: usize,
    /// Real samples in it (`compiled` minus the padding).
    pub len: usize,
}

impl Shard {
    /// Samples of padding that fill the shard up to the compiled batch size.
    pub fn padding(&self, compiled: usize) -> usize {
        compiled - self.len
    }
}

/// Splits `batch` samples over `cores` cores in shards of `compiled` samples, the first shard
/// on core `first % cores`. Empty when `batch` is 0.
///
/// # Panics
/// When `cores` or `compiled` is 0 (the driver refuses such instances when it makes them).
pub fn plan(batch: usize, cores: usize, compiled: usize, first: usize) -> Vec<Shard> {
    assert!(cores > 0, "an instance has at least one core");
    assert!(compiled > 0, "a NEFF is compiled for at least one sample");
    (0..batch.div_ceil(compiled))
        .map(|j| {
            let start = j * compiled;
            Shard {
                core: (first + j) % cores,
                start,
                len: compiled.min(batch - start),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shards of `plan` for each core, in order: `result[c]` lists the indices (into
    /// `plan`) of the shards core `c` runs.
    fn by_core(plan: &[Shard], cores: usize) -> Vec<Vec<usize>> {
        let mut per_core = vec![Vec::new(); cores];
        for (i, shard) in plan.iter().enumerate() {
            per_core[shard.core].push(i);
        }
        per_core
    }

    fn shards(batch: usize, cores: usize, compiled: usize) -> Vec<(usize, usize, usize)> {
        plan(batch, cores, compiled, 0)
            .iter()
            .map(|s| (s.core, s.start, s.len))
            .collect()
    }

    /// Covers every sample exactly once, in order, each shard at most `compiled` long.
    fn check_cover(batch: usize, cores: usize, compiled: usize, first: usize) {
        let p = plan(batch, cores, compiled, first);
        let mut next = 0;
        for s in &p {
            assert_eq!(s.start, next);
            assert!(s.len >= 1 && s.len <= compiled);
            assert!(s.core < cores);
            next += s.len;
        }
        assert_eq!(next, batch);
        // Balanced: core loads differ by at most one shard.
        let loads: Vec<usize> = by_core(&p, cores).iter().map(Vec::len).collect();
        assert!(
            loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1,
            "{loads:?}"
        );
    }

    #[test]
    fn a_batch_of_sixteen_gives_sixteen_cores_one_sample_each() {
        let p = shards(16, 16, 1);
        assert_eq!(p.len(), 16);
        for (i, &(core, start, len)) in p.iter().enumerate() {
            assert_eq!((core, start, len), (i, i, 1));
        }
    }

    #[test]
    fn an_uneven_batch_pads_only_the_last_shard() {
        // 10 samples, 4 cores, compiled for 4: shards of 4, 4, 2 (2 of padding).
        let p = plan(10, 4, 4, 0);
        assert_eq!(
            p,
            vec![
                Shard {
                    core: 0,
                    start: 0,
                    len: 4
                },
                Shard {
                    core: 1,
                    start: 4,
                    len: 4
                },
                Shard {
                    core: 2,
                    start: 8,
                    len: 2
                },
            ]
        );
        assert_eq!(p[2].padding(4), 2);
        assert_eq!(p[0].padding(4), 0);
        // 7 samples on 2 cores compiled for 1: core 0 runs 4, core 1 runs 3.
        let per_core = by_core(&plan(7, 2, 1, 0), 2);
        assert_eq!(per_core, vec![vec![0, 2, 4, 6], vec![1, 3, 5]]);
    }

    #[test]
    fn a_batch_smaller_than_the_core_count_leaves_cores_idle() {
        assert_eq!(shards(3, 4, 1), vec![(0, 0, 1), (1, 1, 1), (2, 2, 1)]);
        // One sample with a NEFF compiled for 8: one shard of 1 padded by 7.
        let p = plan(1, 4, 8, 0);
        assert_eq!(
            p,
            vec![Shard {
                core: 0,
                start: 0,
                len: 1
            }]
        );
        assert_eq!(p[0].padding(8), 7);
        assert!(by_core(&p, 4)[1..].iter().all(Vec::is_empty));
    }

    #[test]
    fn a_compiled_batch_larger_than_one_fills_each_shard() {
        // 16 samples, 4 cores, compiled for 4: one full shard per core.
        assert_eq!(
            shards(16, 4, 4),
            vec![(0, 0, 4), (1, 4, 4), (2, 8, 4), (3, 12, 4)]
        );
        // 17: a fifth shard of 1 goes back to core 0.
        assert_eq!(shards(17, 4, 4).last(), Some(&(0, 16, 1)));
        // compiled larger than the batch: one shard.
        assert_eq!(shards(5, 2, 8), vec![(0, 0, 5)]);
    }

    #[test]
    fn the_first_core_rotates_the_assignment() {
        let p = plan(3, 4, 1, 3);
        assert_eq!(p.iter().map(|s| s.core).collect::<Vec<_>>(), vec![3, 0, 1]);
        let p = plan(2, 4, 1, 9);
        assert_eq!(p.iter().map(|s| s.core).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn every_split_covers_the_batch_in_order_and_balances_the_cores() {
        for batch in 0..40 {
            for cores in 1..6 {
                for compiled in 1..6 {
                    for first in 0..cores {
                        check_cover(batch, cores, compiled, first);
                    }
                }
            }
        }
        assert!(plan(0, 4, 2, 0).is_empty());
    }
}
