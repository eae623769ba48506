//! Property tests over randomly built threaded pipelines with injected
//! faults (errors and panics in steps, panics in `count_by` weighers,
//! consumers that stop early, with or without a live input handle): every
//! run ends in time, fails exactly when a fatal fault was
//! injected (naming the right stage), keeps its books (per stage
//! `count_in = count + skipped + failed + discarded`, however the run
//! ended), matches a sequential model, runs every lifecycle hook exactly as
//! documented, and leaves no thread behind.
//!
//! One test in its own binary, so that counting the process's threads is
//! exact. CI runs 2500 cases (about 100 s in a debug build); `PAIPA_PROPTEST_CASES=6000 cargo test
//! --release --all-features --test prop_threaded` runs a longer search
//! (about 2 minutes).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{thread_count, within};
use paipa::threaded::{OnError, Output, Pipeline, Stage, Step, StepFactory, WorkerInfo};
use paipa::{BoxError, Debugger, RunError, Snapshot};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Map,
    Iter,
    Step,
    /// A step with every lifecycle hook, counting its calls.
    Hooked,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Policy {
    Fail,
    Skip,
    RetryThenFail,
    RetryThenSkip,
}

#[derive(Debug, Clone, PartialEq)]
enum Fault {
    None,
    /// The stage's step fails on the item whose original value is `at`.
    Error {
        stage: usize,
        at: u64,
        policy: Policy,
    },
    /// The stage's step panics on that item (no policy absorbs it here).
    Panic {
        stage: usize,
        at: u64,
    },
    /// The stage sleeps 1 ms on its first items.
    Slow {
        stage: usize,
    },
    /// The stage blocks (as on slow I/O) for 100 ms on one item.
    Block {
        stage: usize,
    },
    /// The consumer reads `n` outputs, then drops the iterator.
    DropOutputs {
        after: usize,
    },
    /// The background handle is dropped while input still flows.
    DropRunning,
    /// The input is fed from another thread through a live handle.
    FeedFromThread,
    /// The stage's `count_by` weigher panics on the item whose original
    /// value is `at` (a user callback outside the step).
    WeighPanic {
        stage: usize,
        at: u64,
    },
    /// The consumer of `run_with` reads `after` outputs and returns while
    /// an input handle is still alive (fed from another thread).
    StopWithLiveInput {
        after: usize,
    },
}

#[derive(Debug, Clone)]
struct StageSpec {
    kind: Kind,
    workers: usize,
    ordered: bool,
}

#[derive(Debug, Clone)]
struct Case {
    stages: Vec<StageSpec>,
    capacity: usize,
    n: u64,
    fault: Fault,
}

fn stage_spec() -> impl Strategy<Value = StageSpec> {
    (
        prop_oneof![Just(Kind::Map), Just(Kind::Iter), Just(Kind::Step), Just(Kind::Hooked)],
        1usize..=8,
        any::<bool>(),
    )
        .prop_map(|(kind, workers, ordered)| StageSpec {
            kind,
            // Ordered mode with several workers is for function stages.
            ordered: ordered && (kind == Kind::Map || workers == 1),
            workers,
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(stage_spec(), 1..=6),
        1usize..=128,
        prop_oneof![Just(0u64), 1u64..=100_000],
    )
        .prop_flat_map(|(stages, capacity, n)| {
            // Tiny capacities mean batches of one item and a thread switch
            // per item per hop: keep those runs short enough for the 10 s
            // bound on a loaded 2-core machine in a debug build.
            let n = n.min(1_000 * capacity as u64);
            let s = stages.len();
            let policy = prop_oneof![
                Just(Policy::Fail),
                Just(Policy::Skip),
                Just(Policy::RetryThenFail),
                Just(Policy::RetryThenSkip)
            ];
            let fault = prop_oneof![
                2 => Just(Fault::None),
                4 => (0..s, 0..n.max(1), policy).prop_map(|(stage, at, policy)| Fault::Error { stage, at, policy }),
                1 => (0..s, 0..n.max(1)).prop_map(|(stage, at)| Fault::Panic { stage, at }),
                1 => (0..s).prop_map(|stage| Fault::Slow { stage }),
                1 => (0..s).prop_map(|stage| Fault::Block { stage }),
                1 => (0..50usize).prop_map(|after| Fault::DropOutputs { after }),
                1 => Just(Fault::DropRunning),
                1 => Just(Fault::FeedFromThread),
                1 => (0..s, 0..n.max(1)).prop_map(|(stage, at)| Fault::WeighPanic { stage, at }),
                1 => (0..=50usize.min(n as usize)).prop_map(|after| Fault::StopWithLiveInput { after }),
            ];
            (Just(stages), Just(capacity), Just(n), fault)
        })
        .prop_map(|(stages, capacity, n, fault)| Case {
            stages,
            capacity,
            n,
            fault,
        })
}

/// What stage `i` does to an item whose original value is `orig`:
/// add one, unless the fault says otherwise.
fn step_fn(fault: Fault, i: usize) -> impl Fn(u64) -> Result<u64, BoxError> + Send + Sync + Clone + 'static {
    move |x: u64| {
        let orig = x - i as u64;
        match fault {
            Fault::Error { stage, at, .. } if stage == i && orig == at => Err(format!("fault at {at}").into()),
            Fault::Panic { stage, at } if stage == i && orig == at => panic!("injected panic at {at}"),
            Fault::Slow { stage } if stage == i && orig < 20 => {
                std::thread::sleep(Duration::from_millis(1));
                Ok(x + 1)
            }
            Fault::Block { stage } if stage == i && orig == 0 => {
                std::thread::sleep(Duration::from_millis(100));
                Ok(x + 1)
            }
            _ => Ok(x + 1),
        }
    }
}

struct FnStep<F>(F);

impl<F: Fn(u64) -> Result<u64, BoxError> + Send> Step for FnStep<F> {
    type In = u64;
    type Out = u64;
    fn process(&mut self, item: u64, out: &mut Output<'_, u64>) -> Result<(), BoxError> {
        out.emit((self.0)(item)?);
        Ok(())
    }
}

/// How often each hook of one stage ran.
#[derive(Debug, Default)]
struct HookCalls {
    before_stage: AtomicUsize,
    after_stage: AtomicUsize,
    created: AtomicUsize,
    started: AtomicUsize,
    finished: AtomicUsize,
    shut_down: AtomicUsize,
}

struct HookedFactory<F> {
    f: F,
    calls: Arc<HookCalls>,
}

struct HookedStep<F> {
    f: F,
    calls: Arc<HookCalls>,
    started: bool,
    finished: bool,
}

impl<F: Fn(u64) -> Result<u64, BoxError> + Clone + Send + Sync> StepFactory for HookedFactory<F> {
    type Step = HookedStep<F>;
    fn create(&self, _: &WorkerInfo) -> HookedStep<F> {
        self.calls.created.fetch_add(1, SeqCst);
        HookedStep {
            f: self.f.clone(),
            calls: self.calls.clone(),
            started: false,
            finished: false,
        }
    }
    fn before_stage(&self) {
        self.calls.before_stage.fetch_add(1, SeqCst);
    }
    fn after_stage(&self) {
        // Every worker of the stage has shut down first.
        let (created, shut_down) = (self.calls.created.load(SeqCst), self.calls.shut_down.load(SeqCst));
        assert_eq!(created, shut_down, "after_stage before every worker shut down");
        self.calls.after_stage.fetch_add(1, SeqCst);
    }
}

impl<F: Fn(u64) -> Result<u64, BoxError> + Send> Step for HookedStep<F> {
    type In = u64;
    type Out = u64;
    fn process(&mut self, item: u64, out: &mut Output<'_, u64>) -> Result<(), BoxError> {
        if !self.started || self.finished {
            return Err("process outside on_start..on_finish".into());
        }
        out.emit((self.f)(item)?);
        Ok(())
    }
    fn on_start(&mut self, _: &WorkerInfo) -> Result<(), BoxError> {
        if self.started {
            return Err("on_start twice".into());
        }
        self.started = true;
        self.calls.started.fetch_add(1, SeqCst);
        Ok(())
    }
    fn on_idle(&mut self, _: &mut Output<'_, u64>) -> Result<(), BoxError> {
        if !self.started || self.finished {
            return Err("on_idle outside on_start..on_finish".into());
        }
        Ok(())
    }
    fn on_finish(&mut self, _: &mut Output<'_, u64>) -> Result<(), BoxError> {
        if self.finished {
            return Err("on_finish twice".into());
        }
        self.finished = true;
        self.calls.finished.fetch_add(1, SeqCst);
        Ok(())
    }
    fn on_shutdown(&mut self) {
        self.calls.shut_down.fetch_add(1, SeqCst);
    }
}

/// A pipeline built from a case, with what is needed to check it after the
/// run: each hooked stage's calls, and the final snapshot.
struct Built {
    pipeline: Pipeline<'static, u64, u64>,
    hooks: Vec<(usize, Arc<HookCalls>)>,
    last: Arc<Mutex<Option<Snapshot>>>,
}

fn build(case: &Case) -> Built {
    let last = Arc::new(Mutex::new(None));
    let keep = last.clone();
    let debugger = Debugger::silent().reporter(move |s: &Snapshot| {
        *keep.lock().unwrap() = Some(s.clone());
    });
    let mut p: Pipeline<'static, u64, u64> = Pipeline::new().capacity(case.capacity).unwrap().debug(debugger);
    let mut hooks = Vec::new();
    for (i, spec) in case.stages.iter().enumerate() {
        let f = step_fn(case.fault.clone(), i);
        let name = format!("s{i}");
        let mut stage: Stage<'static, u64, u64> = match spec.kind {
            Kind::Map => Stage::try_map(name, f),
            Kind::Iter => Stage::try_iter(name, move |it| it.map(f.clone())),
            Kind::Step => Stage::step(name, move |_: &_| FnStep(f.clone())),
            Kind::Hooked => {
                let calls = Arc::new(HookCalls::default());
                hooks.push((i, calls.clone()));
                Stage::step(name, HookedFactory { f, calls })
            }
        };
        stage = stage.workers(spec.workers);
        if let Fault::WeighPanic { stage: s, at } = case.fault {
            if s == i {
                // Stage i's output for the original value `at`.
                let out = at + i as u64 + 1;
                stage = stage.count_by(move |x: &u64| {
                    if *x == out {
                        panic!("injected panic in count_by")
                    } else {
                        1
                    }
                });
            }
        }
        if spec.ordered {
            stage = stage.ordered();
        }
        if let Fault::Error { stage: s, policy, .. } = case.fault {
            if s == i {
                let retry = |then| OnError::Retry {
                    times: 1,
                    backoff: Duration::from_micros(100),
                    then,
                };
                stage = match (policy, spec.kind) {
                    (Policy::Fail, _) => stage,
                    (Policy::Skip, _) => stage.skip_errors(),
                    // Iterator stages cannot retry: their fallback applies.
                    (Policy::RetryThenFail, Kind::Iter) => stage,
                    (Policy::RetryThenSkip, Kind::Iter) => stage.skip_errors(),
                    (Policy::RetryThenFail, _) => stage.on_error(retry(paipa::threaded::AfterRetries::Fail)),
                    (Policy::RetryThenSkip, _) => stage.on_error(retry(paipa::threaded::AfterRetries::Skip)),
                };
            }
        }
        p = p.then(stage).unwrap();
    }
    Built {
        pipeline: p,
        hooks,
        last,
    }
}

/// The hooks ran as documented: each stage hook once, each worker's
/// `on_start` and `on_shutdown` once, and `on_finish` once per worker when
/// the input ended (`ended`), at most once otherwise.
fn check_hooks(case: &Case, built: &Built, ended: bool) -> Result<(), TestCaseError> {
    for (i, calls) in &built.hooks {
        let workers = case.stages[*i].workers;
        let stage = format!("s{i}");
        prop_assert_eq!(calls.before_stage.load(SeqCst), 1, "before_stage of {}", &stage);
        prop_assert_eq!(calls.after_stage.load(SeqCst), 1, "after_stage of {}", &stage);
        prop_assert_eq!(calls.created.load(SeqCst), workers, "steps made for {}", &stage);
        prop_assert_eq!(calls.started.load(SeqCst), workers, "on_start of {}", &stage);
        prop_assert_eq!(calls.shut_down.load(SeqCst), workers, "on_shutdown of {}", &stage);
        let finished = calls.finished.load(SeqCst);
        if ended {
            prop_assert_eq!(finished, workers, "on_finish of {}", &stage);
        } else {
            prop_assert!(finished <= workers, "on_finish of {}: {}", &stage, finished);
        }
    }
    Ok(())
}

/// The books of the final report, which every run makes however it ends.
fn check_final_books(built: &Built) -> Result<(), TestCaseError> {
    let last = built.last.lock().unwrap().take();
    prop_assert!(last.is_some(), "no report at all");
    let last = last.unwrap();
    prop_assert!(last.is_final, "the last report is not the final one");
    check_books(&last)
}

/// The fatal fault of a case, if any: (stage name).
fn fatal(case: &Case) -> Option<String> {
    match case.fault {
        Fault::Error { stage, at, policy } if at < case.n && matches!(policy, Policy::Fail | Policy::RetryThenFail) => {
            Some(format!("s{stage}"))
        }
        Fault::Panic { stage, at } | Fault::WeighPanic { stage, at } if at < case.n => Some(format!("s{stage}")),
        _ => None,
    }
}

/// The sequential model's output.
fn model(case: &Case) -> Vec<u64> {
    let s = case.stages.len() as u64;
    (0..case.n)
        .filter(|x| !matches!(case.fault, Fault::Error { at, .. } if at == *x))
        .map(|x| x + s)
        .collect()
}

fn in_order(case: &Case) -> bool {
    case.stages.iter().all(|s| s.ordered || s.workers == 1)
}

fn check_books(snapshot: &paipa::Snapshot) -> Result<(), TestCaseError> {
    if let Some(row) = common::unbalanced(snapshot) {
        return Err(TestCaseError::fail(row));
    }
    Ok(())
}

fn multiset(v: &[u64]) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for x in v {
        *m.entry(*x).or_default() += 1;
    }
    m
}

fn run_case(case: Case) -> Result<(), TestCaseError> {
    let expected = model(&case);
    let fatal = fatal(&case);
    match case.fault {
        Fault::DropOutputs { after } => {
            let mut built = build(&case);
            let p = std::mem::take(&mut built.pipeline).source(0..case.n);
            let mut out = p.outputs().unwrap();
            let got = out.by_ref().take(after).count();
            prop_assert_eq!(got, after.min(expected.len()));
            let summary = out.finish().unwrap();
            // `items` is what the consumer got; what it dropped unread is
            // the last stage's `discarded`.
            prop_assert_eq!(summary.items, got as u64);
            check_books(&summary.snapshot)?;
            check_final_books(&built)?;
            // The input ended unless the consumer stopped first.
            check_hooks(&case, &built, after > expected.len())?;
        }
        Fault::StopWithLiveInput { after } => {
            let mut built = build(&case);
            let mut p = std::mem::take(&mut built.pipeline);
            // One handle feeds from another thread; this one stays alive
            // until the run is over: the consumer's return must end the run.
            let input = p.input();
            let feeder_input = input.clone();
            let n = case.n;
            let feeder = std::thread::spawn(move || {
                let _ = feeder_input.put_all(0..n);
            });
            let (got, summary) = p.run_with(|out| out.take(after).count()).unwrap();
            prop_assert_eq!(got, after);
            prop_assert_eq!(summary.items, after as u64);
            prop_assert!(input.put(0).is_err(), "the input is closed once the consumer is done");
            feeder.join().unwrap();
            check_books(&summary.snapshot)?;
            check_final_books(&built)?;
            check_hooks(&case, &built, false)?;
        }
        Fault::DropRunning => {
            let mut built = build(&case);
            let mut p = std::mem::take(&mut built.pipeline);
            let input = p.input();
            let running = p.spawn().unwrap();
            let n = case.n;
            let feeder = std::thread::spawn(move || {
                let _ = input.put_all(0..n);
            });
            std::thread::sleep(Duration::from_millis(2));
            drop(running);
            feeder.join().unwrap();
            check_final_books(&built)?;
            // Dropping the handle closes the input and drains: the input ends.
            check_hooks(&case, &built, true)?;
        }
        Fault::FeedFromThread => {
            let mut built = build(&case);
            let mut p = std::mem::take(&mut built.pipeline);
            let input = p.input();
            let running = p.spawn().unwrap();
            let n = case.n;
            std::thread::spawn(move || {
                input.put_all(0..n).unwrap();
            })
            .join()
            .unwrap();
            let summary = running.wait().unwrap();
            prop_assert_eq!(summary.items, expected.len() as u64);
            check_books(&summary.snapshot)?;
            check_final_books(&built)?;
            check_hooks(&case, &built, true)?;
        }
        _ => {
            let ordered = in_order(&case);
            let mut built = build(&case);
            let p = std::mem::take(&mut built.pipeline).source(0..case.n);
            let result = p.run_with(|out| out.collect::<Vec<u64>>());
            // However the run ended, its final report balances its books.
            check_final_books(&built)?;
            check_hooks(&case, &built, fatal.is_none())?;
            match (result, fatal) {
                (Ok((out, summary)), None) => {
                    if ordered {
                        prop_assert_eq!(&out, &expected);
                    } else {
                        prop_assert_eq!(multiset(&out), multiset(&expected));
                    }
                    prop_assert_eq!(summary.items, expected.len() as u64);
                    check_books(&summary.snapshot)?;
                }
                (Err(err), Some(stage)) => {
                    prop_assert_eq!(err.stage(), Some(stage.as_str()), "{}", err);
                    if let Fault::Panic { .. } | Fault::WeighPanic { .. } = case.fault {
                        prop_assert!(matches!(err, RunError::Panic { .. }), "{}", err);
                    }
                }
                (Ok(_), Some(stage)) => prop_assert!(false, "expected a failure of {}", stage),
                (Err(err), None) => prop_assert!(false, "unexpected error: {}", err),
            }
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PAIPA_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2500)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_pipelines_with_faults_end_account_and_match_the_model(case in case()) {
        common::quiet_injected_panics();
        let before = thread_count();
        let result = within(Duration::from_secs(10), move || run_case(case));
        result?;
        prop_assert_eq!(common::threads_settle_to(before), before, "a thread outlived the run");
    }
}
