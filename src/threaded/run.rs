//! What every thread of one run shares: the cancel signal, the first error,
//! and the plan of threads to start.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::error::RunError;
use crate::sync::Mutex;
use crate::threaded::edge::Cancel;

/// Run-wide shared state.
#[derive(Debug)]
pub(crate) struct RunShared {
    pub(crate) cancel: Arc<Cancel>,
    error: Mutex<Option<RunError>>,
}

impl RunShared {
    pub(crate) fn new(cancel: Arc<Cancel>) -> Arc<Self> {
        Arc::new(RunShared {
            cancel,
            error: Mutex::new(None),
        })
    }

    /// Records the run's first error and stops every stage.
    pub(crate) fn fail(&self, err: RunError) {
        {
            let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(err);
            }
        }
        self.cancel.cancel();
    }

    pub(crate) fn take_error(&self) -> Option<RunError> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The first error's stage and text, left in place (for the final
    /// report, made before the error is handed to the caller).
    pub(crate) fn error_info(&self) -> Option<(Option<String>, String)> {
        let slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().map(|e| (e.stage().map(str::to_string), e.to_string()))
    }

    pub(crate) fn has_error(&self) -> bool {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

/// Runs `f`, the stage-wide hook `hook` (`before_stage`, `after_stage`)
/// of `stage`, under the panic guard every user callback runs under: a
/// panic fails the run as [`RunError::Panic`] of that stage, its message
/// naming the hook (`in its after_stage hook: ...`). Worker 0 stands for
/// the stage: a stage-wide hook belongs to no one worker.
pub(crate) fn stage_hook(shared: &RunShared, stage: &str, hook: &str, f: impl FnOnce()) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
        shared.fail(RunError::Panic {
            stage: stage.to_string(),
            worker: 0,
            message: format!("in its {hook} hook: {}", panic_message(&*p)),
        });
    }
}

/// The text of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// A thread to start.
pub(crate) struct Job<'a> {
    pub(crate) name: String,
    pub(crate) run: Box<dyn FnOnce() + Send + 'a>,
}

/// Runs the stages' `before_stage` hooks (each under its panic guard, see
/// [`stage_hook`]), starts every job of the plan in `scope`, calls
/// `consume` on this thread, then joins every thread. A job that cannot
/// start fails the run.
pub(crate) fn execute<'scope, 'env: 'scope, R>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    plan_before: Vec<Box<dyn FnOnce() + Send + 'env>>,
    jobs: Vec<Job<'env>>,
    shared: &Arc<RunShared>,
    consume: impl FnOnce() -> R,
) -> R {
    for hook in plan_before {
        hook();
    }
    let mut handles = Vec::with_capacity(jobs.len());
    // A run that failed before any thread started (a `before_stage` hook),
    // or whose threads cannot be started, starts no more. A run cancelled
    // by a thread already running still starts the others: each sees the
    // cancel at once, but runs its hooks (workers pull a lazy source as
    // soon as they start, so a first item can fail before the last worker
    // is spawned).
    let mut skip = shared.cancel.is_cancelled();
    for job in jobs {
        if skip {
            // Dropping the job drops its channel ends, so neighbours see an
            // end or a disconnection and stop.
            continue;
        }
        match std::thread::Builder::new().name(job.name).spawn_scoped(scope, job.run) {
            Ok(h) => handles.push(h),
            Err(e) => {
                shared.fail(RunError::Spawn(e));
                skip = true;
            }
        }
    }
    let result = consume();
    for h in handles {
        if let Err(p) = h.join() {
            shared.fail(RunError::Panic {
                stage: "pipeline thread".into(),
                worker: 0,
                message: panic_message(&*p),
            });
        }
    }
    result
}

/// A worker thread. Whatever it runs outside the guards around user calls
/// (`StepFactory::create`, say) cannot kill it silently: a panic fails the
/// run, naming the stage and worker, which cancels every other thread.
pub(crate) fn job<'a>(name: &str, index: usize, shared: Arc<RunShared>, run: impl FnOnce() + Send + 'a) -> Job<'a> {
    let stage = name.to_string();
    Job {
        name: format!("paipa:{name}:{index}"),
        run: Box::new(move || {
            if let Err(p) = catch_unwind(AssertUnwindSafe(run)) {
                shared.fail(crate::error::RunError::Panic {
                    stage,
                    worker: index,
                    message: panic_message(&*p),
                });
            }
        }),
    }
}
