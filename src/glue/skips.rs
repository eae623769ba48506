//! The entries the stages of a served pipeline skipped: how many, and the
//! errors of the latest, for `/stats`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::threaded::Skipped;

/// The longest error text `/stats` keeps for one skipped entry: an error
/// may quote its entry, and a client chooses the entries.
const ERROR_TEXT_LIMIT: usize = 1024;

/// Entries the stages of a [`serve_pipeline`] pipeline skipped: how many,
/// and the errors of the latest.
pub(crate) struct SkipLog {
    pub(crate) skipped: AtomicU64,
    keep: usize,
    recent: Mutex<VecDeque<serde_json::Value>>,
}

impl SkipLog {
    pub(crate) fn new(keep: usize) -> Self {
        SkipLog {
            skipped: AtomicU64::new(0),
            keep,
            recent: Mutex::new(VecDeque::with_capacity(keep.min(64))),
        }
    }

    /// Called on the worker that skipped the entry; never panics (a
    /// panicking skip hook would fail the run).
    pub(crate) fn record(&self, skipped: &Skipped) {
        self.skipped.fetch_add(1, Ordering::SeqCst);
        if self.keep == 0 {
            return;
        }
        let mut cut = skipped.error.len().min(ERROR_TEXT_LIMIT);
        while !skipped.error.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut error = skipped.error[..cut].to_string();
        if cut < skipped.error.len() {
            error.push('…');
        }
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let entry = serde_json::json!({
            "stage": skipped.stage,
            "worker": skipped.worker,
            "error": error,
            "unix_time_s": time,
        });
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == self.keep {
            recent.pop_front();
        }
        recent.push_back(entry);
    }

    pub(crate) fn errors(&self) -> serde_json::Value {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::Value::Array(recent.iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(error: &str) -> Skipped {
        Skipped {
            stage: "check".into(),
            worker: 1,
            error: error.into(),
        }
    }

    #[test]
    fn the_skip_log_counts_every_skip_and_keeps_the_latest_errors_cut_at_the_limit() {
        let log = SkipLog::new(2);
        // A long error whose byte at the limit is inside a 2-byte
        // character: cut before it.
        let long = format!("x{}", "é".repeat(ERROR_TEXT_LIMIT));
        for error in ["first", "second", long.as_str()] {
            log.record(&skipped(error));
        }
        assert_eq!(log.skipped.load(Ordering::SeqCst), 3);
        let errors = log.errors();
        let errors = errors.as_array().unwrap();
        assert_eq!(errors.len(), 2, "only the latest two");
        assert_eq!(errors[0]["error"], "second");
        assert_eq!(
            (errors[0]["stage"].as_str(), errors[0]["worker"].as_u64()),
            (Some("check"), Some(1))
        );
        let cut = errors[1]["error"].as_str().unwrap();
        assert_eq!(cut, format!("x{}…", "é".repeat(ERROR_TEXT_LIMIT / 2 - 1)));

        let none = SkipLog::new(0);
        none.record(&skipped("x"));
        assert_eq!(none.skipped.load(Ordering::SeqCst), 1);
        assert_eq!(none.errors(), serde_json::json!([]));
    }
}
