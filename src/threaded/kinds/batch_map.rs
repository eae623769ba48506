//! The batch map kind: a function over a whole hand-over of items, for
//! bulk inserts and batched requests ([`Stage::batch_map`]). Each worker
//! gives the function the items of one batch taken from its input (their
//! number follows the pacing of the stage before, up to half the edge's
//! capacity) and hands on what it returns.
//!
//! The stage's policy applies to the batch: a failed call fails the run
//! (every item of the batch counted as `failed`), is skipped (every item
//! counted as `skipped`), or is retried with a copy of the batch. It runs
//! on the item loop (`item.rs`) and chains onto the stage before as a map
//! does; ordered with one worker only.

use std::sync::Arc;

use crate::error::BoxError;
use crate::threaded::kinds::chained::chained_links;
use crate::threaded::kinds::item::item_plan;
use crate::threaded::stage::{Kind, Orderable, Stage};
use crate::threaded::step::{Output, Step};
use crate::threaded::worker::{Outbox, WorkerCtx};

const KIND: Kind = Kind::threads("batch map stages", Orderable::OneWorker, true);

/// The function, as a [`Step`] whose loop hands it whole batches
/// ([`whole`]).
struct BatchStep<F, In, Out> {
    f: Arc<F>,
    _types: std::marker::PhantomData<fn(Vec<In>) -> Out>,
}

impl<F, In: Send, Out: Send> Step for BatchStep<F, In, Out>
where
    F: Fn(Vec<In>) -> Result<Vec<Out>, BoxError> + Send + Sync,
{
    type In = In;
    type Out = Out;

    /// One item alone is a batch of one.
    fn process(&mut self, item: In, out: &mut Output<'_, Out>) -> Result<(), BoxError> {
        (self.f)(vec![item])?.into_iter().for_each(|x| out.emit(x));
        Ok(())
    }
}

/// Runs a whole batch through the function, under the stage's policy.
fn whole<F, In: Send, Out: Send>(
    step: &mut BatchStep<F, In, Out>,
    cx: &WorkerCtx<'_, In>,
    batch: &mut Vec<In>,
    outbox: &mut Outbox<Out>,
) -> bool
where
    F: Fn(Vec<In>) -> Result<Vec<Out>, BoxError> + Send + Sync,
{
    cx.process_whole(batch, |items| {
        (step.f)(items)?.into_iter().for_each(|x| outbox.push(x));
        Ok(())
    })
}

impl<'a, In: Send + 'a, Out: Send + 'a> Stage<'a, In, Out> {
    /// A stage whose workers each hand the items of one batch to `f`
    /// together and emit what it returns: for a bulk insert, or one
    /// request for many items.
    ///
    /// ```
    /// use paipa::threaded::{Pipeline, Stage};
    ///
    /// let (sizes, summary) = Pipeline::new()
    ///     .source(0..10_000u32)
    ///     .then(Stage::batch_map("insert", |rows: Vec<u32>| vec![rows.len()]).workers(2))?
    ///     .run_with(|sizes| sizes.collect::<Vec<usize>>())?;
    /// assert_eq!(sizes.iter().sum::<usize>(), 10_000); // every row, in batches
    /// assert_eq!(summary.snapshot.stage("insert").unwrap().count_in, 10_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batch_map<F, J>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(Vec<In>) -> J + Send + Sync + 'a,
        J: IntoIterator<Item = Out>,
    {
        Self::try_batch_map(name, move |items| Ok::<J, BoxError>(f(items)))
    }

    /// A batch map whose function may fail: the error goes to the stage's
    /// policy, for the whole batch.
    ///
    /// ```
    /// use paipa::threaded::{Pipeline, Stage};
    ///
    /// let summary = Pipeline::new()
    ///     .source(0..100u32)
    ///     .then(
    ///         Stage::try_batch_map("insert", |rows: Vec<u32>| {
    ///             if rows.contains(&42) { Err("row 42 is refused") } else { Ok(rows) }
    ///         })
    ///         .skip_errors(),
    ///     )?
    ///     .run()?;
    /// let insert = summary.snapshot.stage("insert").unwrap();
    /// assert_eq!(insert.count + insert.skipped, 100); // the batch with 42 skipped whole
    /// assert!(insert.skipped >= 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_batch_map<F, J, E>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(Vec<In>) -> Result<J, E> + Send + Sync + 'a,
        J: IntoIterator<Item = Out>,
        E: Into<BoxError>,
    {
        let f = Arc::new(move |items: Vec<In>| match f(items) {
            Ok(out) => Ok(out.into_iter().collect::<Vec<Out>>()),
            Err(e) => Err(e.into()),
        });
        let step = move || BatchStep {
            f: f.clone(),
            _types: std::marker::PhantomData,
        };
        let chained = step.clone();
        let mut stage = Self::with(name, KIND, move |s, p| item_plan(s, p, step, whole));
        stage.chain = Some(Box::new(move |s, p| chained_links(s, p, chained, whole)));
        stage
    }
}
