//! Job records: one JSON file per training job, rewritten on every change of state.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{read_json, write_json, Store};
use crate::training::TrainRequest;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a training thread or a queue worker.
    Queued,
    /// Training.
    Running,
    /// Done: the model is stored and served.
    Succeeded,
    /// Stopped by an error (see `error`).
    Failed,
    /// Cancelled by `DELETE /v1/jobs/{id}`.
    Cancelled,
}

impl JobState {
    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }

    /// The state's name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// How far a running job has got.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobProgress {
    /// The current stage: `features` (images done), `fit` (iterations), `metrics`, `store`;
    /// empty until the first stage starts.
    pub stage: String,
    /// Steps done in this stage.
    pub done: usize,
    /// Steps in this stage (an upper bound for `fit`, which may converge early).
    pub total: usize,
}

/// A training job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Its id.
    #[schema(value_type = super::JobId)]
    pub id: String,
    /// Its state.
    pub state: JobState,
    /// What it trains.
    pub request: TrainRequest,
    /// The id the model gets (served once the job has succeeded).
    #[schema(value_type = super::ModelId)]
    pub model_id: String,
    /// Progress of the current stage.
    pub progress: JobProgress,
    /// When it was submitted, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When its last attempt started.
    pub started_at_ms: Option<u64>,
    /// When it finished.
    pub finished_at_ms: Option<u64>,
    /// Milliseconds spent in each finished stage of the last attempt.
    pub timings_ms: BTreeMap<String, u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Attempts started (more than one after a restart, or on the queue a lost worker, interrupted it).
    pub attempts: u32,
}

impl Store {
    fn job_path(&self, id: &str) -> PathBuf {
        self.dir("jobs").join(format!("{id}.json"))
    }

    /// Writes a job record (atomically).
    pub fn save_job(&self, job: &Job) -> std::io::Result<()> {
        write_json(&self.job_path(&job.id), job)
    }

    /// Every job record.
    pub fn jobs(&self) -> std::io::Result<Vec<Job>> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.dir("jobs"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                all.push(read_json(&path)?);
            }
        }
        Ok(all)
    }
}
