//! A body relayed to or from an enclave under its exchange's
//! [`Judge`](crate::proxy::judge::Judge): each frame (data or trailers) passes the checkpoint before
//! it goes on, and while the body waits for its side, a reload or a new collateral snapshot
//! wakes it to be judged at once, so an idle stream of a refused enclave is cut too. A cut
//! ends the body with [`BodyError::Cut`]: hyper then closes an HTTP/1.1 connection mid-body
//! and resets an HTTP/2 stream; the response side's caller writes the cut's access-log line
//! then (the request side's cut reaches the client as the refusal, or as the response
//! failing).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::proxy::body::BodyError;
use crate::proxy::judge::Checkpoint;
use crate::proxy::refusal::ProxyRefusal;

/// Wakes a waiting body when the proxy's change count moves.
type Wake = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// What writes a cut body's line, once (the response side's access line). A type held in
/// the body rather than a boxed closure: that box was an allocation per relayed request.
pub(crate) trait CutLine {
    /// Writes the line for the cut `refusal`.
    fn write(self, refusal: &ProxyRefusal);
}

/// A body whose every frame passes its exchange's checkpoint.
pub(crate) struct Judged<B, L> {
    inner: B,
    checkpoint: Checkpoint,
    /// Armed while the body waits for its side: resolves at the next change.
    wake: Option<Wake>,
    /// The task `wake` wakes.
    waker: Option<Waker>,
    /// Called once if the body is cut.
    on_cut: Option<L>,
}

impl<B, L: CutLine> Judged<B, L> {
    /// `inner` passing `checkpoint`; `on_cut` called once should it be cut.
    pub(crate) fn new(inner: B, checkpoint: Checkpoint, on_cut: Option<L>) -> Self {
        Self {
            inner,
            checkpoint,
            wake: None,
            waker: None,
            on_cut,
        }
    }

    /// Ends the body: `on_cut` once, and the error for hyper.
    fn cut(&mut self, refusal: &ProxyRefusal) -> BodyError {
        if let Some(line) = self.on_cut.take() {
            line.write(refusal);
        }
        BodyError::Cut(refusal.code())
    }

    /// A change since the last look: judged now, before anything else moves.
    fn judge_changes(&mut self) -> Result<(), ProxyRefusal> {
        if self.checkpoint.changed() && self.checkpoint.pass()? {
            // The armed wake-up was for this change (or an earlier one): arm a fresh one.
            self.wake = None;
        }
        Ok(())
    }

    /// Arms (once per task) the wake-up for the next change while the body waits.
    fn listen(&mut self, cx: &mut Context<'_>) {
        if self.wake.is_some() && self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return;
        }
        let proxy = self.checkpoint.judge().proxy();
        let wake = self.wake.get_or_insert_with(|| {
            // Waits from its first poll, just below, before the count is looked at again.
            let changes = Arc::clone(&proxy.shared.changes);
            Box::pin(async move { changes.next().await })
        });
        if wake.as_mut().poll(cx).is_ready() {
            self.wake = None;
            cx.waker().wake_by_ref();
            return;
        }
        self.waker = Some(cx.waker().clone());
        // A change between the last look and the subscription above: judged at once.
        if self.checkpoint.changed() {
            cx.waker().wake_by_ref();
        }
    }
}

impl<B, L> Body for Judged<B, L>
where
    B: Body<Data = Bytes> + Unpin,
    L: CutLine + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Err(refusal) = this.judge_changes() {
            return Poll::Ready(Some(Err(this.cut(&refusal))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            // Every frame, data or trailers: both are the enclave's words.
            Poll::Ready(Some(Ok(frame))) => match this.checkpoint.pass() {
                Ok(judged) => {
                    if judged {
                        this.wake = None;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Err(refusal) => Poll::Ready(Some(Err(this.cut(&refusal)))),
            },
            Poll::Ready(Some(Err(e))) => {
                // The other direction's cut makes this side fail: it is that cut.
                let err = match this.checkpoint.judge().refused() {
                    Some(refusal) => this.cut(&refusal),
                    None => e.into(),
                };
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                this.listen(cx);
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
