//! Fold stages: each worker folds the items it gets into an accumulator of
//! its own and hands it on once, when its input ends, so an aggregation
//! runs in parallel and only one partial result per worker crosses to the
//! next stage (the consumer merges them), as rayon's `fold` then `reduce`
//! does. Like a map, a fold stage with as many workers as the stage before
//! runs on that stage's threads (see `worker/chain.rs`): no item crosses a thread
//! to be folded.

use std::sync::Arc;

use crate::error::BoxError;
use crate::threaded::kinds::chained::chained_links;
use crate::threaded::kinds::item::{each_item, item_plan};
use crate::threaded::stage::{Kind, Orderable, Stage};
use crate::threaded::step::{Output, Step};

/// A fold stage: never ordered (one result per worker has no input
/// order), no retries (an item folded in cannot be taken out again),
/// chained onto the stage before as a map is.
const KIND: Kind = Kind::threads(
    "fold stages",
    Orderable::Never("a fold stage gives one result per worker, which have no input order"),
    false,
);

/// A worker's accumulator and the functions that make and feed it.
struct FoldStep<I, F, Acc, In> {
    init: Arc<I>,
    fold: Arc<F>,
    acc: Option<Acc>,
    _types: std::marker::PhantomData<fn(In)>,
}

impl<I, F, Acc, In> Step for FoldStep<I, F, Acc, In>
where
    I: Fn() -> Acc + Send + Sync,
    F: Fn(&mut Acc, In) + Send + Sync,
    Acc: Send,
    In: Send,
{
    type In = In;
    type Out = Acc;

    #[inline]
    fn process(&mut self, item: In, _: &mut Output<'_, Acc>) -> Result<(), BoxError> {
        let acc = self.acc.get_or_insert_with(|| (self.init)());
        (self.fold)(acc, item);
        Ok(())
    }

    fn on_finish(&mut self, out: &mut Output<'_, Acc>) -> Result<(), BoxError> {
        if let Some(acc) = self.acc.take() {
            out.emit(acc);
        }
        Ok(())
    }
}

impl<'a, In: Send + 'a, Acc: Send + 'a> Stage<'a, In, Acc> {
    /// A stage whose workers each fold their items into an accumulator
    /// made by `init`, with `fold`, and hand it on when the input ends: one
    /// partial result per worker that got any item (none for an empty
    /// input). Merge the partials after it, in the consumer or a stage of
    /// one worker. The aggregation runs in parallel and no item is handed
    /// to another thread to be folded: with as many workers as the stage
    /// before, the fold runs on that stage's threads.
    ///
    /// A run that stops early (a failure, an abort, a consumer that stops)
    /// hands nothing on: the partials are dropped. The stage counts the
    /// items it took in (`count_in`) and the partials it gave out
    /// (`count`).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use paipa::threaded::{Pipeline, Stage};
    ///
    /// let (counts, _) = Pipeline::new()
    ///     .source(0..10_000u32)
    ///     .then(Stage::map("digit", |x: u32| x % 10).workers(2))?
    ///     .then(
    ///         Stage::fold("count", HashMap::new, |m: &mut HashMap<u32, u64>, d: u32| {
    ///             *m.entry(d).or_default() += 1;
    ///         })
    ///         .workers(2),
    ///     )?
    ///     .run_with(|partials| {
    ///         partials.fold(HashMap::new(), |mut all: HashMap<u32, u64>, part| {
    ///             for (d, n) in part {
    ///                 *all.entry(d).or_default() += n;
    ///             }
    ///             all
    ///         })
    ///     })?;
    /// assert_eq!(counts.len(), 10);
    /// assert!(counts.values().all(|&n| n == 1_000));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fold<I, F>(name: impl Into<String>, init: I, fold: F) -> Self
    where
        I: Fn() -> Acc + Send + Sync + 'a,
        F: Fn(&mut Acc, In) + Send + Sync + 'a,
    {
        let (init, fold) = (Arc::new(init), Arc::new(fold));
        let step = {
            let (init, fold) = (init.clone(), fold.clone());
            move || FoldStep {
                init: init.clone(),
                fold: fold.clone(),
                acc: None,
                _types: std::marker::PhantomData,
            }
        };
        let chained = step.clone();
        let mut stage = Self::with(name, KIND, move |s, p| item_plan(s, p, step, each_item));
        stage.chain = Some(Box::new(move |s, p| chained_links(s, p, chained, each_item)));
        stage
    }
}
