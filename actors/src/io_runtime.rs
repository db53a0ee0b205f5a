//! A runtime of its own for the engine's database I/O.
//!
//! Under an on-sale burst the main runtime's queues hold thousands of HTTP tasks. A flush
//! whose socket becomes readable would wait its turn behind all of them, once per round
//! trip of its transaction, and every buyer in the batch would wait with it. Running the
//! engine's database work (flushes, loads, id blocks) on a dedicated thread, with
//! connections registered with that thread's reactor, keeps a commit's latency the
//! database's, not the HTTP queue's.

use std::future::Future;
use std::sync::Mutex;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The engine's I/O runtime: one thread running a current-thread tokio runtime.
pub struct IoRuntime {
    /// Where database work is spawned.
    handle: Handle,
    /// Dropping this ends the thread (and cancels whatever still runs on it).
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl IoRuntime {
    /// Starts the thread.
    pub fn start() -> IoRuntime {
        IoRuntime::start_named("boxoffice-db-io")
    }

    /// Starts a thread of this name running a runtime of its own.
    pub fn start_named(name: &str) -> IoRuntime {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the I/O runtime builds");
                handle_tx
                    .send(runtime.handle().clone())
                    .expect("starter waits");
                runtime.block_on(async {
                    let _ = stop_rx.await;
                });
            })
            .expect("spawn the I/O thread");
        IoRuntime {
            handle: handle_rx.recv().expect("the I/O thread starts"),
            stop: Mutex::new(Some(stop_tx)),
        }
    }

    /// Spawns database work on the I/O thread.
    pub fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(work)
    }

    /// Runs database work on the I/O thread and waits for its result. A panic in the work
    /// is re-raised here.
    pub async fn run<F>(&self, work: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handle.spawn(work).await {
            Ok(output) => output,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("database work was cancelled: {e}"),
        }
    }

    /// A handle for entering the runtime (to create pools whose tasks belong to it).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.lock().expect("not poisoned").take() {
            let _ = stop.send(());
        }
    }
}
