//! One step registry for both kinds: run-time lists of threaded stages
//! (`Pipeline::then_all`), and boxed iterator steps that run as threaded
//! stages (`Stage::from(BoxedStep)`).

use std::time::Duration;

use paipa::iter::{self, boxed, BoxIter, BoxedStep, StepList};
use paipa::threaded::{Pipeline, Stage};
use paipa::Debugger;

mod common;
use common::within;

const LIMIT: Duration = Duration::from_secs(60);

/// A stage made from its configured name and worker count, as a registry
/// read from a file would make it.
fn stage_for(name: &str, workers: usize) -> Stage<'static, u64, u64> {
    let f: fn(u64) -> u64 = match name {
        "inc" => |x| x + 1,
        "double" => |x| x * 2,
        "square" => |x| x * x,
        other => panic!("no stage {other:?}"),
    };
    Stage::map(name, f).workers(workers)
}

fn stage_names(snapshot: &paipa::Snapshot) -> Vec<String> {
    snapshot.stages.iter().map(|s| s.name.clone()).collect()
}

/// The stages of a threaded run, between its source and consumer rows.
fn threaded_stages(snapshot: &paipa::Snapshot) -> Vec<String> {
    let names = stage_names(snapshot);
    assert_eq!(
        (names[0].as_str(), names[names.len() - 1].as_str()),
        ("source", "consumer")
    );
    names[1..names.len() - 1].to_vec()
}

#[test]
fn a_list_of_three_stages_built_in_a_loop_gives_exact_outputs() {
    within(LIMIT, || {
        let config: Vec<(String, usize)> = vec![("inc".into(), 2), ("double".into(), 3), ("square".into(), 1)];
        let mut stages = Vec::new();
        for (name, workers) in &config {
            stages.push(stage_for(name, *workers));
        }
        let pipeline = Pipeline::new().source(0..1000u64).then_all(stages).unwrap();
        let (mut out, summary) = pipeline.run_with(|out| out.collect::<Vec<u64>>()).unwrap();
        out.sort_unstable();
        let expected: Vec<u64> = (0..1000u64).map(|x| ((x + 1) * 2) * ((x + 1) * 2)).collect();
        assert_eq!(out, expected);
        assert_eq!(summary.items, 1000);
        assert_eq!(
            stage_names(&summary.snapshot),
            ["source", "inc", "double", "square", "consumer"]
        );
        for (name, workers) in &config {
            let stage = summary.snapshot.stage(name).unwrap();
            assert_eq!((stage.count_in, stage.count), (1000, 1000), "{name}");
            assert_eq!(stage.workers, *workers, "{name}");
        }
    });
}

#[test]
fn stages_of_a_list_follow_the_ones_added_one_by_one() {
    within(LIMIT, || {
        let summary = Pipeline::new()
            .source(0..10u64)
            .then(Stage::map("first", |x: u64| x + 100))
            .unwrap()
            .then_all([stage_for("double", 2), stage_for("inc", 1)])
            .unwrap()
            .then(Stage::map("last", |x: u64| x.to_string()))
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(summary.items, 10);
        assert_eq!(
            stage_names(&summary.snapshot),
            ["source", "first", "double", "inc", "last", "consumer"]
        );
    });
}

fn evens(it: BoxIter<'_, u64>) -> impl Iterator<Item = u64> + '_ {
    it.filter(|x| x % 2 == 0)
}

fn repeat(it: BoxIter<'_, u64>) -> impl Iterator<Item = u64> + '_ {
    it.flat_map(|x| [x, x + 1])
}

/// A nested list of boxed steps, one named explicitly.
fn registry() -> StepList<'static, u64> {
    vec![
        StepList::from(boxed(evens)),
        vec![
            boxed(repeat),
            BoxedStep::named("triple", |it: BoxIter<'static, u64>| it.map(|x| x * 3)),
        ]
        .into(),
        boxed(iter::identity).into(),
    ]
    .into()
}

#[test]
fn one_boxed_list_runs_alike_in_both_kinds_of_pipeline() {
    within(LIMIT, || {
        let steps = registry();
        let names = steps.names();
        assert_eq!(names, ["evens", "repeat", "triple", "identity"]);

        // Iterator pipeline, measured so that its stage names show.
        let pipeline = iter::Pipeline::new(0..500u64)
            .debug(Debugger::silent())
            .steps(steps.clone());
        let stats = pipeline.stats();
        let mut by_iter: Vec<u64> = pipeline.into_iter().collect();
        assert_eq!(by_iter.len(), 500);
        assert_eq!(stage_names(&stats.snapshot())[1..], names[..]);

        // Threaded, one worker a stage: the very same order.
        let (by_one, summary) = Pipeline::new()
            .source(0..500u64)
            .then_all(steps.clone())
            .unwrap()
            .run_with(|out| out.collect::<Vec<u64>>())
            .unwrap();
        assert_eq!(by_one, by_iter);
        assert_eq!(threaded_stages(&summary.snapshot), names);

        // Threaded, three workers a stage: the same multiset.
        let (mut by_three, summary) = Pipeline::new()
            .source(0..500u64)
            .then_all(steps.into_iter().map(|step| Stage::from(step).workers(3)))
            .unwrap()
            .run_with(|out| out.collect::<Vec<u64>>())
            .unwrap();
        by_iter.sort_unstable();
        by_three.sort_unstable();
        assert_eq!(by_three, by_iter);
        assert_eq!(threaded_stages(&summary.snapshot), names);
        let repeat = summary.snapshot.stage("repeat").unwrap();
        assert_eq!((repeat.count_in, repeat.count), (250, 500));
    });
}

#[test]
fn a_boxed_step_made_once_plugs_into_either_kind() {
    within(LIMIT, || {
        let step = boxed(evens);
        let by_iter: Vec<u64> = iter::combine(0..20u64, step.clone()).into_iter().collect();
        let (by_thread, summary) = Pipeline::new()
            .source(0..20u64)
            .then(Stage::from(step))
            .unwrap()
            .run_with(|out| out.collect::<Vec<u64>>())
            .unwrap();
        assert_eq!(by_iter, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
        assert_eq!(by_thread, by_iter);
        assert_eq!(stage_names(&summary.snapshot), ["source", "evens", "consumer"]);
    });
}

#[test]
fn an_empty_list_leaves_the_pipeline_as_it_was() {
    within(LIMIT, || {
        let empty: Vec<Stage<'static, u64, u64>> = Vec::new();
        let (out, summary) = Pipeline::new()
            .source(0..5u64)
            .then_all(empty)
            .unwrap()
            .then_all(StepList::List(Vec::new()))
            .unwrap()
            .run_with(|out| out.collect::<Vec<u64>>())
            .unwrap();
        assert_eq!(out, [0, 1, 2, 3, 4]);
        assert_eq!(summary.items, 5);
        assert_eq!(stage_names(&summary.snapshot), ["source", "consumer"]);

        // After a stage, too: nothing is added behind it.
        let summary = Pipeline::new()
            .source(0..5u64)
            .then(stage_for("inc", 1))
            .unwrap()
            .then_all(std::iter::empty::<Stage<'static, u64, u64>>())
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(stage_names(&summary.snapshot), ["source", "inc", "consumer"]);
    });
}

#[test]
fn an_invalid_stage_in_the_list_is_refused_by_name() {
    let config = [("inc", 2), ("double", 0), ("square", 1)];
    let stages = config.iter().map(|&(name, workers)| stage_for(name, workers));
    let err = Pipeline::new().source(0..5u64).then_all(stages).unwrap_err();
    assert_eq!(err.field(), "workers");
    assert_eq!(err.value(), "0");
    assert_eq!(
        err.to_string(),
        "invalid workers: 0 (stage \"double\" needs at least 1)"
    );

    // A boxed step keeps its name in the error too.
    let steps = registry().into_iter().map(|step| {
        if step.name() == "triple" {
            Stage::from(step).workers(0)
        } else {
            Stage::from(step)
        }
    });
    let err = Pipeline::new().source(0..5u64).then_all(steps).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid workers: 0 (stage \"triple\" needs at least 1)"
    );

    // And a stage past the worker bound.
    let err = Pipeline::<u64, u64>::new()
        .then_all([stage_for("inc", 1), stage_for("square", usize::MAX)])
        .unwrap_err();
    assert!(err.to_string().contains("stage \"square\" takes at most"), "{err}");
}

#[test]
fn stages_whose_closures_infer_their_types_from_the_pipeline() {
    within(LIMIT, || {
        let (mut out, _) = Pipeline::new()
            .source(0..4u32)
            .then_all(vec![Stage::map("a", |x: u32| x + 1), Stage::map("b", |x| x * 10)])
            .unwrap()
            .run_with(|out| out.collect::<Vec<u32>>())
            .unwrap();
        out.sort_unstable();
        assert_eq!(out, [10, 20, 30, 40]);
    });
}
