//! The allocator's bookkeeping, without a GPU (the GPU tests are in `cuda/tests.rs`).

use super::*;
use crate::device::Queue;

const MIB: usize = 1 << 20;

type Pool = SizeClassPool<u64>;

#[test]
fn size_classes_waste_at_most_a_quarter_or_one_granule() {
    assert_eq!(Pool::class_size(0), Some(MIN_CLASS));
    assert_eq!(Pool::class_size(1), Some(MIN_CLASS));
    assert_eq!(Pool::class_size(512), Some(512));
    assert_eq!(Pool::class_size(513), Some(640));
    assert_eq!(Pool::class_size(1024), Some(1024));
    assert_eq!(Pool::class_size(1025), Some(1280));
    assert_eq!(Pool::class_size(1537), Some(1792));
    assert_eq!(Pool::class_size(1793), Some(2048));
    assert_eq!(Pool::class_size(LARGE_GRANULE), Some(LARGE_GRANULE));
    assert_eq!(Pool::class_size(LARGE_GRANULE + 1), Some(2 * LARGE_GRANULE));
    assert_eq!(Pool::class_size(8_000_000), Some(8 * MIB));
    assert_eq!(Pool::class_size(usize::MAX), None);
    let mut bytes = 1;
    while bytes < 1 << 34 {
        for b in [bytes, bytes + 1, bytes * 3 / 2 + 7] {
            let class = Pool::class_size(b).unwrap();
            assert!(class >= b, "{b} -> {class}");
            assert!(
                class <= (b + b / 4).max(MIN_CLASS) || class - b < LARGE_GRANULE,
                "{b} -> {class}"
            );
            assert_eq!(
                Pool::class_size(class),
                Some(class),
                "a class is its own class"
            );
        }
        bytes *= 2;
    }
}

#[test]
fn the_pool_prefers_blocks_that_need_no_wait() {
    let mut pool = SizeClassPool::<(u64, bool)>::new();
    let class = SizeClassPool::<()>::class_size(1 << 20).unwrap();
    for (ptr, ready) in [(1, true), (2, false), (3, true), (4, false)] {
        pool.add_fresh(class);
        pool.give_back(class, (ptr, ready));
    }
    // The newest ready block, then the next, then the newest of the rest.
    assert_eq!(pool.take_preferring(class, |b| b.1), Some((3, true)));
    assert_eq!(pool.take_preferring(class, |b| b.1), Some((1, true)));
    assert_eq!(pool.take_preferring(class, |b| b.1), Some((4, false)));
    assert_eq!(pool.take_preferring(class, |b| b.1), Some((2, false)));
    assert_eq!(pool.take_preferring(class, |b| b.1), None);
    assert_eq!(pool.reuses(), 4);
    assert_eq!(pool.idle_bytes(), 0);
    assert_eq!(pool.live_bytes(), 4 * class);
}

#[test]
fn the_pool_reuses_blocks_and_does_not_grow_over_10000_cycles() {
    // A driver stand-in: hands out numbered blocks and counts what is outstanding.
    let mut pool = Pool::new();
    let mut next_block = 0u64;
    let mut from_driver = 0usize;
    let mut alloc = |pool: &mut Pool, bytes: usize| -> (usize, u64) {
        let class = Pool::class_size(bytes).unwrap();
        match pool.plan(class) {
            AllocPlan::Reuse => (class, pool.take_preferring(class, |_| false).unwrap()),
            AllocPlan::Fresh => {
                pool.add_fresh(class);
                from_driver += class;
                next_block += 1;
                (class, next_block)
            }
            other => panic!("no budget, yet {other:?}"),
        }
    };
    // An evaluate: three batch-sized buffers, a tail batch, and an output, all freed.
    let sizes = [8_000_000, 8_000_000, 8_000_000, 1_234_567, 800];
    let mut reserved_after_first = 0;
    for cycle in 0..10_000 {
        let held: Vec<(usize, u64)> = sizes.iter().map(|&b| alloc(&mut pool, b)).collect();
        let distinct: std::collections::HashSet<u64> = held.iter().map(|&(_, b)| b).collect();
        assert_eq!(distinct.len(), held.len(), "a block is handed out twice");
        for (class, block) in held.into_iter().rev() {
            pool.give_back(class, block);
        }
        assert_eq!(pool.live_bytes(), 0);
        if cycle == 0 {
            reserved_after_first = pool.reserved_bytes();
        }
        assert_eq!(
            pool.reserved_bytes(),
            reserved_after_first,
            "the cache grew in cycle {cycle}"
        );
    }
    assert_eq!(pool.fresh_allocations(), sizes.len() as u64);
    assert_eq!(
        pool.reuses(),
        10_000 * sizes.len() as u64 - sizes.len() as u64
    );
    assert_eq!(from_driver, pool.reserved_bytes());
    assert_eq!(pool.idle_blocks(), sizes.len());
    let drained = pool.drain();
    assert_eq!(drained.iter().map(|&(c, _)| c).sum::<usize>(), from_driver);
    assert_eq!(
        (pool.idle_bytes(), pool.idle_blocks(), pool.reserved_bytes()),
        (0, 0, 0)
    );
}

#[test]
fn the_budget_bounds_live_and_cached_bytes() {
    let mut pool = Pool::new();
    pool.set_budget(Some(10 * MIB));
    let four = Pool::class_size(4 * MIB).unwrap();
    assert_eq!(pool.plan(four), AllocPlan::Fresh);
    pool.add_fresh(four);
    pool.add_fresh(four);
    assert_eq!(pool.free_memory(usize::MAX), 2 * MIB);
    assert_eq!(
        pool.free_memory(MIB),
        MIB,
        "the driver's free memory caps it too"
    );
    assert_eq!(pool.plan(four), AllocPlan::OverBudget { free: 2 * MIB });
    // Freed blocks count as free (reusable) and are reused.
    pool.give_back(four, 1);
    assert_eq!(pool.free_memory(0), 4 * MIB);
    assert_eq!(pool.free_memory(usize::MAX), 6 * MIB);
    assert_eq!(pool.plan(four), AllocPlan::Reuse);
    // Another class fits in the budget only without the cached block.
    let six = Pool::class_size(6 * MIB).unwrap();
    assert_eq!(pool.plan(six), AllocPlan::DrainThenFresh);
    assert_eq!(pool.drain(), vec![(four, 1)]);
    assert_eq!(pool.plan(six), AllocPlan::Fresh);
    pool.set_budget(None);
    assert_eq!(pool.plan(64 * MIB), AllocPlan::Fresh);
    assert_eq!(pool.free_memory(123), 123);
}

#[test]
fn a_forgotten_block_leaves_the_live_bytes() {
    let mut pool = Pool::new();
    let class = Pool::class_size(MIB).unwrap();
    pool.add_fresh(class);
    pool.add_fresh(class);
    pool.forget(class);
    assert_eq!((pool.live_bytes(), pool.idle_bytes()), (class, 0));
    assert_eq!(pool.plan(class), AllocPlan::Fresh, "not cached either");
}

#[test]
fn queue_masks_record_the_queues_that_used_a_buffer() {
    assert_eq!(QueueMask::default().queues().count(), 0);
    for q in Queue::ALL {
        let m = QueueMask::of(q);
        assert!(m.contains(q));
        assert_eq!(m.queues().collect::<Vec<_>>(), vec![q]);
        assert_eq!(QueueMask::default().with(q), m);
        for other in Queue::ALL.into_iter().filter(|o| *o != q) {
            assert!(!m.contains(other), "{q:?} mask contains {other:?}");
        }
    }
    let m = QueueMask::of(Queue::Download).with(Queue::Upload);
    assert_eq!(
        m.queues().collect::<Vec<_>>(),
        vec![Queue::Upload, Queue::Download],
        "index order"
    );
    assert_eq!(m.with(Queue::Upload), m, "idempotent");
    let all = Queue::ALL
        .into_iter()
        .fold(QueueMask::default(), QueueMask::with);
    assert_eq!(all.queues().collect::<Vec<_>>(), Queue::ALL.to_vec());
}
