//! Meta entries: out-of-band values that travel through every stage beside
//! the items (a value type every floor of the threaded core carries).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// An out-of-band entry that travels through every stage beside the items,
/// handled by [`Step::process_meta`](crate::threaded::Step::process_meta) (passed through unchanged by default).
///
/// Read it back with [`Meta::get`], which names the stored type when it is
/// not the one asked for: a literal `123` is an `i32`, not an `i64`.
///
/// ```
/// use paipa::threaded::Meta;
///
/// let meta = Meta::new("checkpoint 7");
/// assert_eq!(meta.get::<&str>(), Ok(&"checkpoint 7"));
///
/// let meta = Meta::new(123);
/// let err = meta.get::<i64>().unwrap_err();
/// assert_eq!(err.to_string(), "the meta entry holds a i32, not a i64");
/// assert_eq!(meta.get::<i32>(), Ok(&123));
/// ```
#[derive(Clone)]
pub struct Meta(Arc<Typed<dyn Any + Send + Sync>>);

/// A meta entry's value and its type's name, behind one pointer: a `Meta`
/// stays two words, so the messages on every edge do not grow.
struct Typed<V: ?Sized> {
    type_name: &'static str,
    value: V,
}

/// [`Meta::get`] asked for another type than the one stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the meta entry holds a {stored}, not a {asked}")]
pub struct MetaTypeError {
    /// The type stored in the entry.
    pub stored: &'static str,
    /// The type asked for.
    pub asked: &'static str,
}

impl Meta {
    /// Wraps any value as a meta entry (its type is kept, for
    /// [`Meta::get`]'s errors).
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Meta(Arc::new(Typed {
            type_name: std::any::type_name::<T>(),
            value,
        }))
    }

    /// The value as a `T`, or an error naming the type stored.
    pub fn get<T: Any>(&self) -> Result<&T, MetaTypeError> {
        self.0.value.downcast_ref().ok_or(MetaTypeError {
            stored: self.0.type_name,
            asked: std::any::type_name::<T>(),
        })
    }

    /// The name of the stored value's type.
    pub fn type_name(&self) -> &'static str {
        self.0.type_name
    }

    /// The value, if it is a `T` (see [`Meta::get`] for an error that says
    /// what it is instead).
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.value.downcast_ref()
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meta")
            .field("type", &self.0.type_name)
            .finish_non_exhaustive()
    }
}
