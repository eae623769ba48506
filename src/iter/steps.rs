//! Step helpers: `chunk`, `flatten`, `identity`, and the consumers `consume`
//! and `consume_n`.

use std::fmt;
use std::iter::FusedIterator;

use crate::error::ConfigError;

/// The largest chunk size (2^30 items), for [`chunk`] and the threaded
/// `TimedChunk`.
pub const MAX_CHUNK: usize = 1 << 30;

/// Items a chunk's buffer reserves up front at most: a large chunk size
/// grows its buffer as items come, instead of reserving it all at once.
pub(crate) const CHUNK_RESERVE: usize = 1024;

/// Refuses a chunk size of 0 or above [`MAX_CHUNK`].
pub(crate) fn check_chunk_size(size: usize) -> Result<(), ConfigError> {
    if size == 0 {
        return Err(ConfigError::new("chunk size", size, "must be at least 1"));
    }
    if size > MAX_CHUNK {
        return Err(ConfigError::new(
            "chunk size",
            size,
            format!("must be at most {MAX_CHUNK}"),
        ));
    }
    Ok(())
}

/// A step that groups items into `Vec`s of `size`; the last one may be
/// shorter. A size of 0, or above [`MAX_CHUNK`], is refused here, where it
/// was written.
///
/// The step is a plain `Fn`, so it plugs into an iterator pipeline and into
/// a threaded [`Stage::iter`](crate::threaded::Stage::iter) alike.
///
/// ```
/// use paipa::iter::{chunk, Pipeline};
/// let out: Vec<Vec<u32>> = Pipeline::new(1..=8).step(chunk(3)?).into_iter().collect();
/// assert_eq!(out, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8]]);
///
/// let err = chunk::<std::ops::Range<u32>>(usize::MAX).err().unwrap();
/// assert_eq!(err.to_string(), "invalid chunk size: 18446744073709551615 (must be at most 1073741824)");
/// # Ok::<(), paipa::ConfigError>(())
/// ```
pub fn chunk<I: Iterator>(size: usize) -> Result<impl Fn(I) -> Chunks<I> + Clone + Send + Sync, ConfigError> {
    check_chunk_size(size)?;
    Ok(move |inner: I| Chunks { inner, size })
}

/// The iterator of [`chunk`].
#[must_use = "iterators are lazy and do nothing unless consumed"]
#[derive(Clone)]
pub struct Chunks<I> {
    inner: I,
    size: usize,
}

impl<I> fmt::Debug for Chunks<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunks")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<I: Iterator> Iterator for Chunks<I> {
    type Item = Vec<I::Item>;

    fn next(&mut self) -> Option<Vec<I::Item>> {
        let first = self.inner.next()?;
        let mut batch = Vec::with_capacity(self.size.min(CHUNK_RESERVE));
        batch.push(first);
        batch.extend(self.inner.by_ref().take(self.size - 1));
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (lo, hi) = self.inner.size_hint();
        (lo.div_ceil(self.size), hi.map(|h| h.div_ceil(self.size)))
    }
}

impl<I: FusedIterator> FusedIterator for Chunks<I> {}

/// A step that flattens batches (any iterable items) back into items.
///
/// ```
/// use paipa::iter::{flatten, Pipeline};
/// let out: Vec<u8> = Pipeline::new(vec![vec![1, 2], vec![], vec![3]]).step(flatten).into_iter().collect();
/// assert_eq!(out, [1, 2, 3]);
/// ```
pub fn flatten<I>(it: I) -> std::iter::Flatten<I>
where
    I: Iterator,
    I::Item: IntoIterator,
{
    it.flatten()
}

/// A step that passes every item through unchanged.
pub fn identity<I: Iterator>(it: I) -> I {
    it
}

/// Drains an iterator (or a pipeline) and returns how many items it gave.
///
/// ```
/// assert_eq!(paipa::iter::consume(0..10), 10);
/// ```
pub fn consume<I: IntoIterator>(it: I) -> usize {
    it.into_iter().fold(0, |n, _| n + 1)
}

/// Advances an iterator by up to `n` items and returns how many it gave
/// (fewer than `n` if it ended first).
///
/// ```
/// let mut it = 0..10;
/// assert_eq!(paipa::iter::consume_n(&mut it, 4), 4);
/// assert_eq!(it.next(), Some(4));
/// assert_eq!(paipa::iter::consume_n(&mut it, 100), 5);
/// ```
pub fn consume_n<I: Iterator>(it: &mut I, n: usize) -> usize {
    it.take(n).fold(0, |k, _| k + 1)
}
