//! Boxed steps for step lists built at run time: one item type, any nesting,
//! flattened in order.

use std::fmt;
use std::sync::Arc;

use super::name::step_name;

/// A boxed iterator, the item flowing between boxed steps.
pub type BoxIter<'a, T> = Box<dyn Iterator<Item = T> + 'a>;

type StepFn<'a, T> = Arc<dyn Fn(BoxIter<'a, T>) -> BoxIter<'a, T> + Send + Sync + 'a>;

/// One named step over items of type `T`, boxed so that steps of different
/// types fit in one list.
///
/// The step is a plain `Fn + Send + Sync`, shared (cloning is cheap), so one
/// boxed step plugs into either kind of pipeline: an iterator pipeline
/// ([`combine`](crate::iter::combine), [`Pipeline::steps`](crate::iter::Pipeline::steps)) or, as a
/// threaded [`Stage`](crate::threaded::Stage) of its name
/// (`Stage::from(step)`), a threaded pipeline.
///
/// ```
/// use paipa::iter::{boxed, combine, BoxIter};
/// use paipa::threaded::{Pipeline, Stage};
///
/// fn double(it: BoxIter<'_, u32>) -> impl Iterator<Item = u32> + '_ { it.map(|x| x * 2) }
/// let step = boxed(double);
///
/// let iterated: Vec<u32> = combine(1..=3, step.clone()).into_iter().collect();
/// let threaded = Pipeline::new().source(1..=3u32).then(Stage::from(step))?;
/// let (out, summary) = threaded.run_with(|out| out.collect::<Vec<u32>>())?;
/// assert_eq!((iterated, out), (vec![2, 4, 6], vec![2, 4, 6]));
/// assert!(summary.snapshot.stage("double").is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BoxedStep<'a, T> {
    name: String,
    f: StepFn<'a, T>,
}

impl<T> Clone for BoxedStep<'_, T> {
    fn clone(&self) -> Self {
        BoxedStep {
            name: self.name.clone(),
            f: self.f.clone(),
        }
    }
}

impl<T> fmt::Debug for BoxedStep<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxedStep")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<'a, T: 'a> BoxedStep<'a, T> {
    /// Boxes a step, named after its function. The step is called once for
    /// each pipeline it is applied to, and in a threaded stage once for each
    /// worker (over the items that reach that worker).
    pub fn new<F, J>(step: F) -> Self
    where
        F: Fn(BoxIter<'a, T>) -> J + Send + Sync + 'a,
        J: IntoIterator<Item = T> + 'a,
    {
        Self::named(step_name::<F>(), step)
    }

    /// Boxes a step with an explicit name.
    pub fn named<F, J>(name: impl Into<String>, step: F) -> Self
    where
        F: Fn(BoxIter<'a, T>) -> J + Send + Sync + 'a,
        J: IntoIterator<Item = T> + 'a,
    {
        BoxedStep {
            name: name.into(),
            f: Arc::new(move |it| Box::new(step(it).into_iter())),
        }
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn apply(&self, input: BoxIter<'a, T>) -> BoxIter<'a, T> {
        (self.f)(input)
    }

    pub(crate) fn into_parts(self) -> (String, StepFn<'a, T>) {
        (self.name, self.f)
    }
}

/// Boxes a step named after its function: shorthand for [`BoxedStep::new`].
pub fn boxed<'a, T: 'a, F, J>(step: F) -> BoxedStep<'a, T>
where
    F: Fn(BoxIter<'a, T>) -> J + Send + Sync + 'a,
    J: IntoIterator<Item = T> + 'a,
{
    BoxedStep::new(step)
}

/// A list of boxed steps that may nest; it is flattened in order.
///
/// ```
/// use paipa::iter::{boxed, combine, identity, BoxIter, StepList};
///
/// fn double(it: BoxIter<'_, u32>) -> impl Iterator<Item = u32> + '_ { it.map(|x| x * 2) }
/// let steps: StepList<u32> = vec![
///     StepList::from(boxed(double)),
///     vec![boxed(identity), boxed(double)].into(),
/// ]
/// .into();
/// let names: Vec<_> = steps.names();
/// assert_eq!(names, ["double", "identity", "double"]);
/// let out: Vec<u32> = combine(1..=3, steps).into_iter().collect();
/// assert_eq!(out, [4, 8, 12]);
/// ```
pub enum StepList<'a, T> {
    /// One step.
    Step(BoxedStep<'a, T>),
    /// A nested list.
    List(Vec<StepList<'a, T>>),
}

impl<T> Clone for StepList<'_, T> {
    fn clone(&self) -> Self {
        match self {
            StepList::Step(s) => StepList::Step(s.clone()),
            StepList::List(l) => StepList::List(l.clone()),
        }
    }
}

impl<T> fmt::Debug for StepList<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepList::Step(s) => s.fmt(f),
            StepList::List(l) => f.debug_list().entries(l).finish(),
        }
    }
}

impl<'a, T> StepList<'a, T> {
    /// The steps in the order they run, nesting removed.
    pub fn flatten(self) -> Vec<BoxedStep<'a, T>> {
        let mut out = Vec::new();
        self.flatten_into(&mut out);
        out
    }

    fn flatten_into(self, out: &mut Vec<BoxedStep<'a, T>>) {
        match self {
            StepList::Step(s) => out.push(s),
            StepList::List(list) => list.into_iter().for_each(|l| l.flatten_into(out)),
        }
    }

    /// The names of the steps in the order they run.
    pub fn names(&self) -> Vec<String> {
        match self {
            StepList::Step(s) => vec![s.name.clone()],
            StepList::List(list) => list.iter().flat_map(StepList::names).collect(),
        }
    }
}

/// The steps in the order they run, nesting removed (as
/// [`StepList::flatten`]): a step list plugs into a threaded pipeline's
/// [`then_all`](crate::threaded::Pipeline::then_all) as it is.
impl<'a, T> IntoIterator for StepList<'a, T> {
    type Item = BoxedStep<'a, T>;
    type IntoIter = std::vec::IntoIter<BoxedStep<'a, T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.flatten().into_iter()
    }
}

impl<'a, T> From<BoxedStep<'a, T>> for StepList<'a, T> {
    fn from(step: BoxedStep<'a, T>) -> Self {
        StepList::Step(step)
    }
}

impl<'a, T, S: Into<StepList<'a, T>>> From<Vec<S>> for StepList<'a, T> {
    fn from(list: Vec<S>) -> Self {
        StepList::List(list.into_iter().map(Into::into).collect())
    }
}
