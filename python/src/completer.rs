//! Delivers the scheduler's replies to Python futures, from one thread per scheduler.
//!
//! The model workers never touch the interpreter: they answer a Rust oneshot. This thread polls
//! those replies as futures (woken by the workers), attaches to the interpreter once per wake-up
//! and sets each ready `concurrent.futures.Future`. A future cancelled in Python sends its id
//! back here and its reply handle is dropped, so a request not yet computed never is.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, unbounded};
use densebatch::{Reply, ReplyFuture, ReplyHandle};
use numpy::IntoPyArray;
use pyo3::prelude::*;

use crate::errors;

enum Message {
    Add(u64, ReplyFuture, Py<PyAny>),
    Wake(u64),
    Cancel(u64),
    Stop,
}

struct WakeById {
    id: u64,
    sender: Sender<Message>,
}

impl Wake for WakeById {
    fn wake(self: Arc<Self>) {
        let _ = self.sender.send(Message::Wake(self.id));
    }
}

/// The sending end of a completer thread.
pub(crate) struct Completer {
    sender: Sender<Message>,
    stopping: Mutex<bool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Completer {
    pub(crate) fn start() -> std::io::Result<Self> {
        let (sender, receiver) = unbounded();
        let wake_sender = sender.clone();
        let thread = std::thread::Builder::new()
            .name("densebatch-completer".into())
            .spawn(move || run(&receiver, &wake_sender))?;
        Ok(Completer {
            sender,
            stopping: Mutex::new(false),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Hands a reply over; `future` gets its result or exception exactly once. Once the thread
    /// is stopping (a submit that raced with `shutdown`) it gives both back: the scheduler has
    /// answered the request by then, and the caller delivers the reply itself.
    pub(crate) fn add(
        &self,
        id: u64,
        reply: ReplyHandle,
        future: Py<PyAny>,
    ) -> Result<(), (ReplyHandle, Py<PyAny>)> {
        // Adds are sent under the lock that `stop` takes to send Stop, so the thread sees every
        // accepted Add before Stop and waits for its reply.
        let stopping = self.stopping.lock().unwrap_or_else(|e| e.into_inner());
        if *stopping {
            return Err((reply, future));
        }
        let _ = self
            .sender
            .send(Message::Add(id, reply.into_future(), future));
        Ok(())
    }

    /// Delivers every reply still owed, then stops the thread. Call with the interpreter detached
    /// and after the scheduler has shut down (so every reply owed has been sent).
    pub(crate) fn stop(&self) {
        self.stop_later();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Stops the thread once it has delivered what it owes, without waiting for it.
    pub(crate) fn stop_later(&self) {
        let mut stopping = self.stopping.lock().unwrap_or_else(|e| e.into_inner());
        if !*stopping {
            *stopping = true;
            let _ = self.sender.send(Message::Stop);
        }
    }

    /// A sender that cancels futures, for the Python done-callbacks.
    pub(crate) fn canceller(&self) -> CancelSender {
        CancelSender(self.sender.clone())
    }
}

/// Cancels pending requests by id (see [`Completer::cancel`]).
#[derive(Clone)]
pub(crate) struct CancelSender(Sender<Message>);

impl CancelSender {
    pub(crate) fn cancel(&self, id: u64) {
        let _ = self.0.send(Message::Cancel(id));
    }
}

struct Pending {
    reply: ReplyFuture,
    future: Py<PyAny>,
    waker: Waker,
}

fn run(receiver: &Receiver<Message>, wake_sender: &Sender<Message>) {
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut ready: Vec<(Py<PyAny>, Reply)> = Vec::new();
    let mut stopping = false;
    while !(stopping && pending.is_empty()) {
        let Ok(first) = receiver.recv() else { break };
        // Take every message already queued, so one attach serves a whole wake-up.
        for message in std::iter::once(first).chain(receiver.try_iter()) {
            match message {
                Message::Add(id, reply, future) => {
                    let waker = Waker::from(Arc::new(WakeById {
                        id,
                        sender: wake_sender.clone(),
                    }));
                    pending.insert(
                        id,
                        Pending {
                            reply,
                            future,
                            waker,
                        },
                    );
                    poll_one(&mut pending, id, &mut ready);
                }
                Message::Wake(id) => poll_one(&mut pending, id, &mut ready),
                Message::Cancel(id) => {
                    // Dropping the reply handle tells the scheduler not to compute it.
                    pending.remove(&id);
                }
                Message::Stop => stopping = true,
            }
        }
        if !ready.is_empty() {
            deliver(&mut ready);
        }
    }
}

fn poll_one(pending: &mut HashMap<u64, Pending>, id: u64, ready: &mut Vec<(Py<PyAny>, Reply)>) {
    let Some(entry) = pending.get_mut(&id) else {
        return;
    };
    let mut context = Context::from_waker(&entry.waker);
    if let Poll::Ready(reply) = Pin::new(&mut entry.reply).poll(&mut context) {
        let entry = pending.remove(&id).expect("present above");
        ready.push((entry.future, reply));
    }
}

pub(crate) fn deliver(ready: &mut Vec<(Py<PyAny>, Reply)>) {
    let delivered = Python::try_attach(|py| {
        for (future, reply) in ready.drain(..) {
            let future = future.bind(py);
            // A future cancelled meanwhile refuses a result (InvalidStateError): nothing owed.
            if future
                .call_method0("done")
                .and_then(|d| d.extract::<bool>())
                .unwrap_or(true)
            {
                continue;
            }
            let outcome = match reply {
                Ok(y) => future.call_method1("set_result", (y.into_pyarray(py),)),
                Err(e) => {
                    future.call_method1("set_exception", (errors::request(py, e).into_value(py),))
                }
            };
            if let Err(e) = outcome
                && !future
                    .call_method0("done")
                    .and_then(|d| d.extract::<bool>())
                    .unwrap_or(false)
            {
                e.write_unraisable(py, Some(future));
            }
        }
    });
    if delivered.is_none() {
        // The interpreter is finalising: nobody can wait on these futures any more. Leak the
        // Python references rather than touch a dying interpreter.
        for (future, _) in ready.drain(..) {
            std::mem::forget(future);
        }
    }
}
