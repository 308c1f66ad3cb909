//! What an interrupted run leaves in `checkpoints/` to resume from.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use coppice_models::Network;
use coppice_prune::{LayerAttempt, RoundRecord};
use coppice_train::{Callback, EpochRecord};
use serde::{Deserialize, Serialize};

use super::dir::create_dir_durable;
use super::integrity;
use super::saved::save_model;
use super::tables::MetricsLog;

/// `checkpoints/dense-epochs.json`: the dense training's epochs, rewritten after each one (burn-train
/// has checkpointed that epoch by then), so that `--resume` goes on after the last.
pub struct EpochJournal {
    pub path: PathBuf,
    pub epochs: Vec<EpochRecord>,
}

impl EpochJournal {
    pub fn start(run_dir: &Path, done: Vec<EpochRecord>) -> Result<EpochJournal> {
        let dir = Checkpoint::dir(run_dir);
        create_dir_durable(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        Ok(EpochJournal { path: dir.join("dense-epochs.json"), epochs: done })
    }

    pub fn read(run_dir: &Path) -> Result<Vec<EpochRecord>> {
        let path = Checkpoint::dir(run_dir).join("dense-epochs.json");
        integrity::settle(&Checkpoint::dir(run_dir), "dense-epochs.json")?;
        if !path.is_file() {
            return Ok(Vec::new());
        }
        let text = integrity::read_text(&Checkpoint::dir(run_dir), "dense-epochs.json")?;
        serde_json::from_str(&text).with_context(|| {
            format!("{}: not a coppice epoch journal; fix: delete it to train from the start", path.display())
        })
    }
}

impl Callback for EpochJournal {
    fn on_epoch_end(&mut self, record: &EpochRecord) {
        self.epochs.push(record.clone());
        let written = serde_json::to_string(&self.epochs).map_err(anyhow::Error::from).and_then(|json| {
            integrity::replace(self.path.parent().unwrap_or(Path::new(".")), "dense-epochs.json", json.as_bytes())
        });
        if let Err(e) = written {
            // Training goes on; only a resume would start further back.
            eprintln!("warning: {e:#}");
        }
    }
}

/// What an interrupted run leaves to resume from, in `checkpoints/` of its run directory: the
/// records of the rounds it completed, and the networks before round 1 and after the last one.
/// `progress.json` is written after the networks, so it never names one that is not there.
#[derive(Serialize, Deserialize)]
pub struct Checkpoint {
    pub rounds: Vec<RoundRecord>,
    pub metrics: Vec<(usize, EpochRecord)>,
    /// Layer-wise runs: every try so far.
    #[serde(default)]
    pub attempts: Vec<LayerAttempt>,
    /// Wall time so far, so that `wall_seconds` covers every attempt.
    pub seconds: f64,
}

impl Checkpoint {
    pub fn dir(run_dir: &Path) -> PathBuf {
        run_dir.join("checkpoints")
    }

    pub fn model_dir(run_dir: &Path, round: usize) -> PathBuf {
        Checkpoint::dir(run_dir).join(format!("round-{round}"))
    }

    pub fn last_round(&self) -> usize {
        self.rounds.last().map_or(0, |r| r.round)
    }

    pub fn read(run_dir: &Path) -> Result<Option<Checkpoint>> {
        let path = Checkpoint::dir(run_dir).join("progress.json");
        integrity::settle(&Checkpoint::dir(run_dir), "progress.json")?;
        if !path.is_file() {
            return Ok(None);
        }
        let text = integrity::read_text(&Checkpoint::dir(run_dir), "progress.json")?;
        let progress: Checkpoint = serde_json::from_str(&text).with_context(|| {
            format!("{}: not a coppice checkpoint; fix: delete checkpoints/ to train from the start", path.display())
        })?;
        Ok(Some(progress))
    }

    /// Saves the network after `rounds`' last round, then the records; drops the network of
    /// the round before, which nothing needs any more (round 0 stays: a resumed run starts its
    /// strategy from it).
    pub fn save(
        run_dir: &Path,
        net: &Network,
        rounds: &[RoundRecord],
        attempts: &[LayerAttempt],
        metrics: &MetricsLog,
        started: Instant,
    ) -> Result<()> {
        let round = rounds.last().map_or(0, |r| r.round);
        let dir = Checkpoint::model_dir(run_dir, round);
        create_dir_durable(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        save_model(net, &dir)?;
        let progress = Checkpoint {
            rounds: rounds.to_vec(),
            metrics: metrics.rows.clone(),
            attempts: attempts.to_vec(),
            seconds: started.elapsed().as_secs_f64(),
        };
        integrity::replace(&Checkpoint::dir(run_dir), "progress.json", serde_json::to_string(&progress)?.as_bytes())?;
        if round > 1 {
            let _ = std::fs::remove_dir_all(Checkpoint::model_dir(run_dir, round - 1));
        }
        Ok(())
    }

    /// A finished run has its model and summary; the checkpoints would only duplicate them.
    pub fn finished(run_dir: &Path) {
        let _ = std::fs::remove_dir_all(Checkpoint::dir(run_dir));
    }
}
