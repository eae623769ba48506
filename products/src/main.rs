//! The reference's realistic pipeline, end to end and for real: stream every
//! row of a SQLite `products` table, keep the available ones, group them in
//! batches of 2048, encode each batch as JSON, POST it to an ingestion
//! server (paipa's own, on loopback, unless `--url` points elsewhere) from an
//! async stage with several requests in flight over keep-alive
//! connections, flatten, count.
//!
//! Run: `cargo run --release -p paipa-products -- \
//!       [--db products.db] [--rows 1000000] [--batch 2048] [--in-flight 4] [--url http://host:port/ingest]`
//!
//! The database is created on first run (fixed seed) and reused afterwards.
//!
//! Split across processes on Redis Streams (see `split.rs`):
//! `paipa-products extract` (SQLite -> filter -> stream) and any number of
//! `paipa-products load` (stream -> chunk -> send -> flatten), with
//! `--redis redis://host:port/` (`redis://127.0.0.1:6379/` unless given);
//! `paipa-products top` prints the table of every process.

mod send;
mod split;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use paipa::glue::{serve_pipeline, ServerConfig};
use paipa::iter::chunk;
use paipa::threaded::{self, Stage};
use paipa::Debugger;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: i64,
    name: String,
    price: i64,
    available: bool,
}

struct Args {
    command: Option<String>,
    db: PathBuf,
    rows: i64,
    batch: usize,
    in_flight: usize,
    url: Option<String>,
    redis: String,
    stream: String,
    consumer: Option<String>,
    work_us: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        command: None,
        db: "products.db".into(),
        rows: 1_000_000,
        batch: 2048,
        in_flight: 4,
        url: None,
        redis: "redis://127.0.0.1:6379/".into(),
        stream: "products".into(),
        consumer: None,
        work_us: 0,
    };
    let mut it = std::env::args().skip(1).peekable();
    if it.peek().is_some_and(|first| !first.starts_with("--")) {
        a.command = it.next();
    }
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--db" => a.db = value.into(),
            "--rows" => a.rows = value.parse().map_err(|e| format!("--rows: {e}"))?,
            "--batch" => a.batch = value.parse().map_err(|e| format!("--batch: {e}"))?,
            "--in-flight" => a.in_flight = value.parse().map_err(|e| format!("--in-flight: {e}"))?,
            "--url" => a.url = Some(value),
            "--redis" => a.redis = value,
            "--stream" => a.stream = value,
            "--consumer" => a.consumer = Some(value),
            "--work-us" => a.work_us = value.parse().map_err(|e| format!("--work-us: {e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

/// Creates the table with `rows` products (fixed seed) unless it has them.
fn ensure_db(conn: &mut Connection, rows: i64) -> rusqlite::Result<()> {
    conn.execute_batch(
        "create table if not exists products (id integer primary key, name text not null, price integer not null, available integer not null)",
    )?;
    let have: i64 = conn.query_row("select count(*) from products", [], |r| r.get(0))?;
    if have == rows {
        println!("reusing {rows} products");
        return Ok(());
    }
    let t = Instant::now();
    let tx = conn.transaction()?;
    tx.execute("delete from products", [])?;
    {
        let mut insert = tx.prepare("insert into products (id, name, price, available) values (?1, ?2, ?3, ?4)")?;
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        for id in 0..rows {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = seed >> 33;
            insert.execute(rusqlite::params![
                id,
                format!("product {id}"),
                (r % 100_000) as i64,
                !r.is_multiple_of(3)
            ])?;
        }
    }
    tx.commit()?;
    println!("created {rows} products in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn only_available(products: impl Iterator<Item = Product>) -> impl Iterator<Item = Product> {
    products.filter(|p| p.available)
}

/// Every row of the table, read in pages of [`PAGE`] by primary key: an
/// iterator that owns its connection, so the pipeline's source thread can
/// run it (a rusqlite statement cannot leave its thread).
struct ProductRows {
    conn: Connection,
    after: i64,
    left: usize,
    page: std::vec::IntoIter<Product>,
}

/// Rows read per query.
const PAGE: usize = 8192;

impl ProductRows {
    fn new(conn: Connection, rows: usize) -> Self {
        ProductRows {
            conn,
            after: -1,
            left: rows,
            page: Vec::new().into_iter(),
        }
    }

    fn next_page(&mut self) -> rusqlite::Result<Vec<Product>> {
        let mut select = self
            .conn
            .prepare_cached("select id, name, price, available from products where id > ?1 order by id limit ?2")?;
        let rows = select.query_map(rusqlite::params![self.after, PAGE as i64], |r| {
            Ok(Product {
                id: r.get(0)?,
                name: r.get(1)?,
                price: r.get(2)?,
                available: r.get(3)?,
            })
        })?;
        rows.collect()
    }
}

impl Iterator for ProductRows {
    type Item = Product;

    fn next(&mut self) -> Option<Product> {
        if let Some(p) = self.page.next() {
            self.left = self.left.saturating_sub(1);
            return Some(p);
        }
        if self.left == 0 {
            return None;
        }
        let page = self.next_page().expect("a page of products");
        self.after = page.last()?.id;
        self.page = page.into_iter();
        self.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// A batch and its JSON body.
struct Encoded {
    batch: Vec<Product>,
    body: hyper::body::Bytes,
}

fn encode(batch: Vec<Product>) -> Encoded {
    let body = serde_json::to_vec(&batch).expect("products serialise").into();
    Encoded { batch, body }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let args = args()?;
    match args.command.as_deref() {
        None => one_process(args),
        Some("extract") => split::extract(args),
        Some("load") => split::load(args),
        Some("top") => split::top(args),
        Some("reset") => split::reset(args),
        Some(other) => Err(format!("unknown command {other:?}: extract, load, top or reset (or none)").into()),
    }
}

/// The ingestion server, unless `--url` names one: a threaded pipeline that
/// counts what it receives; and the URL to POST to.
fn ingestion(args: &Args) -> Result<(Option<paipa::glue::Server>, String), Box<dyn std::error::Error>> {
    let local = match &args.url {
        Some(_) => None,
        None => {
            // Its own report (logged when it stops) shows whether the
            // server's pipeline or its HTTP side limits the sender.
            let ingest = threaded::Pipeline::new()
                .debug(Debugger::new().name("ingest server").source_name("http"))
                .then(Stage::map("store", |p: Product| p.price).workers(2))?;
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            Some(serve_pipeline(listener, ingest, ServerConfig::default())?)
        }
    };
    let url = match (&args.url, &local) {
        (Some(u), _) => u.clone(),
        (None, Some(server)) => format!("http://{}/ingest", server.addr()),
        (None, None) => unreachable!("a server was started"),
    };
    Ok((local, url))
}

/// Stops the local ingestion server and checks it stored `sent` products.
fn check_server(local: Option<paipa::glue::Server>, sent: u64) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(server) = local {
        server.shutdown();
        let summary = server.wait()?;
        println!("the server stored {} products", summary.items);
        if summary.items != sent {
            return Err(format!("the server stored {} products, the pipeline sent {sent}", summary.items).into());
        }
    }
    Ok(())
}

/// The whole job in this process.
fn one_process(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = Connection::open(&args.db)?;
    ensure_db(&mut conn, args.rows)?;
    let (local, url) = ingestion(&args)?;

    let started = Instant::now();
    let url: hyper::Uri = url.parse()?;
    let client = send::client(args.in_flight);
    let (sent, _) = threaded::Pipeline::new()
        .debug(Debugger::new().name("products").source_name("select"))
        .source(ProductRows::new(conn, args.rows as usize))
        .then(Stage::iter("only_available", only_available))?
        .then(Stage::iter("chunk", chunk(args.batch)?).count_by(|b: &Vec<Product>| b.len() as u64))?
        .then(Stage::map("encode", encode).count_by(|e: &Encoded| e.batch.len() as u64))?
        .then(
            // POSTs each batch, resending it whole after a 503 (the server
            // took none of it, so nothing is sent twice); a transport error
            // or no answer within 30 s fails the run. Passes the batch on.
            Stage::try_map_async("send_in_batch", move |e: Encoded| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    send::post_until_accepted(&client, &url, e.body).await?;
                    Ok::<_, String>(e.batch)
                }
            })
            .in_flight(args.in_flight)
            .timeout(Duration::from_secs(30))
            .count_by(|b: &Vec<Product>| b.len() as u64),
        )?
        .run_with(|batches| batches.flatten().count() as u64)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} rows read, {sent} available products sent in {secs:.1} s ({:.0} rows/s)",
        args.rows,
        args.rows as f64 / secs
    );
    check_server(local, sent)?;
    println!(
        "peak RSS {:.1} MiB",
        paipa::stats::peak_resident_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
