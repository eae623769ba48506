//! The map kind: a function of one item ([`Stage::map`],
//! [`Stage::try_map`]). Unordered, it runs the item loop (`item.rs`) and
//! chains onto the stage before; ordered with several workers, the reorder
//! window (`ordered.rs`).

use std::sync::Arc;

use crate::error::BoxError;
use crate::threaded::kinds::chained::chained_links;
use crate::threaded::kinds::item::{each_item, item_plan};
use crate::threaded::kinds::ordered::{ordered_worker, Reorder};
use crate::threaded::run::job;
use crate::threaded::stage::{contexts, Kind, Orderable, Stage, StagePlan};
use crate::threaded::step::{Output, Step};
use crate::threaded::worker::Outbox;

/// A function step as a [`Step`].
struct MapStep<F, In, Out> {
    f: Arc<F>,
    _types: std::marker::PhantomData<fn(In) -> Out>,
}

impl<F, In: Send, Out: Send> Step for MapStep<F, In, Out>
where
    F: Fn(In) -> Result<Out, BoxError> + Send + Sync,
{
    type In = In;
    type Out = Out;

    #[inline]
    fn process(&mut self, item: In, out: &mut Output<'_, Out>) -> Result<(), BoxError> {
        out.emit((self.f)(item)?);
        Ok(())
    }
}

/// A function stage: ordered with any number of workers (the reorder
/// window), retried item by item, chained onto the stage before.
const KIND: Kind = Kind::threads("function stages", Orderable::Always, true);

impl<'a, In: Send + 'a, Out: Send + 'a> Stage<'a, In, Out> {
    /// A stage that applies a function to each item.
    pub fn map<F>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(In) -> Out + Send + Sync + 'a,
    {
        Self::try_map(name, move |x| Ok::<Out, BoxError>(f(x)))
    }

    /// A stage that applies a fallible function to each item; errors go to
    /// the stage's policy.
    pub fn try_map<F, E>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(In) -> Result<Out, E> + Send + Sync + 'a,
        E: Into<BoxError>,
    {
        let f = Arc::new(move |x: In| f(x).map_err(Into::into));
        let chained = f.clone();
        let mut stage = Self::with(name, KIND, move |s, p| {
            if s.ordered && s.workers > 1 {
                let reorder = Reorder::new(
                    Outbox::new(
                        p.tx.clone(),
                        p.pacing.clone(),
                        p.cell.clone(),
                        p.shared.clone(),
                        s.weigh.clone(),
                    ),
                    2 * s.workers,
                );
                let jobs = contexts(s, p, Arc::new(|| {}))
                    .into_iter()
                    .enumerate()
                    .map(|(i, (cx, _))| {
                        let (f, reorder, shared) = (f.clone(), reorder.clone(), cx.shared.clone());
                        job(&s.name, i, shared, move || ordered_worker(f, reorder, cx))
                    })
                    .collect();
                return StagePlan { before: None, jobs };
            }
            item_plan(
                s,
                p,
                || MapStep {
                    f: f.clone(),
                    _types: std::marker::PhantomData,
                },
                each_item,
            )
        });
        stage.chain = Some(Box::new(move |s, p| {
            chained_links(
                s,
                p,
                || MapStep {
                    f: chained.clone(),
                    _types: std::marker::PhantomData,
                },
                each_item,
            )
        }));
        stage
    }
}
