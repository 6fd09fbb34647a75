//! The threads that deliver batches, each with its own transport, while the
//! pipeline thread reads, batches and settles.

use std::sync::{Arc, Mutex, mpsc};

use crate::delivery::{Batched, Courier, Delivered, RequestContext};
use crate::destination::Stream;
use crate::status::InternalError;
use crate::transport::Transport;

/// Threads delivering batches, each with its own transport.
pub(super) struct Workers {
    jobs: Option<mpsc::SyncSender<(Stream, Vec<Batched>)>>,
    results: mpsc::Receiver<anyhow::Result<Delivered>>,
    pub(super) in_flight: usize,
    pub(super) size: usize,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    pub(super) fn start(
        courier: &Arc<Courier>,
        context: &RequestContext,
        transports: Vec<Box<dyn Transport + Send>>,
    ) -> Workers {
        let size = transports.len();
        let (jobs, queue) = mpsc::sync_channel::<(Stream, Vec<Batched>)>(size);
        let queue = Arc::new(Mutex::new(queue));
        let (finished, results) = mpsc::channel();
        let handles = transports
            .into_iter()
            .map(|mut transport| {
                let queue = queue.clone();
                let finished = finished.clone();
                let courier = courier.clone();
                let context = context.clone();
                std::thread::spawn(move || {
                    loop {
                        let job = queue.lock().expect("job queue").recv();
                        let Ok((stream, records)) = job else { break };
                        let delivered =
                            courier.deliver(transport.as_mut(), &context, stream, records);
                        if finished.send(delivered).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Workers {
            jobs: Some(jobs),
            results,
            in_flight: 0,
            size,
            handles,
        }
    }

    pub(super) fn submit(&mut self, stream: Stream, records: Vec<Batched>) -> anyhow::Result<()> {
        let jobs = self.jobs.as_ref().expect("the pool is running");
        jobs.send((stream, records))
            .map_err(|_| InternalError("the delivery threads stopped"))?;
        self.in_flight += 1;
        Ok(())
    }

    pub(super) fn next_result(&mut self) -> anyhow::Result<Delivered> {
        let result = self
            .results
            .recv()
            .map_err(|_| InternalError("the delivery threads stopped"))?;
        self.in_flight -= 1;
        result
    }

    pub(super) fn try_result(&mut self) -> anyhow::Result<Option<Delivered>> {
        match self.results.try_recv() {
            Ok(result) => {
                self.in_flight -= 1;
                result.map(Some)
            }
            Err(_) => Ok(None),
        }
    }

    pub(super) fn stop(&mut self) {
        self.jobs = None;
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}
