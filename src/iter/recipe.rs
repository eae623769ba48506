//! Deferred pipelines: steps built once and applied to many sources (the
//! reference's "callable source").

use std::fmt;
use std::sync::Arc;

use super::boxed::{BoxIter, BoxedStep, StepList};
use super::debug::DebugPipeline;
use super::name::step_name;
use super::Pipeline;
use crate::Debugger;

type SharedStep<'a, T> = Arc<dyn Fn(BoxIter<'a, T>) -> BoxIter<'a, T> + Send + Sync + 'a>;

/// A list of steps, built once, applied to any number of sources.
///
/// ```
/// use paipa::iter::{BoxIter, Recipe};
///
/// fn evens(it: BoxIter<'_, u32>) -> impl Iterator<Item = u32> + '_ { it.filter(|x| x % 2 == 0) }
/// let recipe = Recipe::new().step(evens);
/// let sum = |n: u32| -> u32 { recipe.apply(0..n).into_iter().sum() };
/// assert_eq!(sum(100), 2450);
/// assert_eq!(sum(10), 20);
/// ```
pub struct Recipe<'a, T> {
    steps: Vec<(String, SharedStep<'a, T>)>,
}

impl<T> fmt::Debug for Recipe<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.steps.iter().map(|(n, _)| n)).finish()
    }
}

impl<T> Default for Recipe<'_, T> {
    fn default() -> Self {
        Recipe { steps: Vec::new() }
    }
}

impl<T> Clone for Recipe<'_, T> {
    fn clone(&self) -> Self {
        Recipe {
            steps: self.steps.clone(),
        }
    }
}

impl<'a, T: 'a> Recipe<'a, T> {
    /// An empty recipe.
    pub fn new() -> Self {
        Recipe::default()
    }

    /// Adds a step named after its function.
    pub fn step<F, J>(self, step: F) -> Self
    where
        F: Fn(BoxIter<'a, T>) -> J + Send + Sync + 'a,
        J: IntoIterator<Item = T> + 'a,
    {
        self.step_named(step_name::<F>(), step)
    }

    /// Adds a step with an explicit name.
    pub fn step_named<F, J>(mut self, name: impl Into<String>, step: F) -> Self
    where
        F: Fn(BoxIter<'a, T>) -> J + Send + Sync + 'a,
        J: IntoIterator<Item = T> + 'a,
    {
        self.steps
            .push((name.into(), Arc::new(move |it| Box::new(step(it).into_iter()))));
        self
    }

    fn list(&self) -> StepList<'a, T> {
        let steps: Vec<BoxedStep<'a, T>> = self
            .steps
            .iter()
            .map(|(name, f)| {
                let f = f.clone();
                BoxedStep::named(name.clone(), move |it| f(it))
            })
            .collect();
        steps.into()
    }

    /// Builds a pipeline over `source`.
    pub fn apply<S>(&self, source: S) -> Pipeline<BoxIter<'a, T>>
    where
        S: IntoIterator<Item = T>,
        S::IntoIter: 'a,
    {
        Pipeline::new(source).steps(self.list())
    }

    /// Builds a measured pipeline over `source`.
    pub fn apply_debugged<S>(&self, source: S, debugger: Debugger) -> DebugPipeline<BoxIter<'a, T>>
    where
        S: IntoIterator<Item = T>,
        S::IntoIter: 'a,
    {
        Pipeline::new(source).debug(debugger).steps(self.list())
    }
}
