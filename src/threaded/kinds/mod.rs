//! The stage kinds: one file each, with its constructors on
//! [`Stage`](super::Stage), its worker loop (or the loop it borrows), and
//! the capabilities it declares. Adding a kind is adding a file here and
//! its line below (see docs/ARCHITECTURE.md).

pub(crate) mod batch_map;
pub(crate) mod chained;
pub(crate) mod fold;
pub(crate) mod item;
pub(crate) mod iter;
pub(crate) mod map;
pub(crate) mod ordered;
