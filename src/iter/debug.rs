//! The typed builder with the runtime debugger attached, and the measured
//! iterator it produces.

use std::fmt;
use std::sync::Arc;

use super::boxed::{BoxIter, StepList};
use super::name::{is_closure, step_name, unique_name};
use super::probe::{One, Probe};
use crate::report::Schedule;
use crate::stats::edge;
use crate::stats::heard::{self, Heard};
use crate::stats::recorder::Recorder;
use crate::stats::{Outcome, TargetGuard};
use crate::{Debugger, Stats};

/// An iterator pipeline with the runtime debugger attached (see
/// [`Pipeline::debug`](super::Pipeline::debug)). Every step is wrapped in a
/// [`Probe`] that counts its items and its exclusive time.
///
/// ```
/// use paipa::iter::{chunk, flatten, Pipeline};
/// use paipa::Debugger;
///
/// let pipeline = Pipeline::new(1..=8u32)
///     .debug(Debugger::silent())
///     .step(chunk(3).unwrap())
///     .count_by(|batch: &Vec<u32>| batch.len() as u64)
///     .step(flatten);
/// let stats = pipeline.stats();
/// let out: Vec<u32> = pipeline.into_iter().collect();
/// assert_eq!(out, (1..=8).collect::<Vec<_>>());
/// let snap = stats.snapshot();
/// let counts: Vec<_> = snap.stages.iter().map(|s| (s.name.as_str(), s.count)).collect();
/// assert_eq!(counts, [("source", 8), ("chunk", 8), ("flatten", 8)]);
/// ```
#[must_use = "a pipeline does nothing until it is iterated or consumed"]
pub struct DebugPipeline<I> {
    iter: I,
    rec: Arc<Recorder>,
    debugger: Debugger,
    heard: Heard,
}

impl<I> fmt::Debug for DebugPipeline<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DebugPipeline")
            .field("debugger", &self.debugger)
            .finish_non_exhaustive()
    }
}

impl<I: Iterator> DebugPipeline<Probe<I>> {
    pub(crate) fn new(source: I, debugger: Debugger, heard: Heard) -> Self {
        let rec = Arc::new(Recorder::new(
            debugger.name.clone(),
            debugger.source.clone(),
            debugger.timing,
            debugger.watchdog,
        ));
        // Edges named on the debugger are shown from the start, in the
        // source's row (nothing runs yet).
        for probe in &debugger.edges {
            crate::stats::CounterTarget::add_edge(&*rec, probe.clone());
        }
        DebugPipeline {
            iter: Probe::new(source, 0, rec.clone()),
            rec,
            debugger,
            heard,
        }
    }
}

impl<I: Iterator, W> DebugPipeline<Probe<I, W>> {
    /// Says how much each item of the last stage counts for: a batch can
    /// count as its length, as in the reference.
    pub fn count_by<V: Fn(&I::Item) -> u64>(self, weigh: V) -> DebugPipeline<Probe<I, V>> {
        DebugPipeline {
            iter: self.iter.reweigh(weigh),
            rec: self.rec,
            debugger: self.debugger,
            heard: self.heard,
        }
    }
}

impl<I: Iterator> DebugPipeline<I> {
    /// Adds a measured step named after its function.
    ///
    /// A closure is named after the function that contains it; every
    /// closure of one function would so share a name, so a closure whose
    /// name is already a stage's gets an index suffix: `main`, `main#2`,
    /// `main#3`. Name closures with [`DebugPipeline::step_named`] for
    /// readable reports.
    ///
    /// ```
    /// use paipa::{iter::Pipeline, Debugger};
    /// let pipeline = Pipeline::new(0..4u32)
    ///     .debug(Debugger::silent())
    ///     .step(|it| it.map(|x| x + 1))
    ///     .step(|it| it.filter(|x| x % 2 == 0));
    /// let stats = pipeline.stats();
    /// assert_eq!(paipa::iter::consume(pipeline), 2);
    /// let names: Vec<String> = stats.snapshot().stages.into_iter().map(|s| s.name).collect();
    /// assert_eq!(names[1..], [format!("{}", names[1]), format!("{}#2", names[1])]);
    /// ```
    pub fn step<F, J>(self, step: F) -> DebugPipeline<Probe<J::IntoIter, One>>
    where
        F: FnOnce(I) -> J,
        J: IntoIterator,
    {
        let mut name = step_name::<F>();
        if is_closure::<F>() {
            name = unique_name(name, &self.rec.stage_names());
        }
        self.step_named(name, step)
    }

    /// Adds a measured step with an explicit name.
    pub fn step_named<F, J>(self, name: impl Into<String>, step: F) -> DebugPipeline<Probe<J::IntoIter, One>>
    where
        F: FnOnce(I) -> J,
        J: IntoIterator,
    {
        let index = self.rec.push_stage(name.into());
        let out = step(self.iter).into_iter();
        DebugPipeline {
            iter: Probe::new(out, index, self.rec.clone()),
            rec: self.rec,
            debugger: self.debugger,
            heard: self.heard,
        }
    }

    /// Applies a run-time list of boxed steps, each measured as a stage.
    pub fn steps<'a>(self, steps: impl Into<StepList<'a, I::Item>>) -> DebugPipeline<BoxIter<'a, I::Item>>
    where
        I: 'a,
    {
        let mut pipeline = self.boxed();
        for step in steps.into().flatten() {
            let (name, f) = step.into_parts();
            pipeline = pipeline.step_named(name, move |it| f(it)).boxed();
        }
        pipeline
    }

    /// Boxes the pipeline's iterator.
    pub fn boxed<'a>(self) -> DebugPipeline<BoxIter<'a, I::Item>>
    where
        I: 'a,
    {
        DebugPipeline {
            iter: Box::new(self.iter),
            rec: self.rec,
            debugger: self.debugger,
            heard: self.heard,
        }
    }

    /// A handle on the stats, readable during and after the run. With
    /// [`Debugger::sampled`], counts read during the run may lag by up to
    /// the sampling interval per stage; after the run they are exact.
    pub fn stats(&self) -> Stats {
        stats_of(&self.rec)
    }
}

fn stats_of(rec: &Arc<Recorder>) -> Stats {
    let rec = rec.clone();
    Stats {
        source: Arc::new(move |is_final| rec.snapshot(is_final)),
    }
}

impl<I: Iterator> IntoIterator for DebugPipeline<I> {
    type Item = I::Item;
    type IntoIter = Debugged<I>;

    /// Starts the run: periodic reports begin, and the final report is made
    /// when the iterator is exhausted or dropped, whichever comes first.
    fn into_iter(self) -> Debugged<I> {
        let rec = self.rec.clone();
        let schedule = Schedule::start(
            self.debugger.reporters,
            self.debugger.interval,
            self.debugger.watchdog,
            Arc::new(move |is_final| {
                if is_final {
                    rec.finish();
                }
                rec.snapshot(is_final)
            }),
            {
                let rec = self.rec.clone();
                Arc::new(move || rec.edge_probes())
            },
        );
        Debugged {
            inner: Some(self.iter),
            rec: self.rec,
            schedule,
            heard: self.heard,
        }
    }
}

/// A running, measured iterator pipeline. It makes exactly one final report:
/// when it returns `None` for the first time, or when it is dropped (the
/// consumer stopped early, or a step panicked), whichever comes first.
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct Debugged<I> {
    /// The measured chain; `None` once finished. It is dropped before the
    /// final report: the probes publish their last counts when dropped.
    inner: Option<I>,
    rec: Arc<Recorder>,
    schedule: Schedule,
    heard: Heard,
}

impl<I> fmt::Debug for Debugged<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Debugged")
            .field("done", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

impl<I> Debugged<I> {
    /// A handle on the stats, readable during and after the run. With
    /// [`Debugger::sampled`], counts read during the run may lag by up to
    /// the sampling interval per stage; after the run they are exact.
    pub fn stats(&self) -> Stats {
        stats_of(&self.rec)
    }

    /// Makes the final report (once), saying how the run ended.
    fn finish(&mut self, outcome: Outcome) {
        if self.inner.is_some() {
            self.rec.set_outcome(outcome);
        }
        if self.inner.take().is_some() {
            // The chain is dropped: a stream source's last acks are on
            // their way. The edges' last readings come before the report.
            let probes = self.rec.edge_probes();
            edge::refresh(&probes, edge::FINAL_WAIT, true);
            self.schedule.finish();
            // No reports are made any more: the edges' reading threads end.
            edge::close(&probes);
        }
    }
}

impl<I: Iterator> Iterator for Debugged<I> {
    type Item = I::Item;

    #[inline]
    fn next(&mut self) -> Option<I::Item> {
        let inner = self.inner.as_mut()?;
        if heard::count(&self.heard) >= 2 {
            // A second signal: stop at once.
            self.finish(heard::outcome(&self.heard).expect("heard"));
            return None;
        }
        self.rec.begin_pull();
        let item = {
            // SAFETY: the recorder is kept alive by `self.rec` for longer
            // than the guard, which is dropped at the end of this block (also
            // on unwind).
            let _counters = unsafe { TargetGuard::install(&*self.rec) };
            inner.next()
        };
        if item.is_none() {
            self.finish(heard::outcome(&self.heard).unwrap_or(Outcome::Finished));
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.as_ref().map_or((0, Some(0)), Iterator::size_hint)
    }
}

impl<I> Drop for Debugged<I> {
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            Outcome::Failed {
                stage: self.rec.current_stage(),
                error: "panicked".into(),
            }
        } else {
            heard::outcome(&self.heard).unwrap_or(Outcome::StoppedEarly)
        };
        self.finish(outcome);
    }
}
