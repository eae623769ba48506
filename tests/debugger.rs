//! The runtime debugger: counts, exclusive time, CPU, counters, memory, and
//! the reporting schedule (periodic, then exactly one final report).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paipa::iter::{chunk, consume, Pipeline};
use paipa::{Debugger, Snapshot};

mod common;
use common::within;

/// Every test here runs a reporter thread: a hang fails the test.
const LIMIT: Duration = Duration::from_secs(60);

fn caster(it: impl Iterator<Item = u32>) -> impl Iterator<Item = String> {
    it.map(|x| x.to_string())
}
fn flip(it: impl Iterator<Item = String>) -> impl Iterator<Item = String> {
    it.map(|s| s.chars().rev().collect())
}
fn flap(it: impl Iterator<Item = String>) -> impl Iterator<Item = Vec<String>> {
    it.map(|s| {
        std::thread::sleep(Duration::from_millis(1));
        vec![s]
    })
}
fn flatten(it: impl Iterator<Item = Vec<String>>) -> impl Iterator<Item = String> {
    it.map(|mut v| v.remove(0))
}

/// Reports collected by a test reporter.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<Snapshot>>>);

impl Collected {
    fn debugger(&self) -> Debugger {
        let sink = self.0.clone();
        Debugger::silent().reporter(move |s: &Snapshot| sink.lock().unwrap().push(s.clone()))
    }
    fn all(&self) -> Vec<Snapshot> {
        self.0.lock().unwrap().clone()
    }
    fn finals(&self) -> usize {
        self.all().iter().filter(|s| s.is_final).count()
    }
    /// The final reports, once there is one (it is made on a thread of its
    /// own, which a loaded machine may start late; bounded by `within`).
    fn finals_once_made(&self) -> usize {
        while self.finals() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.finals()
    }
}

#[test]
fn reference_debugging_example_puts_the_time_in_flap() {
    within(LIMIT, || {
        let reports = Collected::default();
        let pipeline = Pipeline::new(10_000..19_999u32)
            .debug(reports.debugger().source_name("list"))
            .step(caster)
            .step(flip)
            .step(flap)
            .step(flatten);
        assert_eq!(consume(pipeline), 9_999);

        assert_eq!(reports.finals_once_made(), 1);
        let snap = reports.all().pop().unwrap();
        assert!(snap.is_final);
        let names: Vec<_> = snap.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["list", "caster", "flip", "flap", "flatten"]);
        for s in &snap.stages {
            assert_eq!(s.count, 9_999, "count of {}", s.name);
        }
        let flap = snap.stage("flap").unwrap();
        let share = snap.share(flap);
        assert!(share >= 0.95, "flap share {share}");
        assert!(flap.busy >= Duration::from_millis(9_999), "flap busy {:?}", flap.busy);
        let cpu = (flap.user_cpu + flap.sys_cpu).as_secs_f64() / flap.busy.as_secs_f64();
        assert!(cpu < 0.20, "flap cpu/wall {cpu}");
        assert_eq!(snap.bottleneck().unwrap().name, "flap");
        // Exclusive times add up to no more than the run's wall time.
        assert!(snap.total_busy() <= snap.elapsed + Duration::from_millis(5));
    });
}

fn spin(it: impl Iterator<Item = u64>) -> impl Iterator<Item = u64> {
    it.map(|x| {
        let until = Instant::now() + Duration::from_micros(200);
        let mut acc = x;
        while Instant::now() < until {
            acc = std::hint::black_box(acc.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        acc
    })
}

#[test]
fn cpu_bound_stage_shows_cpu_close_to_its_wall_time() {
    within(LIMIT, || {
        let pipeline = Pipeline::new(0..1_500u64).debug(Debugger::silent()).step(spin);
        let stats = pipeline.stats();
        let before = thread_cpu();
        assert_eq!(consume(pipeline), 1_500);
        let spent = thread_cpu() - before;
        let snap = stats.snapshot();
        let s = snap.stage("spin").unwrap();
        assert!(s.busy >= Duration::from_millis(300), "busy {:?}", s.busy);
        // The pipeline ran on this thread and "spin" did nearly all of its
        // work: the stage's CPU is this thread's CPU over the run, whatever
        // else the machine was doing (a ratio to wall time would drop
        // whenever another process preempts the thread).
        let ratio = (s.user_cpu + s.sys_cpu).as_secs_f64() / spent.as_secs_f64();
        assert!((0.8..=1.05).contains(&ratio), "spin cpu / thread cpu {ratio}");
    });
}

fn slow_source(n: u64) -> impl Iterator<Item = u64> {
    (0..n).inspect(|_| std::thread::sleep(Duration::from_millis(1)))
}
fn sleepy(it: impl Iterator<Item = u64>) -> impl Iterator<Item = u64> {
    it.inspect(|_| std::thread::sleep(Duration::from_millis(3)))
}

#[test]
fn times_are_exclusive_not_including_upstream() {
    within(LIMIT, || {
        let pipeline = Pipeline::new(slow_source(60)).debug(Debugger::silent()).step(sleepy);
        let stats = pipeline.stats();
        consume(pipeline);
        let snap = stats.snapshot();
        let src = snap.stage("source").unwrap().busy;
        let sl = snap.stage("sleepy").unwrap().busy;
        // Each is charged at least its own sleeps...
        assert!(src >= Duration::from_millis(60), "source {src:?}");
        assert!(sl >= Duration::from_millis(180), "sleepy {sl:?}");
        // ...and no one's time twice: had "sleepy" been charged the source's
        // pulls too, the two would add up to more than the run's wall time
        // by at least the source's 60 ms. (Wall time, not upper bounds on
        // sleeps: a loaded machine stretches the sleeps, never the sum.)
        assert!(
            src + sl <= snap.elapsed + Duration::from_millis(5),
            "source {src:?} + sleepy {sl:?} > elapsed {:?}",
            snap.elapsed
        );
    });
}

fn queries(it: impl Iterator<Item = u64>) -> impl Iterator<Item = u64> {
    it.inspect(|_| paipa::stats::count("q", 3))
}

#[test]
fn user_counters_go_to_the_stage_that_counted() {
    within(LIMIT, || {
        let pipeline = Pipeline::new(0..100u64)
            .debug(Debugger::silent())
            .step(queries)
            .step_named("after", |it| it.map(|x| x + 1));
        let stats = pipeline.stats();
        consume(pipeline);
        let snap = stats.snapshot();
        assert_eq!(snap.stage("queries").unwrap().counter("q"), 300);
        assert_eq!(snap.stage("after").unwrap().counter("q"), 0);
        assert_eq!(snap.stage("source").unwrap().counter("q"), 0);
        // Outside a pipeline, counting does nothing (and does not crash).
        paipa::stats::count("q", 1);
        assert_eq!(stats.snapshot().stage("queries").unwrap().counter("q"), 300);
    });
}

#[test]
fn batches_count_as_their_length_where_the_step_says_so() {
    within(LIMIT, || {
        let pipeline = Pipeline::new(0..10u32)
            .debug(Debugger::silent())
            .step(chunk(4).unwrap())
            .count_by(|b: &Vec<u32>| b.len() as u64)
            .step_named("batches", |it| it);
        let stats = pipeline.stats();
        assert_eq!(consume(pipeline), 3);
        let snap = stats.snapshot();
        assert_eq!(snap.stage("chunk").unwrap().count, 10);
        assert_eq!(snap.stage("batches").unwrap().count, 3);
        assert_eq!(snap.stage("batches").unwrap().count_in, 10);
    });
}

#[test]
fn periodic_reports_then_exactly_one_final() {
    within(LIMIT, || {
        let reports = Collected::default();
        let pipeline = Pipeline::new(0..60u64)
            .debug(reports.debugger().interval(Duration::from_millis(20)))
            .step(sleepy);
        consume(pipeline);
        assert_eq!(reports.finals_once_made(), 1);
        let all = reports.all();
        assert!(all.len() >= 3, "{} reports", all.len());
        assert!(all.last().unwrap().is_final);
        // Counts never go backwards between reports.
        let counts: Vec<u64> = all.iter().map(|s| s.stages[1].count).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        assert_eq!(*counts.last().unwrap(), 60);
    });
}

#[test]
fn a_stage_stuck_in_one_call_shows_its_time_while_stuck() {
    within(LIMIT, || {
        let reports = Collected::default();
        let pipeline = Pipeline::new(0..1u64)
            .debug(reports.debugger().interval(Duration::from_millis(30)))
            .step_named("stuck", |it| {
                it.inspect(|_| std::thread::sleep(Duration::from_millis(200)))
            });
        consume(pipeline);
        let all = reports.all();
        let live = all
            .iter()
            .find(|s| !s.is_final && s.stage("stuck").unwrap().busy >= Duration::from_millis(60));
        assert!(live.is_some(), "no periodic report showed the stuck stage's time");
    });
}

#[test]
fn early_drop_makes_exactly_one_final_report() {
    within(LIMIT, || {
        let reports = Collected::default();
        let mut it = Pipeline::new(0..1_000_000u64)
            .debug(reports.debugger())
            .step(queries)
            .into_iter();
        assert_eq!(paipa::iter::consume_n(&mut it, 10), 10);
        assert_eq!(reports.finals(), 0);
        drop(it);
        assert_eq!(reports.finals_once_made(), 1);
        let last = reports.all().pop().unwrap();
        assert_eq!(last.stage("queries").unwrap().count, 10);
    });
}

#[test]
fn a_panicking_step_still_makes_one_final_report() {
    within(LIMIT, || {
        let reports = Collected::default();
        let debugger = reports.debugger();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let pipeline = Pipeline::new(0..100u64)
                .debug(debugger)
                .step_named("boom", |it| it.map(|x| if x == 42 { panic!("boom at 42") } else { x }));
            consume(pipeline)
        }));
        assert!(result.is_err());
        assert_eq!(reports.finals_once_made(), 1);
        assert_eq!(reports.all().pop().unwrap().stage("boom").unwrap().count, 42);
        // The counter target was removed on unwind: counting now is a no-op.
        paipa::stats::count("q", 1);
    });
}

#[test]
fn sampled_mode_keeps_counts_exact_and_shares_close() {
    within(LIMIT, || {
        const ITEMS: usize = 3_000;
        const EVERY: usize = 16;
        // Each step records how long its own work took for every item: the
        // truth to hold the sampled times against, measured in the same run
        // (a second run to compare with would see another machine load).
        let light: Arc<Vec<AtomicU64>> = Arc::new((0..ITEMS).map(|_| AtomicU64::new(0)).collect());
        let heavy: Arc<Vec<AtomicU64>> = Arc::new((0..ITEMS).map(|_| AtomicU64::new(0)).collect());
        let (l, h) = (light.clone(), heavy.clone());
        let pipeline = Pipeline::new(0..ITEMS as u64)
            .debug(Debugger::silent().sampled(EVERY as u32).unwrap())
            .step_named("light", move |it| {
                it.inspect(move |&i| {
                    let t = Instant::now();
                    std::thread::sleep(Duration::from_micros(100));
                    l[i as usize].store(t.elapsed().as_nanos() as u64, Relaxed);
                })
            })
            .step_named("heavy", move |it| {
                it.inspect(move |&i| {
                    let t = Instant::now();
                    std::thread::sleep(Duration::from_micros(300));
                    h[i as usize].store(t.elapsed().as_nanos() as u64, Relaxed);
                })
            });
        let stats = pipeline.stats();
        assert_eq!(consume(pipeline), ITEMS);
        let s = stats.snapshot();
        for name in ["source", "light", "heavy"] {
            assert_eq!(s.stage(name).unwrap().count, ITEMS as u64, "count of {name}");
        }

        // One pull in EVERY is timed, so the sampled times are those of the
        // items of one phase (item index modulo EVERY), scaled up. Whichever
        // phase it is, the sampled share lies within the true shares of the
        // phases, give or take the probes' own time: a slow item (a loaded
        // machine) moves both the sample and the truth it is checked against.
        let per_phase = |t: &[AtomicU64]| {
            let mut sums = [0f64; EVERY];
            for (i, ns) in t.iter().enumerate() {
                sums[i % EVERY] += ns.load(Relaxed) as f64 / 1e9;
            }
            sums
        };
        let (l, h) = (per_phase(&light), per_phase(&heavy));
        let range = |shares: Vec<f64>| {
            let lo = shares.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = shares.iter().copied().fold(0.0, f64::max);
            (lo, hi)
        };
        let truth = [
            ("source", (0.0, 0.0)),
            ("light", range((0..EVERY).map(|p| l[p] / (l[p] + h[p])).collect())),
            ("heavy", range((0..EVERY).map(|p| h[p] / (l[p] + h[p])).collect())),
        ];
        const TOLERANCE: f64 = 0.05;
        for (name, (lo, hi)) in truth {
            let share = s.share(s.stage(name).unwrap());
            assert!(
                share >= lo - TOLERANCE && share <= hi + TOLERANCE,
                "{name}: sampled share {share}, true shares of the phases {lo}..{hi}"
            );
        }
        // The sampled times are scaled up to the whole run: a stage is
        // charged at least EVERY times its measured work on one phase.
        for (name, sums) in [("light", l), ("heavy", h)] {
            let least = sums.iter().copied().fold(f64::INFINITY, f64::min) * EVERY as f64;
            let busy = s.stage(name).unwrap().busy.as_secs_f64();
            assert!(busy >= 0.95 * least, "{name}: busy {busy} s, least {least} s");
        }
    });
}

#[test]
fn log_table_lines_up() {
    within(LIMIT, || {
        let pipeline = Pipeline::new(0..5u64)
            .debug(Debugger::silent())
            .step(queries)
            .step(sleepy);
        let stats = pipeline.stats();
        consume(pipeline);
        let lines = paipa::report::format_table(&stats.snapshot());
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "--------------------");
        let col = |l: &str| l.find("count:").unwrap();
        assert!(lines[1..].iter().all(|l| col(l) == col(&lines[1])), "{lines:#?}");
        let rt = |l: &str| l.find("runtime:").unwrap();
        assert!(lines[1..].iter().all(|l| rt(l) == rt(&lines[1])), "{lines:#?}");
        assert!(lines[2].contains("q: 15 q/e: 3.00"), "{}", lines[2]);
    });
}

/// This thread's CPU time (user + system).
fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills a plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid rusage to write into.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}
