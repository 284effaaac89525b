//! The embedded executor: a few threads off the async runtime take job ids from a channel
//! and train in this process.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};

use ferrocluster_core::training::{train, Observer, Stage, TrainError, Trained};
use ferrocluster_core::CancelToken;

use super::Jobs;
use crate::memory::Need;
use crate::store::jobs::{JobProgress, JobState};
use crate::store::now_ms;

/// The channel the training threads read.
pub(super) struct Embedded {
    sender: Sender<String>,
    receiver: Arc<Mutex<Receiver<String>>>,
}

impl Embedded {
    pub(super) fn new() -> Self {
        let (sender, receiver) = channel();
        Embedded { sender, receiver: Arc::new(Mutex::new(receiver)) }
    }

    /// Starts `threads` training threads; they end when the jobs are dropped.
    pub(super) fn start(&self, jobs: &Arc<Jobs>, threads: usize) -> std::io::Result<()> {
        for i in 0..threads {
            let (weak, receiver) = (Arc::downgrade(jobs), self.receiver.clone());
            std::thread::Builder::new().name(format!("train-{i}")).spawn(move || work(&weak, &receiver))?;
        }
        Ok(())
    }

    pub(super) fn submit(&self, id: &str) {
        let _ = self.sender.send(id.to_owned());
    }
}

/// A training thread: runs queued jobs until the service is dropped.
fn work(jobs: &Weak<Jobs>, receiver: &Mutex<Receiver<String>>) {
    loop {
        let next = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let (Ok(id), Some(jobs)) = (next, jobs.upgrade()) else { return };
        run(&jobs, &id);
    }
}

/// Runs job `id` to its end, unless it is already finished. It stays `queued` until the
/// service's working memory has room for it (or it is cancelled meanwhile).
fn run(jobs: &Jobs, id: &str) {
    let (request, cancel) = {
        let table = jobs.lock();
        let Some(entry) = table.get(id) else { return };
        if entry.job.state.is_final() {
            return;
        }
        (entry.job.request.clone(), entry.cancel.clone())
    };
    let outcome = (|| -> Result<Trained, TrainError> {
        let dataset = jobs
            .store
            .dataset(&request.dataset_id)
            .map_err(|e| TrainError::Failed(format!("reading the dataset: {e}")))?
            .ok_or_else(|| TrainError::Failed(format!("dataset `{}` was deleted", request.dataset_id)))?;
        let paths = jobs.store.dataset_files(&dataset);
        let need = Need::training(paths.len(), &request.features);
        jobs.memory.check(need).map_err(|e| TrainError::Failed(e.detail))?;
        let Some(_reservation) = jobs.memory.reserve_waiting(need, || cancel.is_cancelled()) else {
            return Err(TrainError::Cancelled);
        };
        {
            let mut table = jobs.lock();
            let Some(entry) = table.get_mut(id) else { return Err(TrainError::Cancelled) };
            if entry.job.state.is_final() {
                return Err(TrainError::Cancelled);
            }
            let job = &mut entry.job;
            job.state = JobState::Running;
            job.attempts += 1;
            job.started_at_ms = Some(now_ms());
            job.timings_ms.clear();
            job.progress = JobProgress::default();
            let _ = jobs.store.save_job(job);
        }
        train(&paths, &request, &jobs.limits, &JobObserver { jobs, id, cancel: &cancel })
    })();
    jobs.finish(id, outcome);
}

/// A training's progress goes to the job record; its cancel flag stops it.
struct JobObserver<'a> {
    jobs: &'a Jobs,
    id: &'a str,
    cancel: &'a CancelToken,
}

impl Observer for JobObserver<'_> {
    fn progress(&self, stage: Stage, done: usize, total: usize) {
        self.jobs.report(self.id, stage, done, total);
    }

    fn cancel_token(&self) -> &CancelToken {
        self.cancel
    }
}
