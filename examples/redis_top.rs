//! The table of a distributed pipeline: every process of a job that
//! publishes its view (`paipa::remote::Publisher`), each stream's groups,
//! and the bottleneck named across machines. Prints it once, or every
//! `--every` seconds.
//!
//! Run: `cargo run --features redis --example redis_top -- [redis://host:port/] [job] [--every 2]`
//! (`redis://127.0.0.1:6379/` and the job `products` unless given).

use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut url, mut job, mut every) = ("redis://127.0.0.1:6379/".to_string(), "products".to_string(), None);
    let mut positional = 0;
    while let Some(arg) = args.next() {
        if arg == "--every" {
            let secs: f64 = args.next().ok_or("--every needs seconds")?.parse()?;
            every = Some(Duration::from_secs_f64(secs.max(0.1)));
        } else {
            match positional {
                0 => url = arg,
                _ => job = arg,
            }
            positional += 1;
        }
    }
    loop {
        let views = paipa::remote::read_views(&url, &job)?;
        if views.is_empty() {
            println!("no process of job {job:?} has published to {url} lately");
        } else {
            println!("{}", paipa::remote::table(&views));
        }
        match every {
            Some(pause) => std::thread::sleep(pause),
            None => return Ok(()),
        }
    }
}
