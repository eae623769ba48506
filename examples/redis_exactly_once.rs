//! An effect made exactly once from a stream delivered at least once: each
//! entry's origin id is the key of a SQLite row, written with
//! `INSERT OR IGNORE`, and the entry is acked only after the commit. A
//! redelivery (a consumer killed between its commit and its ack, a claim)
//! finds the row there and changes nothing.
//!
//! Run: `cargo run --features redis --example redis_exactly_once`
//! (a redis-server at `PAIPA_REDIS_URL`, or `redis://127.0.0.1:6379/`).

use paipa::remote::{self, EdgeConfig, StreamSink, StreamSource, Tracked};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("PAIPA_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let edge = EdgeConfig::new(&url, format!("orders-{}", std::process::id()), "writers").consumer("writer-1");

    // The producer: 10,000 orders, each keyed by its order number.
    let mut sink = StreamSink::<(u64, f64)>::open(edge.clone())?;
    for n in 0..10_000u64 {
        sink.add_with_id(format!("order-{n}"), &(n, n as f64 * 1.5))?;
    }
    sink.finish()?;

    // The consumer: rows keyed by origin id, acked after the commit.
    let db = rusqlite::Connection::open_in_memory()?;
    db.execute_batch("create table orders (id text primary key, amount real not null)")?;
    let (source, handle) = StreamSource::<(u64, f64)>::open(edge.clone())?;
    let mut source = source.peekable();
    while source.peek().is_some() {
        let batch: Vec<Tracked<(u64, f64)>> = source.by_ref().take(500).collect();
        let tx = db.unchecked_transaction()?;
        for order in &batch {
            tx.execute(
                "insert or ignore into orders (id, amount) values (?1, ?2)",
                rusqlite::params![order.id(), order.value().1],
            )?;
        }
        tx.commit()?;
        batch.into_iter().for_each(Tracked::done);
    }
    drop(source);
    let stats = handle.finish()?;
    let rows: i64 = db.query_row("select count(*) from orders", [], |r| r.get(0))?;
    println!("{rows} orders stored once each; {} entries acked", stats.acked);
    remote::reset(&edge)?;
    Ok(())
}
