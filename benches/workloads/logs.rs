//! Log analytics: synthetic access-log lines in a file, read line by line,
//! parsed (malformed lines dropped), enriched and aggregated. Shared by
//! `examples/bench_logs.rs`, with its baselines: a plain loop and rayon
//! `par_bridge`, on the same file in the same run.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use paipa::threaded::{Pipeline, Stage};
use rayon::prelude::*;

const PATHS: [&str; 8] = [
    "/index.html",
    "/api/v1/items",
    "/static/app.js",
    "/static/style.css",
    "/images/logo.png",
    "/api/v1/users/42",
    "/download/report.pdf",
    "/search",
];
const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
    "curl/8.5.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
];

/// Writes `n` access-log lines (about 1 in 200 malformed) to `path`.
pub fn generate(path: &Path, n: u64) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(200) {
            writeln!(w, "garbage line {i} without the fields")?;
            continue;
        }
        let ip = (x >> 8) as u32;
        let status = [200, 200, 200, 304, 404, 500, 301, 200][(x >> 3) as usize % 8];
        writeln!(
            w,
            "{}.{}.{}.{} - - [{:02}/Nov/2026:{:02}:{:02}:{:02} +0000] \"{} {}?q={} HTTP/1.1\" {} {} \"-\" \"{}\"",
            ip >> 24,
            (ip >> 16) & 255,
            (ip >> 8) & 255,
            ip & 255,
            1 + (x >> 20) % 28,
            (x >> 25) % 24,
            (x >> 30) % 60,
            (x >> 36) % 60,
            if x & 1 == 0 { "GET" } else { "POST" },
            PATHS[(x >> 11) as usize % PATHS.len()],
            x % 10_000,
            status,
            (x >> 40) % 50_000,
            AGENTS[(x >> 14) as usize % AGENTS.len()],
        )?;
    }
    w.flush()
}

/// One parsed line.
pub struct Hit {
    pub ip: u32,
    pub hour: u8,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    pub agent: String,
}

/// Parses one line; `None` if it is malformed.
pub fn parse(line: String) -> Option<Hit> {
    let (ip, rest) = line.split_once(" - - [")?;
    let mut octets = ip.split('.').map(|o| o.parse::<u8>());
    let mut ip = 0u32;
    for _ in 0..4 {
        ip = ip << 8 | u32::from(octets.next()?.ok()?);
    }
    let (stamp, rest) = rest.split_once("] \"")?;
    let hour = stamp.get(12..14)?.parse().ok()?;
    let (request, rest) = rest.split_once("\" ")?;
    let mut parts = request.split(' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    let path = target.split_once('?').map_or(target, |(p, _)| p).to_string();
    let mut fields = rest.splitn(3, ' ');
    let status = fields.next()?.parse().ok()?;
    let bytes = fields.next()?.parse().ok()?;
    let agent = fields.next()?.rsplit('"').nth(1)?.to_string();
    Some(Hit {
        ip,
        hour,
        method,
        path,
        status,
        bytes,
        agent,
    })
}

/// A hit with what the aggregation keys on.
pub struct Enriched {
    pub kind: &'static str,
    pub client: &'static str,
    pub class: u16,
    pub hour: u8,
    pub bytes: u64,
    pub subnet: u32,
}

/// Classifies a hit.
pub fn enrich(hit: Hit) -> Enriched {
    let kind = if hit.path.starts_with("/api/") {
        "api"
    } else if hit.path.starts_with("/static/") || hit.path.ends_with(".png") {
        "asset"
    } else if hit.path.ends_with(".pdf") {
        "download"
    } else if hit.method == "POST" {
        "form"
    } else {
        "page"
    };
    let agent = hit.agent.to_ascii_lowercase();
    let client = if agent.contains("bot") {
        "bot"
    } else if agent.contains("curl") {
        "tool"
    } else {
        "browser"
    };
    Enriched {
        kind,
        client,
        class: hit.status / 100,
        hour: hit.hour,
        bytes: hit.bytes,
        subnet: hit.ip >> 8,
    }
}

/// What the run computes: hits and bytes per (kind, client, status class),
/// hits per hour.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub groups: HashMap<(&'static str, &'static str, u16), (u64, u64)>,
    pub hours: [u64; 24],
    pub hits: u64,
}

impl Totals {
    pub fn add(mut self, e: Enriched) -> Self {
        self.record(e);
        self
    }

    /// Counts one hit in place.
    pub fn record(&mut self, e: Enriched) {
        let g = self.groups.entry((e.kind, e.client, e.class)).or_default();
        g.0 += 1;
        g.1 += e.bytes;
        self.hours[usize::from(e.hour) % 24] += 1;
        self.hits += 1;
    }

    pub fn merge(mut self, other: Totals) -> Self {
        for (k, (n, b)) in other.groups {
            let g = self.groups.entry(k).or_default();
            g.0 += n;
            g.1 += b;
        }
        for (h, n) in other.hours.iter().enumerate() {
            self.hours[h] += n;
        }
        self.hits += other.hits;
        self
    }
}

fn lines(path: &Path) -> impl Iterator<Item = String> + Send {
    BufReader::with_capacity(1 << 16, File::open(path).expect("the log file"))
        .lines()
        .map(|l| l.expect("a line"))
}

/// Reads the lines and nothing else: the part no variant can split.
pub fn read_only(path: &Path) -> u64 {
    lines(path).count() as u64
}

/// The plain single-thread loop.
pub fn plain_loop(path: &Path) -> Totals {
    lines(path)
        .filter_map(parse)
        .map(enrich)
        .fold(Totals::default(), Totals::add)
}

/// rayon `par_bridge` over the same lines, fold and reduce.
pub fn rayon(path: &Path) -> Totals {
    lines(path)
        .par_bridge()
        .filter_map(parse)
        .map(enrich)
        .fold(Totals::default, Totals::add)
        .reduce(Totals::default, Totals::merge)
}

/// By hand: a reader thread sends `Vec` batches of 1024 lines over a
/// bounded crossbeam channel to 2 threads that parse, enrich and fold; the
/// caller merges their totals.
pub fn crossbeam_batched(path: &Path) -> Totals {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<String>>(4);
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut it = lines(path);
            loop {
                let batch: Vec<String> = it.by_ref().take(1024).collect();
                if batch.is_empty() || tx.send(batch).is_err() {
                    break;
                }
            }
        });
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let rx = rx.clone();
                s.spawn(move || {
                    rx.iter()
                        .flatten()
                        .filter_map(parse)
                        .map(enrich)
                        .fold(Totals::default(), Totals::add)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold(Totals::default(), Totals::merge)
    })
}

/// paipa as the README writes it: a lazy source of lines, parse x2,
/// enrich x2, the fold in `run_with`; default settings.
pub fn paipa(path: &Path) -> Totals {
    let mut pipeline = Pipeline::new();
    if let Some(c) = std::env::var("PAIPA_BENCH_CAPACITY").ok().and_then(|c| c.parse().ok()) {
        pipeline = pipeline.capacity(c).unwrap();
    }
    let pipeline = pipeline
        .source(lines(path))
        .then(Stage::iter("parse", |lines| lines.filter_map(parse)).workers(2))
        .unwrap()
        .then(Stage::map("enrich", enrich).workers(2))
        .unwrap();
    let (totals, _summary) = pipeline
        .run_with(|out| out.fold(Totals::default(), Totals::add))
        .unwrap();
    totals
}

/// paipa with the aggregation as a fold stage (as the README shows it): each
/// worker folds its hits into totals of its own, on the threads that
/// parsed and enriched them, and the consumer merges one partial per
/// worker; default settings.
pub fn paipa_fold(path: &Path) -> Totals {
    let (totals, _summary) = Pipeline::new()
        .source(lines(path))
        .then(Stage::iter("parse", |lines| lines.filter_map(parse)).workers(2))
        .unwrap()
        .then(Stage::map("enrich", enrich).workers(2))
        .unwrap()
        .then(Stage::fold("aggregate", Totals::default, Totals::record).workers(2))
        .unwrap()
        .run_with(|partials| partials.fold(Totals::default(), Totals::merge))
        .unwrap();
    totals
}
