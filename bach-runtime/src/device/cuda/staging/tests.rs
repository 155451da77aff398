//! The staging pool's bookkeeping and the host copies, without a GPU (the GPU tests are in
//! `cuda/tests.rs`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::*;

const MIB: usize = 1 << 20;

#[test]
fn staging_chunks_cover_a_transfer_in_order() {
    assert_eq!(chunk_count(0), 0);
    assert_eq!(chunk_ranges(0).count(), 0);
    assert_eq!(chunk_count(1), 1);
    assert_eq!(chunk_count(STAGING_CHUNK), 1);
    assert_eq!(chunk_count(STAGING_CHUNK + 1), 2);
    assert_eq!(chunk_count(20 * MIB + 3), 3);
    for bytes in [
        1,
        1000,
        STAGING_CHUNK - 1,
        STAGING_CHUNK,
        STAGING_CHUNK + 1,
        3 * STAGING_CHUNK,
        20 * MIB + 3,
    ] {
        let ranges: Vec<(usize, usize)> = chunk_ranges(bytes).collect();
        assert_eq!(ranges.len(), chunk_count(bytes), "{bytes}");
        let mut next = 0;
        for &(offset, len) in &ranges {
            assert_eq!(offset, next, "{bytes}: contiguous");
            assert!(len > 0 && len <= STAGING_CHUNK, "{bytes}: {len}");
            next = offset + len;
        }
        assert_eq!(next, bytes, "{bytes}: covered");
    }
}

#[test]
fn host_copies_are_exact_serial_and_parallel() {
    for len in [
        0,
        1,
        PARALLEL_COPY_MIN - 1,
        PARALLEL_COPY_MIN,
        PARALLEL_COPY_MIN + PARALLEL_COPY_PIECE / 2 + 3,
        STAGING_CHUNK,
    ] {
        let src: Vec<u8> = (0..len).map(|i| (i * 31 + i / 4099) as u8).collect();
        let mut dst = vec![0xAAu8; len];
        copy_bytes(&mut dst, &src);
        assert!(dst == src, "copy of {len} bytes");
    }
}

#[test]
#[should_panic(expected = "unequal lengths")]
fn host_copies_of_unequal_lengths_panic() {
    copy_bytes(&mut [0u8; 3], &[1u8; 4]);
}

const RETRY: Duration = Duration::from_secs(1);

#[test]
fn the_chunk_pool_takes_ready_chunks_then_grows_then_waits() {
    let now = Instant::now();
    let mut pool = ChunkPool::<u32>::new(3, RETRY);
    let never = |_: &u32| false;
    assert_eq!(pool.take(never, now), ChunkTake::Allocate);
    assert_eq!(pool.take(never, now), ChunkTake::Allocate);
    assert_eq!(pool.take(never, now), ChunkTake::Allocate);
    assert_eq!((pool.chunks(), pool.idle_chunks()), (3, 0));
    // Full, nothing idle: a chunk outside the pool.
    assert_eq!(pool.take(never, now), ChunkTake::Overflow);
    assert_eq!(pool.chunks(), 3);
    for c in [1, 2, 3] {
        pool.give_back(c);
    }
    // The oldest ready one, not merely the oldest.
    assert_eq!(pool.take(|c| *c >= 2, now), ChunkTake::Ready(2));
    assert_eq!(pool.take(|_| true, now), ChunkTake::Ready(1));
    // None ready and full: wait for the oldest idle one.
    pool.give_back(1);
    assert_eq!(pool.take(never, now), ChunkTake::WaitFor(3));
    assert_eq!((pool.chunks(), pool.idle_chunks()), (3, 1));
    // A failed allocation does not count; a forgotten chunk neither.
    let mut pool = ChunkPool::<u32>::new(2, RETRY);
    assert_eq!(pool.take(never, now), ChunkTake::Allocate);
    pool.allocation_failed(now);
    assert_eq!(pool.chunks(), 0);
    let later = now + RETRY;
    assert_eq!(pool.take(never, later), ChunkTake::Allocate);
    pool.forget();
    assert_eq!(pool.chunks(), 0);
    assert_eq!(pool.take(never, later), ChunkTake::Allocate);
    pool.give_back(7);
    assert_eq!((pool.chunks(), pool.idle_chunks()), (1, 1));
    assert_eq!(pool.take(|_| true, later), ChunkTake::Ready(7));
}

#[test]
fn after_a_failed_allocation_idle_chunks_still_serve_and_only_new_ones_wait() {
    let start = Instant::now();
    let soon = start + Duration::from_millis(1);
    let mut pool = ChunkPool::<u32>::new(4, RETRY);
    let never = |_: &u32| false;
    assert_eq!(pool.take(never, start), ChunkTake::Allocate);
    pool.give_back(1);
    // The second chunk cannot be allocated.
    assert_eq!(pool.take(never, start), ChunkTake::Allocate);
    pool.allocation_failed(start);
    // Within the back-off: an idle chunk whose copy is done is used,
    assert_eq!(pool.take(|_| true, soon), ChunkTake::Ready(1));
    // one still copying is waited for rather than copying through pageable memory,
    pool.give_back(1);
    assert_eq!(pool.take(never, soon), ChunkTake::WaitFor(1));
    // and only a transfer that would need a new chunk goes through pageable memory, without
    // the pool counting a chunk for it.
    assert_eq!(pool.take(never, soon), ChunkTake::Pageable);
    assert_eq!(pool.take(|_| true, soon), ChunkTake::Pageable);
    assert_eq!((pool.chunks(), pool.idle_chunks()), (1, 0));
    // After the back-off the pool grows again.
    assert_eq!(pool.take(never, start + RETRY), ChunkTake::Allocate);
    assert_eq!(pool.chunks(), 2);
}

#[test]
fn the_chunk_pool_does_not_grow_over_1000_pipelined_cycles() {
    // A device stand-in: chunk `c` is busy until the device clock reaches `busy[c]`; each
    // copy takes one tick, and the clock only advances when the host waits (for a chunk, or
    // to finish a download). Each cycle uploads two chunks and starts a download of three;
    // downloads are finished two cycles later, as a pipelined executor does.
    let mut pool = ChunkPool::<usize>::new(STAGING_MAX_CHUNKS, RETRY);
    let start = Instant::now();
    let mut busy: Vec<u64> = Vec::new();
    let mut now = 0u64;
    let mut enqueued = 0u64;
    let mut take = |pool: &mut ChunkPool<usize>, busy: &mut Vec<u64>, now: &mut u64| {
        let current = *now;
        let c = match pool.take(|&c| busy[c] <= current, start) {
            ChunkTake::Ready(c) => c,
            ChunkTake::Allocate => {
                busy.push(0);
                busy.len() - 1
            }
            ChunkTake::WaitFor(c) => {
                *now = (*now).max(busy[c]);
                c
            }
            ChunkTake::Overflow | ChunkTake::Pageable => panic!("the pool is never all held"),
        };
        assert!(busy[c] <= *now, "a chunk handed out while its copy runs");
        enqueued += 1;
        busy[c] = enqueued;
        c
    };
    let mut in_flight: VecDeque<Vec<usize>> = VecDeque::new();
    let mut held_after_warmup = 0;
    for cycle in 0..1000 {
        for _ in 0..2 {
            let c = take(&mut pool, &mut busy, &mut now);
            pool.give_back(c);
        }
        in_flight.push_back(
            (0..3)
                .map(|_| take(&mut pool, &mut busy, &mut now))
                .collect(),
        );
        if in_flight.len() > 2 {
            for c in in_flight.pop_front().unwrap() {
                now = now.max(busy[c]);
                pool.give_back(c);
            }
        }
        if cycle == 10 {
            held_after_warmup = pool.chunks();
        }
        assert!(pool.chunks() <= STAGING_MAX_CHUNKS);
    }
    assert_eq!(
        pool.chunks(),
        held_after_warmup,
        "the pool grew after warming up"
    );
    for c in in_flight.into_iter().flatten() {
        pool.give_back(c);
    }
    assert_eq!(pool.idle_chunks(), pool.chunks(), "every chunk came back");
}
