//! An async stage's feeder thread: it waits on the stage's input edge (a
//! blocking channel, which must not block the thread that polls futures),
//! or pulls the lazy source, and hands one batch over per request of the
//! stage thread (see `driver.rs`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::stats::StageCell;
use crate::sync::chan::Receiver;
use crate::threaded::edge::{recv_or_stop, try_recv, EdgeRx, Msg, Recv};
use crate::threaded::meta::Meta;
use crate::threaded::run::RunShared;
use crate::threaded::source::SharedSource;
use crate::threaded::worker::{weight, Weigher};

/// What the feeder hands the stage thread.
pub(crate) enum Feed<T> {
    Items(Vec<T>),
    Meta(Meta),
    End,
    Cancelled,
}

/// The thread that waits on an async stage's input edge.
pub(crate) struct Feeder<'a, In> {
    pub(crate) rx: EdgeRx<In>,
    /// The lazy source, when this is the first stage: the feeder pulls it
    /// itself (as the first stage's workers do, see `source.rs`), so no
    /// source thread is needed.
    pub(crate) source: Option<Arc<SharedSource<'a, In>>>,
    /// A request for one batch from the stage thread; disconnects when the
    /// stage thread ends.
    pub(crate) want: Receiver<()>,
    pub(crate) to_stage: mpsc::UnboundedSender<Feed<In>>,
    pub(crate) cell: Arc<StageCell>,
    pub(crate) shared: Arc<RunShared>,
    pub(crate) weigh_in: Option<Weigher<In>>,
}

impl<In> Feeder<'_, In> {
    /// The next message: from the edge first (items put through input
    /// handles), then from the source, then waiting on the edge.
    fn next(&mut self) -> Option<Recv<In>> {
        if let Some(got) = try_recv(&self.rx) {
            if !matches!(got, Recv::End) || self.source.is_none() {
                return Some(got);
            }
        }
        if let Some(source) = &self.source {
            match source.pull(source.pacing().limit()) {
                Some((batch, _)) => return Some(Recv::Msg(Msg::Items(batch))),
                // Done (or stopped): the edge ends once the input handles
                // are gone too.
                None => self.source = None,
            }
        }
        recv_or_stop(&self.rx, &self.shared.cancel, &self.want)
    }

    pub(crate) fn run(mut self) {
        let shared = self.shared.clone();
        let cancel = &shared.cancel;
        'wait: loop {
            // Wait for a request (or a cancel) before taking input, so at
            // most one batch is between the edge and the stage thread.
            let mut sel = crate::sync::chan::Select::new();
            let want = sel.recv(&self.want);
            sel.recv(cancel.rx());
            let op = sel.select();
            if op.index() == want {
                if op.recv(&self.want).is_err() {
                    break; // the stage thread ended
                }
            } else {
                let _ = op.recv(cancel.rx());
                let _ = self.to_stage.send(Feed::Cancelled);
                break;
            }
            loop {
                match self.next() {
                    None => break 'wait,
                    Some(Recv::Msg(Msg::Items(batch))) => {
                        self.cell.count_in.fetch_add(weight(&batch, &self.weigh_in), Relaxed);
                        if let Err(mpsc::error::SendError(Feed::Items(batch))) = self.to_stage.send(Feed::Items(batch))
                        {
                            self.cell.discarded.fetch_add(weight(&batch, &self.weigh_in), Relaxed);
                            break 'wait;
                        }
                        continue 'wait;
                    }
                    Some(Recv::Msg(Msg::Meta(meta))) => {
                        if self.to_stage.send(Feed::Meta(meta)).is_err() {
                            break 'wait;
                        }
                    }
                    Some(Recv::End) => {
                        let _ = self.to_stage.send(Feed::End);
                        return;
                    }
                    Some(Recv::Cancelled | Recv::Idle) => {
                        let _ = self.to_stage.send(Feed::Cancelled);
                        break 'wait;
                    }
                }
            }
        }
        // Stopped early: what waits on the edge is taken and discarded,
        // as a worker's final drain does.
        while let Ok(msg) = self.rx.try_recv() {
            if let Msg::Items(b) = msg {
                let n = weight(&b, &self.weigh_in);
                self.cell.count_in.fetch_add(n, Relaxed);
                self.cell.discarded.fetch_add(n, Relaxed);
            }
        }
    }
}
