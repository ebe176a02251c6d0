//! The ports of one node and the tasks that live exactly as long as they do: one stop signal
//! handed down to each, one tracker to wait for them all. A node opens its ports, serves them
//! through its drain, then closes them all at once.

use std::future::Future;
use std::net::SocketAddr;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::reply::Body;
use crate::{serve, Limits};

#[derive(Default)]
pub struct Ports {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Ports {
    pub fn new() -> Ports {
        Ports::default()
    }

    /// Serves `listener` with `handler` and `limits` until [`Ports::close`].
    pub fn serve<H, F, B>(&self, listener: TcpListener, handler: H, limits: Limits)
    where
        H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
        F: Future<Output = Response<B>> + Send + 'static,
        B: hyper::body::Body<Data = bytes::Bytes, Error = std::convert::Infallible>
            + From<Body>
            + Send
            + Unpin
            + 'static,
    {
        self.tasks
            .spawn(serve(listener, handler, self.stop.child_token(), limits));
    }

    /// Runs a task that must end when the ports close; it gets the signal to watch.
    pub fn spawn<T, F>(&self, task: T)
    where
        T: FnOnce(CancellationToken) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task(self.stop.child_token()));
    }

    /// Stops accepting on every port, lets the requests in flight finish and waits for every
    /// task to end.
    pub async fn close(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
