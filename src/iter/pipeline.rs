//! The typed builder for iterator pipelines without measurement: every step
//! is applied as it is added, so the result is exactly the iterator chain one
//! would write by hand, with no wrapper and no boxing.

use super::boxed::{BoxIter, StepList};
use super::debug::DebugPipeline;
use crate::stats::heard::{self, Heard};
use crate::Debugger;

/// An iterator (co-routine) pipeline: a source and steps applied in order.
///
/// A step is any function from an iterator to something iterable, so every
/// adaptor of std and itertools is a step, and the item type may change from
/// step to step.
///
/// ```
/// use paipa::iter::Pipeline;
///
/// fn remove_odd(it: impl Iterator<Item = u32>) -> impl Iterator<Item = u32> {
///     it.filter(|x| x % 2 == 0)
/// }
/// let sum: u32 = Pipeline::new(0..100).step(remove_odd).into_iter().sum();
/// assert_eq!(sum, 2450);
/// ```
#[must_use = "a pipeline does nothing until it is iterated or consumed"]
#[derive(Debug, Clone)]
pub struct Pipeline<I> {
    iter: I,
    /// The signals the run listens for (see `stop_on_signals`).
    heard: Heard,
}

impl<I: Iterator> Pipeline<I> {
    /// A pipeline reading from `source`.
    pub fn new<S: IntoIterator<IntoIter = I>>(source: S) -> Self {
        Pipeline {
            iter: source.into_iter(),
            heard: None,
        }
    }

    /// Adds a step. Its name (used only once a debugger is attached) is the
    /// function's own name.
    pub fn step<F, J>(self, step: F) -> Pipeline<J::IntoIter>
    where
        F: FnOnce(I) -> J,
        J: IntoIterator,
    {
        Pipeline {
            iter: step(self.iter).into_iter(),
            heard: self.heard,
        }
    }

    /// Adds a step with an explicit name.
    pub fn step_named<F, J>(self, _name: impl Into<String>, step: F) -> Pipeline<J::IntoIter>
    where
        F: FnOnce(I) -> J,
        J: IntoIterator,
    {
        self.step(step)
    }

    /// Says how much each item of the last stage counts for; it matters only
    /// once a debugger is attached (see [`DebugPipeline::count_by`]).
    pub fn count_by<W: Fn(&I::Item) -> u64>(self, _weigh: W) -> Self {
        self
    }

    /// Applies a run-time list of boxed steps, flattened in order.
    pub fn steps<'a>(self, steps: impl Into<StepList<'a, I::Item>>) -> Pipeline<BoxIter<'a, I::Item>>
    where
        I: 'a,
    {
        let mut iter: BoxIter<'a, I::Item> = Box::new(self.iter);
        for step in steps.into().flatten() {
            iter = step.apply(iter);
        }
        Pipeline {
            iter,
            heard: self.heard,
        }
    }

    /// Attaches a debugger: everything built so far is measured as the
    /// source, and every step added afterwards as a stage of its own.
    pub fn debug(self, debugger: Debugger) -> DebugPipeline<super::Probe<I>> {
        // Measured, the pipeline can also act on a second signal: it ends
        // at the consumer's next pull.
        heard::allow(&self.heard, 2);
        DebugPipeline::new(self.iter, debugger, self.heard)
    }

    /// Opts into Ctrl-C and SIGTERM (feature `signals`): after the first
    /// signal the source ends, so every step drains what it took and the
    /// consumer sees the pipeline's end. Call it right after
    /// [`Pipeline::new`] so that it is the source that stops. With a
    /// debugger attached, the final report says the run was interrupted
    /// and a second signal ends the pipeline at the consumer's next pull;
    /// without one, a second signal ends the process (nothing else can stop
    /// the steps running on your thread). See [`crate::signals`].
    ///
    /// ```
    /// use paipa::iter::Pipeline;
    /// let total: u64 = Pipeline::new(0..10u64).stop_on_signals()?.into_iter().sum();
    /// assert_eq!(total, 45); // no signal came
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(all(feature = "signals", not(loom)))]
    pub fn stop_on_signals(self) -> Result<Pipeline<crate::signals::Interruptible<I>>, std::io::Error> {
        let source = crate::signals::Interruptible::new(self.iter, crate::signals::Listener::new(1, false)?);
        let heard = Some(source.heard());
        Ok(Pipeline { iter: source, heard })
    }

    /// Boxes the pipeline's iterator, to store pipelines of different shapes
    /// in one place.
    pub fn boxed<'a>(self) -> Pipeline<BoxIter<'a, I::Item>>
    where
        I: 'a,
    {
        Pipeline {
            iter: Box::new(self.iter),
            heard: self.heard,
        }
    }
}

impl<I: Iterator> IntoIterator for Pipeline<I> {
    type Item = I::Item;
    type IntoIter = I;

    fn into_iter(self) -> I {
        self.iter
    }
}

/// Combines a source and a run-time list of steps into a pipeline: the
/// reference's `combine_pipeline`.
pub fn combine<'a, S>(source: S, steps: impl Into<StepList<'a, S::Item>>) -> Pipeline<BoxIter<'a, S::Item>>
where
    S: IntoIterator,
    S::IntoIter: 'a,
{
    Pipeline::new(source).steps(steps)
}
