//! The end-of-run chart: a well-formed SVG that names every stage.

use std::time::Duration;

use paipa::report::ChartReporter;
use paipa::threaded::{Pipeline, Stage};
use paipa::Debugger;

#[test]
fn chart_parses_and_names_every_stage() {
    let path = std::env::temp_dir().join(format!("paipa-chart-{}.svg", std::process::id()));
    let debugger = Debugger::silent()
        .name("chart <test>")
        .interval(Duration::from_millis(10))
        .reporter(ChartReporter::new(&path));
    let summary = Pipeline::new()
        .debug(debugger)
        .source(0..2_000u64)
        .then(Stage::map("parse", |x: u64| x + 1).workers(2))
        .unwrap()
        .then(Stage::map("slow_write", |x: u64| {
            std::thread::sleep(Duration::from_micros(50));
            x
        }))
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(summary.items, 2_000);
    // The chart is written by the final report, on a thread of its own
    // (the run waits for it at most 2 s): wait for the file, a minute at most.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let svg = loop {
        match std::fs::read_to_string(&path) {
            Ok(svg) if roxmltree::Document::parse(&svg).is_ok() => break svg,
            _ if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            other => panic!("no chart at {}: {other:?}", path.display()),
        }
    };
    std::fs::remove_file(&path).ok();
    let doc = roxmltree::Document::parse(&svg).expect("the chart is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    for name in ["source", "parse", "slow_write", "consumer", "paipa: chart <test>"] {
        assert!(texts.contains(&name), "{name} missing from {texts:?}");
    }
    let lines = doc.descendants().filter(|n| n.has_tag_name("polyline")).count();
    // The consumer has a row of its own, so a line of each too.
    assert_eq!(lines, 2 * 4, "a throughput and a queue line per row");
}
