//! The HTTP connection layer both servers stand on (the ingestion server
//! of `glue` and the live page of `report::WebReporter`), over hyper.
//!
//! It holds what no route may be left to do on its own: how many
//! connections are open and for how long ([`limits`]), which names and
//! origins a request may come with ([`hosts`]), the one shape of every
//! error answer ([`answer`]), a connection's life and last words
//! ([`activity`], [`connection`]) and accepting ([`listener`]).

pub(crate) mod activity;
pub(crate) mod answer;
pub(crate) mod connection;
pub(crate) mod hosts;
pub(crate) mod limits;
pub(crate) mod listener;
