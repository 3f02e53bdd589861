//! The write path: one thread owns the index's [`LiveWriter`] and makes
//! append requests durable by group commit.
//!
//! Requests queue on a bounded channel. The thread takes whatever has
//! queued, adds each request as its own batch, commits once (fsync) and
//! refreshes the index's snapshot, and only then answers every request of
//! the group. So an acknowledged behavior is on disk and visible to every
//! score request that starts after the acknowledgement, and a burst of N
//! requests costs one fsync rather than N. There is no added linger: the
//! requests that arrive during a commit form the next group.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use hindsight_index::{AppendReport, BehaviorIndex, IndexError, LiveWriter, NewBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// Most requests made durable by one commit.
const MAX_GROUP: usize = 256;

/// Why an append was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The queue is full.
    #[error("the append queue is full")]
    Overloaded,
    /// The appender is closed (shutting down or the index was swapped).
    #[error("the server is not accepting appends (shutting down or reloading)")]
    Closed,
    /// The request cannot be stored (e.g. a user id out of range).
    #[error("{0}")]
    Invalid(String),
    /// Storing failed; nothing of the request was stored.
    #[error("the append could not be made durable: {0}; nothing was stored, retry it")]
    Failed(String),
}

struct Job {
    behaviors: Vec<NewBehavior>,
    reply: oneshot::Sender<Result<(AppendReport, u64), AppendError>>,
}

/// Handle to the writer thread of one index.
pub struct Appender {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Appender {
    /// Takes the writer lock of `index` (failing if another writer holds
    /// it) and starts the writer thread.
    pub fn start(
        index: Arc<BehaviorIndex>,
        queue: usize,
        metrics: Metrics,
    ) -> Result<Appender, IndexError> {
        let (tx, rx) = mpsc::channel(queue);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hindsight-writer".into())
            .spawn(move || {
                let writer = match index.live_writer(64 << 20) {
                    Ok(w) => {
                        let _ = ready_tx.send(Ok(()));
                        w
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                run(writer, rx, &metrics);
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Appender {
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(IndexError::Corrupt(
                "the writer thread died on start".into(),
            )),
        }
    }

    /// Queues a batch and waits until it is durable. Returns what was added
    /// and the index's behavior count after the commit.
    pub async fn append(
        &self,
        behaviors: Vec<NewBehavior>,
    ) -> Result<(AppendReport, u64), AppendError> {
        let tx = self
            .tx
            .lock()
            .expect("appender lock")
            .clone()
            .ok_or(AppendError::Closed)?;
        let (reply, rx) = oneshot::channel();
        tx.try_send(Job { behaviors, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AppendError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => AppendError::Closed,
        })?;
        drop(tx);
        rx.await
            .map_err(|_| AppendError::Failed("the writer thread stopped".into()))?
    }

    /// Stops taking appends, lets the thread finish the queued ones, commit
    /// and release the writer lock, and waits for it. Blocking.
    pub fn close(&self) {
        drop(self.tx.lock().expect("appender lock").take());
        if let Some(t) = self.thread.lock().expect("appender lock").take() {
            let _ = t.join();
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.close();
    }
}

fn run(mut writer: LiveWriter<'_>, mut rx: mpsc::Receiver<Job>, metrics: &Metrics) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let t0 = Instant::now();
        commit_group(&mut writer, group, metrics);
        metrics.commit.observe(t0.elapsed().as_secs_f64());
    }
    if let Err(e) = writer.close() {
        tracing::error!(error = %e, "closing the index writer failed");
    }
}

/// Adds every job of the group, commits once, answers each job.
fn commit_group(writer: &mut LiveWriter<'_>, mut group: Vec<Job>, metrics: &Metrics) {
    // A job that fails to add leaves a partial batch in the writer: roll
    // everything back, answer that job, and add the others again.
    let reports = loop {
        let mut reports = Vec::with_capacity(group.len());
        let mut failed = None;
        for (i, job) in group.iter().enumerate() {
            match writer.add_batch(&job.behaviors) {
                Ok(r) => reports.push(r),
                Err(e) => {
                    failed = Some((i, e));
                    break;
                }
            }
        }
        let Some((i, e)) = failed else { break reports };
        let job = group.remove(i);
        let err = match e {
            IndexError::InvalidInput(m) => AppendError::Invalid(m),
            other => AppendError::Failed(other.to_string()),
        };
        let _ = job.reply.send(Err(err));
        if let Err(e) = writer.rollback() {
            fail_all(group, &e.to_string());
            return;
        }
    };
    if group.is_empty() {
        return;
    }
    match writer.commit() {
        Ok(snapshot) => {
            let behaviors = snapshot.num_behaviors();
            metrics.commit_group.observe(group.len() as f64);
            for (job, report) in group.into_iter().zip(reports) {
                metrics.appended.inc_by(report.added);
                metrics.duplicates.inc_by(report.duplicates);
                let _ = job.reply.send(Ok((report, behaviors)));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "commit failed");
            let _ = writer.rollback();
            fail_all(group, &e.to_string());
        }
    }
}

fn fail_all(group: Vec<Job>, message: &str) {
    for job in group {
        let _ = job.reply.send(Err(AppendError::Failed(message.to_owned())));
    }
}
