//! Property tests for iterator pipelines with the debugger attached (exact
//! or sampled timing): the output equals the plain chain, every stage
//! counts exactly what passed it,
//! and there is exactly one final report, whether the consumer reads to the
//! end, stops early, or a step panics; within a time limit, and leaving no
//! reporter thread behind. `PAIPA_PROPTEST_CASES` sets the number of cases
//! (2000 unless set).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use paipa::iter::Pipeline;
use paipa::{Debugger, Snapshot};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Op {
    Add(u64),
    DropMultiplesOf(u64),
    Repeat,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u64..10).prop_map(Op::Add),
        (2u64..7).prop_map(Op::DropMultiplesOf),
        Just(Op::Repeat),
    ]
}

fn apply(op: Op, it: Box<dyn Iterator<Item = u64>>) -> Box<dyn Iterator<Item = u64>> {
    match op {
        Op::Add(k) => Box::new(it.map(move |x| x + k)),
        Op::DropMultiplesOf(k) => Box::new(it.filter(move |x| x % k != 0)),
        Op::Repeat => Box::new(it.flat_map(|x| [x, x])),
    }
}

#[derive(Debug, Clone, Copy)]
enum End {
    ReadAll,
    StopAfter(usize),
    PanicAt(u64),
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![
        Just(End::ReadAll),
        (0usize..2_000).prop_map(End::StopAfter),
        (0u64..3_000).prop_map(End::PanicAt)
    ]
}

/// What passes each stage of the plain chain: the source, then each op,
/// then the last (inspecting) stage.
fn model_counts(ops: &[Op], n: u64) -> Vec<u64> {
    let mut counts = vec![n];
    for k in 1..=ops.len() {
        let mut it: Box<dyn Iterator<Item = u64>> = Box::new(0..n);
        for &o in &ops[..k] {
            it = apply(o, it);
        }
        counts.push(it.count() as u64);
    }
    counts.push(*counts.last().unwrap());
    counts
}

/// What passes each stage of the plain chain when it ends as `end` does:
/// the same pulls as the debugged pipeline, counted by `inspect`.
fn plain_counts(ops: &[Op], n: u64, end: End) -> Vec<u64> {
    use std::cell::Cell;
    use std::rc::Rc;
    let counters: Vec<Rc<Cell<u64>>> = (0..ops.len() + 2).map(|_| Rc::default()).collect();
    let bump = |c: &Rc<Cell<u64>>| {
        let c = c.clone();
        move |_: &u64| c.set(c.get() + 1)
    };
    let mut it: Box<dyn Iterator<Item = u64>> = Box::new((0..n).inspect(bump(&counters[0])));
    for (i, &o) in ops.iter().enumerate() {
        it = Box::new(apply(o, it).inspect(bump(&counters[i + 1])));
    }
    let last = counters.last().unwrap().clone();
    match end {
        End::ReadAll => last.set(it.count() as u64),
        End::StopAfter(k) => last.set(it.take(k).count() as u64),
        // The last step panics on `k`, before its probe counts it.
        End::PanicAt(k) => last.set(it.take_while(|x| *x != k).count() as u64),
    }
    counters.iter().map(|c| c.get()).collect()
}

fn run_case(ops: Vec<Op>, n: u64, end: End, sampled: Option<u32>) -> Result<(), TestCaseError> {
    // The model: the same ops without the debugger.
    let mut model: Box<dyn Iterator<Item = u64>> = Box::new(0..n);
    for &o in &ops {
        model = apply(o, model);
    }
    let model: Vec<u64> = model.collect();
    let full = model_counts(&ops, n);
    let exact = plain_counts(&ops, n, end);

    let reports: Arc<Mutex<Vec<Snapshot>>> = Arc::default();
    let sink = reports.clone();
    let mut debugger = Debugger::silent().reporter(move |s: &Snapshot| sink.lock().unwrap().push(s.clone()));
    if let Some(every) = sampled {
        // Timing sampled; the counts must stay exact all the same.
        debugger = debugger.sampled(every).unwrap();
    }
    let mut p = Pipeline::new(0..n).debug(debugger).boxed();
    for (i, &o) in ops.iter().enumerate() {
        p = p.step_named(format!("op{i}"), move |it| apply(o, Box::new(it))).boxed();
    }
    let panic_at = match end {
        End::PanicAt(k) => Some(k),
        _ => None,
    };
    p = p
        .step_named("last", move |it| {
            it.inspect(move |x| {
                if Some(*x) == panic_at {
                    panic!("injected panic at {x}")
                }
            })
        })
        .boxed();
    let stats = p.stats();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let it = p.into_iter();
        match end {
            End::StopAfter(k) => it.take(k).collect::<Vec<u64>>(),
            _ => it.collect::<Vec<u64>>(),
        }
    }));
    let finals = reports.lock().unwrap().iter().filter(|s| s.is_final).count();
    prop_assert_eq!(finals, 1);
    let snap = stats.snapshot();
    prop_assert_eq!(snap.stages.len(), ops.len() + 2);
    let counts: Vec<u64> = snap.stages.iter().map(|s| s.count).collect();
    match (end, outcome) {
        (End::ReadAll, Ok(out)) => {
            prop_assert_eq!(&out, &model);
            // Read to the end: every stage counted exactly what passed it.
            prop_assert_eq!(&counts, &full);
        }
        (End::StopAfter(k), Ok(out)) => {
            prop_assert_eq!(&out[..], &model[..k.min(model.len())]);
            prop_assert_eq!(*counts.last().unwrap(), k.min(model.len()) as u64);
        }
        (End::PanicAt(k), Ok(out)) => {
            prop_assert!(!model.contains(&k));
            prop_assert_eq!(&out, &model);
            prop_assert_eq!(&counts, &full);
        }
        (End::PanicAt(k), Err(_)) => {
            prop_assert!(model.contains(&k));
            let before = model.iter().position(|x| *x == k).unwrap();
            prop_assert_eq!(*counts.last().unwrap(), before as u64);
        }
        (e, Err(_)) => prop_assert!(false, "unexpected panic with {:?}", e),
    }
    // However it ended, every stage counted exactly what passed it.
    prop_assert_eq!(&counts, &exact, "per-stage counts");
    // Stopped early or not, no stage counted more than passes it in a full run.
    for (i, (got, most)) in counts.iter().zip(&full).enumerate() {
        prop_assert!(got <= most, "stage {} counted {} of at most {}", i, got, most);
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PAIPA_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn debugged_pipelines_match_the_plain_chain_and_report_once(
        ops in prop::collection::vec(op(), 0..6),
        n in 0u64..3_000,
        end in end(),
        sampled in prop_oneof![Just(None), (1u32..100).prop_map(Some)],
    ) {
        common::quiet_injected_panics();
        let before = common::thread_count();
        common::within(Duration::from_secs(10), move || run_case(ops, n, end, sampled))?;
        prop_assert_eq!(common::threads_settle_to(before), before, "a reporter thread outlived the pipeline");
    }
}
