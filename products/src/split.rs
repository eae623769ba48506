//! The products job split across processes on Redis Streams:
//!
//! - `extract`: SQLite rows -> only_available -> the `products` stream
//!   (each product added with its id as origin id);
//! - `load` (as many as you like, each its own consumer in the group
//!   `loaders`): the stream -> chunk -> send_in_batch (POST to an ingestion
//!   server) -> flatten -> done (acked once the POST is accepted);
//! - `top`: the table of every running process, published by each under a
//!   key with a TTL, with the bottleneck named across machines;
//! - `reset`: deletes the stream and its keys for a fresh run.
//!
//! SIGTERM or Ctrl-C on a `load` stops reading; what it holds is finished
//! and acked before it exits, and what it could not finish stays pending
//! for the others.

use std::time::{Duration, Instant};

use paipa::iter::{chunk, flatten, Pipeline};
use paipa::remote::{self, EdgeConfig, Publisher, StreamSink, StreamSource, Tracked};
use paipa::Debugger;
use rusqlite::Connection;

use crate::{check_server, ensure_db, ingestion, only_available, send, Args, Product};

type Res = Result<(), Box<dyn std::error::Error>>;

const JOB: &str = "products";

fn edge(args: &Args) -> Result<EdgeConfig, paipa::ConfigError> {
    let edge = EdgeConfig::new(&args.redis, &args.stream, "loaders")
        .batch(1000)?
        .max_len(200_000)?
        .claim_idle(Duration::from_secs(10))?;
    Ok(match &args.consumer {
        Some(name) => edge.consumer(name),
        None => edge,
    })
}

/// SQLite -> only_available -> the stream.
pub(crate) fn extract(args: Args) -> Res {
    let mut conn = Connection::open(&args.db)?;
    ensure_db(&mut conn, args.rows)?;
    let edge = edge(&args)?;
    let mut sink = StreamSink::<Product>::open(edge)?;
    let publisher = Publisher::new(&args.redis, JOB, "extract")?.edge(sink.watch());
    let started = Instant::now();
    let mut select = conn.prepare("select id, name, price, available from products")?;
    let rows = select
        .query_map([], |r| {
            Ok(Product {
                id: r.get(0)?,
                name: r.get(1)?,
                price: r.get(2)?,
                available: r.get(3)?,
            })
        })?
        .map(|r| r.expect("a products row"));
    let pipeline = Pipeline::new(rows)
        .debug(
            Debugger::new()
                .name("products extract")
                .source_name("select")
                .interval(Duration::from_secs(1))
                .edge(&sink.watch())
                .reporter(publisher),
        )
        .step(only_available);
    for p in pipeline {
        sink.add_with_id(p.id.to_string(), &p)?;
    }
    let stats = sink.finish()?;
    println!(
        "extract: {} available products added to stream {:?} in {:.1} s (waited {:.1} s for room)",
        stats.added,
        args.stream,
        started.elapsed().as_secs_f64(),
        stats.waited.as_secs_f64()
    );
    Ok(())
}

/// Burns about `us` microseconds of CPU: the stand-in for a heavy stage.
fn work(products: impl Iterator<Item = Tracked<Product>>, us: u64) -> impl Iterator<Item = Tracked<Product>> {
    products.inspect(move |_| {
        if us > 0 {
            let until = Instant::now() + Duration::from_micros(us);
            let mut x = 1u64;
            while Instant::now() < until {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    })
}

/// POSTs each batch's products, then passes the batch on (its entries are
/// acked only after the flatten below finishes every product).
fn send_in_batch(
    chunks: impl Iterator<Item = Vec<Tracked<Product>>>,
    url: String,
) -> impl Iterator<Item = Vec<Tracked<Product>>> {
    // One request at a time, on the sender of the one-process job
    // (`send.rs`), driven by a runtime of this step's own.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the sender");
    let client = send::client(1);
    let url: hyper::Uri = url.parse().expect("the ingestion URL");
    chunks.inspect(move |batch| {
        let values: Vec<&Product> = batch.iter().map(Tracked::value).collect();
        let body = serde_json::to_vec(&values).expect("products serialise").into();
        let sent = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), send::post_until_accepted(&client, &url, body)).await
        });
        match sent {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("POST {url}: no answer within 30 s"),
        }
    })
}

/// The stream -> chunk -> send_in_batch -> flatten, until every producer
/// is done and nothing is pending, or SIGTERM.
pub(crate) fn load(args: Args) -> Res {
    let (local, url) = ingestion(&args)?;
    let edge = edge(&args)?;
    let name = edge.consumer_name().to_string();
    let (source, handle) = StreamSource::<Product>::open(edge)?;
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, handle.stop_flag())?;
    }
    let publisher = Publisher::new(&args.redis, JOB, &format!("load {name}"))?.edge(handle.watch());
    let started = Instant::now();
    let work_us = args.work_us;
    let pipeline = Pipeline::new(source)
        .debug(
            Debugger::new()
                .name("products load")
                .source_name("xreadgroup")
                .interval(Duration::from_secs(1))
                .reporter(publisher),
        )
        .step_named("work", move |it| work(it, work_us))
        .step(chunk(args.batch)?)
        .step_named("send_in_batch", |chunks| send_in_batch(chunks, url.clone()))
        .step(flatten);
    let mut sent = 0u64;
    for product in pipeline {
        product.done();
        sent += 1;
    }
    let stats = handle.finish()?;
    println!(
        "load {name}: {sent} products sent in {:.1} s ({} read, {} claimed from others, {} acked, {} dead, {} redis errors)",
        started.elapsed().as_secs_f64(),
        stats.read,
        stats.claimed,
        stats.acked,
        stats.dead,
        stats.connection_errors
    );
    check_server(local, sent)
}

/// Prints the whole distributed pipeline's table once.
pub(crate) fn top(args: Args) -> Res {
    let views = remote::read_views(&args.redis, JOB)?;
    if views.is_empty() {
        println!(
            "no process of job {JOB:?} has published to {} in the last 30 s",
            args.redis
        );
        return Ok(());
    }
    print!("{}", remote::table(&views));
    Ok(())
}

/// Deletes the stream and its keys.
pub(crate) fn reset(args: Args) -> Res {
    remote::reset(&edge(&args)?)?;
    println!("stream {:?} and its keys deleted", args.stream);
    Ok(())
}
