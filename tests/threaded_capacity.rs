//! Capacity counts items, however they are handed over: single puts,
//! batches, or a stage's output.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::within;
use paipa::threaded::{Pipeline, PutError, Stage};

const LIMIT: Duration = Duration::from_secs(20);

/// A stage stuck on its first item until the gate's sender is dropped.
fn stuck(gate: crossbeam_channel::Receiver<()>) -> Stage<'static, u32, u32> {
    let gate = Mutex::new(gate);
    Stage::map("stuck", move |x: u32| {
        let _ = gate.lock().unwrap().recv();
        x
    })
}

#[test]
fn single_puts_count_one_item_each_against_the_capacity() {
    within(LIMIT, || {
        let (open, gate) = crossbeam_channel::bounded::<()>(0);
        let mut p = Pipeline::new().capacity(8).unwrap().then(stuck(gate)).unwrap();
        let input = p.input();
        let running = p.spawn().unwrap();
        // One item is taken by the stuck worker, eight wait on the edge.
        for i in 0..9 {
            input.put(i).unwrap();
        }
        match input.put_timeout(9, Duration::from_millis(50)) {
            Err(PutError::Full(9)) => {}
            other => panic!("the edge holds 8 items: {other:?}"),
        }
        drop(open);
        drop(input);
        let s = running.wait().unwrap();
        assert_eq!(s.items, 9);
    });
}

#[test]
fn a_batch_counts_its_length_and_one_larger_than_the_capacity_is_refused() {
    within(LIMIT, || {
        let (open, gate) = crossbeam_channel::bounded::<()>(0);
        let mut p = Pipeline::new().capacity(8).unwrap().then(stuck(gate)).unwrap();
        let input = p.input();
        assert_eq!(input.batch_size(), 4);
        match input.put_batch_timeout((0..9).collect(), Duration::from_secs(1)) {
            Err(PutError::TooLarge(v)) => assert_eq!(v.len(), 9, "every item is given back"),
            other => panic!("9 items never fit in 8: {other:?}"),
        }
        let running = p.spawn().unwrap();
        input.put(100).unwrap(); // taken by the stuck worker (alone: one put, one batch)
        input.put_batch_timeout((0..8).collect(), LIMIT).unwrap(); // fills the edge
        match input.put_batch_timeout(vec![8], Duration::from_millis(50)) {
            Err(PutError::Full(v)) => assert_eq!(v, [8]),
            other => panic!("the edge is full: {other:?}"),
        }
        drop(open);
        drop(input);
        let s = running.wait().unwrap();
        assert_eq!(s.items, 9);
        assert_eq!(s.snapshot.stages[0].count, 9);
    });
}

#[test]
fn slow_items_travel_alone_so_every_worker_gets_one() {
    within(LIMIT, || {
        // 8 workers, 8 items that each wait until all 8 are in progress:
        // only if no worker holds a batch of several do they all start.
        let started = std::sync::Arc::new(std::sync::Barrier::new(8));
        let p = Pipeline::new()
            .source(0..8u32)
            .then(
                Stage::map("call", move |x: u32| {
                    started.wait();
                    x
                })
                .workers(8),
            )
            .unwrap();
        let s = p.run().unwrap();
        assert_eq!(s.items, 8);
    });
}

#[test]
fn a_bound_by_weight_keeps_large_items_from_piling_up() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    within(LIMIT, || {
        const MIB: usize = 1 << 20;
        let (made, taken, worst) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (open, gate) = crossbeam_channel::bounded::<()>(0);
        let (m, t, w) = (made.clone(), taken.clone(), worst.clone());
        let mut p = Pipeline::new()
            .then(
                Stage::map("make", move |_: u32| {
                    // Items made and not yet taken by "hold" (this one too).
                    let out = m.fetch_add(1, SeqCst) + 1 - t.load(SeqCst);
                    w.fetch_max(out, SeqCst);
                    vec![7u8; MIB]
                })
                .max_bytes(8 * MIB, Vec::len),
            )
            .unwrap()
            .then(Stage::map("hold", move |v: Vec<u8>| {
                taken.fetch_add(1, SeqCst);
                let _ = gate.recv();
                v.len()
            }))
            .unwrap();
        p.put_all(0..50u32).unwrap();
        let running = std::thread::spawn(move || p.run_with(|out| out.sum::<usize>()).unwrap());
        // "hold" is held on its first item; "make" goes on until the edge
        // is full by weight (at least 1 held + 8 MiB queued + 1 being
        // sent), then waits. It is given half a second to go further, which
        // only an unbounded edge would let it do: the bound below holds
        // however long the wait is.
        let deadline = std::time::Instant::now() + LIMIT;
        while made.load(SeqCst) < 10 {
            assert!(std::time::Instant::now() < deadline, "make stopped early");
            std::thread::yield_now();
        }
        let grace = std::time::Instant::now() + Duration::from_millis(500);
        while made.load(SeqCst) < 50 && std::time::Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(open);
        let (total, summary) = running.join().unwrap();
        assert_eq!(total, 50 * MIB);
        assert_eq!(summary.items, 50);
        // Never more than: the batch "hold" took (batches are cut at half
        // the bound: 4 items), 8 MiB on the edge, and the batch being sent.
        let worst = worst.load(SeqCst);
        assert!(worst <= 16, "{worst} MiB made and not taken");
    });
}

#[test]
fn a_zero_bound_by_weight_is_refused() {
    let err = Pipeline::<u32, u32>::new()
        .then(Stage::map("m", |x: u32| x).max_bytes(0, |_| 1))
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid max_bytes: 0 (stage \"m\" needs at least 1)");
}

#[test]
fn meta_entries_take_room_too_so_a_stream_of_them_cannot_grow_an_edge() {
    within(LIMIT, || {
        let (open, gate) = crossbeam_channel::bounded::<()>(0);
        let mut p = Pipeline::new().capacity(8).unwrap().then(stuck(gate)).unwrap();
        let input = p.input();
        let running = p.spawn().unwrap();
        input.put(100).unwrap(); // taken by the stuck worker
                                 // Each meta entry takes one item's room: eight fill the edge.
        for i in 0..8u32 {
            input.put_meta(paipa::threaded::Meta::new(i)).unwrap();
        }
        match input.put_timeout(1, Duration::from_millis(50)) {
            Err(PutError::Full(1)) => {}
            other => panic!("eight meta entries fill an edge of 8: {other:?}"),
        }
        drop(open);
        drop(input);
        let s = running.wait().unwrap();
        assert_eq!((s.items, s.metas), (1, 8));
    });
}
