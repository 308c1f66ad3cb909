//! A training loader cut for data-parallel training: every optimizer step's batch, split into
//! one part per device.
//!
//! burn-train's multi-device strategy gives each device its own loader, made by
//! `DataLoader::slice` over a contiguous range of the items, so each device would see its own
//! half of the data, shuffled on its own, and the devices' batches together would make steps no
//! single-device run makes. Here every device's loader runs the whole shuffled order and keeps
//! its part of each batch, as PyTorch's `DistributedSampler` does: the devices' parts of step `i`
//! together are step `i` of the single-device training at the same batch size.
//!
//! Each device gets a loader of its own, made afresh: moving a loader to a device forks its
//! shuffling generator and moves the original on, so two devices' copies of one loader would
//! shuffle differently. Fresh loaders built alike, each moved once, shuffle as the
//! single-device training's loader does.

use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::DatasetError;
use burn::prelude::*;
use coppice_data::ImageBatch;

/// Builds the whole training loader, afresh at each call.
pub type NewLoader = Arc<dyn Fn() -> Arc<dyn DataLoader<ImageBatch>> + Send + Sync>;

pub struct ShardedLoader {
    new_whole: NewLoader,
    whole: Arc<dyn DataLoader<ImageBatch>>,
    parts: usize,
    /// This loader's part; `None` before burn-train slices it per device.
    part: Option<usize>,
}

impl ShardedLoader {
    pub fn new(new_whole: NewLoader, parts: usize) -> Self {
        let whole = new_whole();
        Self { new_whole, whole, parts: parts.max(1), part: None }
    }

    /// Rows `start..end` of a batch of `rows`, for part `part`: as even as the rows allow.
    fn rows(&self, part: usize, rows: usize) -> (usize, usize) {
        (part * rows / self.parts, (part + 1) * rows / self.parts)
    }
}

impl DataLoader<ImageBatch> for ShardedLoader {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<ImageBatch> + 'a> {
        match self.part {
            None => self.whole.iter(),
            Some(part) => Box::new(PartIterator { inner: self.whole.iter(), loader: self, part }),
        }
    }

    fn num_items(&self) -> usize {
        match self.part {
            None => self.whole.num_items(),
            Some(part) => {
                let (start, end) = self.rows(part, self.whole.num_items());
                end - start
            }
        }
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<ImageBatch>> {
        let whole = (self.new_whole)().to_device(device);
        Arc::new(ShardedLoader { new_whole: self.new_whole.clone(), whole, parts: self.parts, part: self.part })
    }

    /// burn-train's split asks for `parts` contiguous ranges of equal length (the last takes
    /// the rest): the range's position says which part it is.
    fn slice(&self, start: usize, _end: usize) -> Arc<dyn DataLoader<ImageBatch>> {
        let step = (self.whole.num_items() / self.parts).max(1);
        let part = (start / step).min(self.parts - 1);
        let (new_whole, whole) = (self.new_whole.clone(), self.whole.clone());
        Arc::new(ShardedLoader { new_whole, whole, parts: self.parts, part: Some(part) })
    }
}

struct PartIterator<'a> {
    inner: Box<dyn DataLoaderIterator<ImageBatch> + 'a>,
    loader: &'a ShardedLoader,
    part: usize,
}

impl Iterator for PartIterator<'_> {
    type Item = Result<ImageBatch, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = match self.inner.next()? {
            Ok(batch) => batch,
            Err(error) => return Some(Err(error)),
        };
        let rows = batch.targets.dims()[0];
        let (start, end) = self.loader.rows(self.part, rows);
        // Only a last batch smaller than the devices are many leaves a part empty.
        if start == end {
            return None;
        }
        Some(Ok(ImageBatch {
            images: batch.images.narrow(0, start, end - start),
            targets: batch.targets.narrow(0, start, end - start),
            loss_share: batch.loss_share * (end - start) as f32 / rows as f32,
        }))
    }
}

impl DataLoaderIterator<ImageBatch> for PartIterator<'_> {
    fn progress(&self) -> Progress {
        let whole = self.inner.progress();
        let share = |items: usize| self.loader.rows(self.part, items);
        let ((p0, p1), (t0, t1)) = (share(whole.items_processed), share(whole.items_total));
        Progress::new(p1 - p0, t1 - t0, whole.unit)
    }
}
