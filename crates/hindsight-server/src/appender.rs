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
//!
//! If the thread dies (a panic inside the index writer), the reason is
//! logged once and kept: every later append gets
//! [`AppendError::WriterDied`] and `/readyz` reports not ready with it.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock};
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
    /// The writer thread died; no append can be stored until the server is
    /// restarted (or reloaded onto another index).
    #[error("{0}")]
    WriterDied(String),
}

struct Job {
    behaviors: Vec<NewBehavior>,
    reply: oneshot::Sender<Result<(AppendReport, u64), AppendError>>,
    /// Tests only: make the writer thread panic, as a panic inside
    /// tantivy would.
    #[cfg(test)]
    panic: bool,
}

/// Handle to the writer thread of one index.
pub struct Appender {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Set once if the thread died: why.
    failure: Arc<OnceLock<String>>,
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
        let failure = Arc::new(OnceLock::new());
        let failed = failure.clone();
        let path = index.path().display().to_string();
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
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(writer, rx, &metrics)));
                if let Err(panic) = outcome {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic without a message".into());
                    let reason = format!(
                        "the index writer of {path} died ({what}); appends are refused until the server is restarted or reloaded onto a sound index"
                    );
                    tracing::error!(%reason, "index writer thread died; the server is not ready");
                    let _ = failed.set(reason);
                }
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Appender {
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                failure,
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
        self.send(Job {
            behaviors,
            reply: oneshot::channel().0,
            #[cfg(test)]
            panic: false,
        })
        .await
    }

    async fn send(&self, mut job: Job) -> Result<(AppendReport, u64), AppendError> {
        if let Some(reason) = self.failure() {
            return Err(AppendError::WriterDied(reason));
        }
        let tx = self
            .tx
            .lock()
            .expect("appender lock")
            .clone()
            .ok_or(AppendError::Closed)?;
        let (reply, rx) = oneshot::channel();
        job.reply = reply;
        let sent = tx.try_send(job);
        drop(tx);
        match sent {
            Ok(()) => match rx.await {
                Ok(answer) => answer,
                Err(_) => Err(self.failure_after_exit().await.map_or_else(
                    || AppendError::Failed("the writer thread stopped".into()),
                    AppendError::WriterDied,
                )),
            },
            Err(mpsc::error::TrySendError::Full(_)) => Err(AppendError::Overloaded),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self
                .failure_after_exit()
                .await
                .map_or(AppendError::Closed, AppendError::WriterDied)),
        }
    }

    /// Why the writer thread died, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure.get().cloned()
    }

    /// [`Appender::failure`], after waiting briefly for a thread that has
    /// just dropped its channel to record why (unwinding drops the channel
    /// before the panic is recorded).
    async fn failure_after_exit(&self) -> Option<String> {
        for _ in 0..100 {
            let finished = self
                .thread
                .lock()
                .expect("appender lock")
                .as_ref()
                .is_none_or(JoinHandle::is_finished);
            if self.failure().is_some() || finished {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        self.failure()
    }

    /// Tests only: makes the writer thread panic and waits for it to die.
    #[cfg(test)]
    pub(crate) async fn kill_for_test(&self) {
        let _ = self
            .send(Job {
                behaviors: Vec::new(),
                reply: oneshot::channel().0,
                panic: true,
            })
            .await;
        for _ in 0..500 {
            if self.failure().is_some() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the writer thread did not die");
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
        #[cfg(test)]
        if first.panic {
            panic!("writer killed by a test");
        }
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
