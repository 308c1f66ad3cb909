//! `coppice bench`: training and inference throughput, the project's speed baseline; `bench
//! --sparse` is in `sparse.rs`.

mod batches;
pub(crate) mod sparse;

use std::time::Instant;

use anyhow::{Result, anyhow};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, ModuleOptimizer};
use coppice_data::{Augment, ImageDataset};

use self::batches::Batches;
use coppice_models::{Architecture, Classifier, InputShape, ModelConfig, Network, Preset};
use coppice_prune::{Allocation, Criterion, MaskSet, Schedule, WeightPruner, WeightPruning};
use coppice_train::{Callback, Callbacks, OptimizerKind, TrainConfig, optimizer};

use crate::backend::BackendName;
use crate::data::Data;
use crate::progress::Steps;

pub struct BenchOptions {
    pub backends: Vec<BackendName>,
    pub models: Vec<String>,
    pub batch_sizes: Vec<usize>,
    /// Training is timed once per optimizer, each with the default `[train]` settings otherwise.
    pub optimizers: Vec<OptimizerKind>,
    /// Also time inference over the test set at [`INFERENCE_BATCH`].
    pub inference: bool,
    pub warmup_steps: usize,
    pub windows: usize,
    pub steps_per_window: usize,
    /// Also time training with 90 % per-layer masks held through every step, in windows
    /// interleaved with the unmasked ones so both see the same machine.
    pub masks: bool,
    /// Plain progress lines even in a terminal.
    pub plain: bool,
    /// Build each step's batch from the training samples in the timed step, as training's data
    /// loader does.
    pub loader: bool,
    /// With `loader`: augment the samples with this.
    pub augment: Augment,
}

/// What a row of the benchmark times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Train(OptimizerKind),
    /// Forward passes over the whole test set, without autodiff.
    Infer,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Train(OptimizerKind::Sgd) => "train-sgd",
            Phase::Train(OptimizerKind::Adam) => "train-adam",
            Phase::Infer => "infer",
        }
    }
}

/// The batch of inference rows: the test set in ten batches, as PyTorch's reference times it.
pub const INFERENCE_BATCH: usize = 1000;

pub struct BenchRow {
    pub phase: Phase,
    pub backend: BackendName,
    pub model: String,
    pub batch_size: usize,
    /// Median over the windows.
    pub samples_per_second: f64,
    pub min: f64,
    pub max: f64,
    /// Median samples/s with masks, when asked for.
    pub masked: Option<f64>,
    /// The median over windows of (plain rate / masked rate of the window that followed) - 1:
    /// each pair saw nearly the same machine, so drift in its load cancels out.
    pub mask_cost: Option<f64>,
}

/// The networks `--models` names, sized for MNIST as the benchmark's batches are: the papers'
/// LeNets, the default VGG and ResNet-20.
pub fn architecture_named(name: &str) -> Result<Architecture> {
    let kind = match name {
        "lenet300" => Preset::Mlp,
        "lenet5" => Preset::Lenet5,
        "vgg" => Preset::Vgg,
        "resnet20" => Preset::Resnet,
        other => return Err(anyhow!("unknown model {other:?} for --models; fix: lenet300, lenet5, vgg or resnet20")),
    };
    let mnist = InputShape { channels: 1, height: 28, width: 28 };
    ModelConfig::preset(kind).architecture(mnist, 10).map_err(|(field, problem)| anyhow!("{field}: {problem}"))
}

pub fn print_header(options: &BenchOptions) {
    let (windows, steps, warmup) = (options.windows, options.steps_per_window, options.warmup_steps);
    println!("samples/s: median of {windows} windows of {steps} steps after {warmup} warm-up steps");
    if options.loader {
        let augment = options.augment;
        let how = if augment.is_none() { String::new() } else { format!(", augmented ({augment:?})") };
        println!("train: batches built from the samples in each step{how}");
    }
    if options.inference {
        println!("infer: median of {windows} passes over the test set after one warm-up pass");
    }
    let masked_header = if options.masks { "   masked/s  mask cost" } else { "" };
    println!("phase       backend  model     batch  samples/s  (min-max){masked_header}");
}

pub fn row_line(r: &BenchRow) -> String {
    let masked = match (r.masked, r.mask_cost) {
        (Some(m), Some(cost)) => format!("  {m:>9.0}  {:>+8.1}%", cost * 100.0),
        _ => String::new(),
    };
    format!(
        "{:<11} {:<8} {:<9} {:>5}  {:>9.0}  ({:.0}-{:.0}){masked}",
        r.phase.label(),
        r.backend.as_str(),
        r.model,
        r.batch_size,
        r.samples_per_second,
        r.min,
        r.max
    )
}

/// Training steps on real MNIST batches, prepared before timing so that the figure is the cost of
/// forward, backward and optimizer step; with `inference`, forward passes over the test set. The
/// loss (the logits) is read at the end of each window so that lazy backends have finished the
/// work being timed.
pub fn bench(data: &Data, options: &BenchOptions, line: impl Fn(&BenchRow) -> String) -> Result<Vec<BenchRow>> {
    let per_model = options.optimizers.len() * options.batch_sizes.len() + usize::from(options.inference);
    let steps = Steps::start("bench", options.backends.len() * options.models.len() * per_model, options.plain);
    let report = |row: &BenchRow| steps.show(&line(row));
    let mut rows = Vec::new();
    for &backend in &options.backends {
        for model in &options.models {
            let architecture = architecture_named(model)?;
            for &optimizer in &options.optimizers {
                for &batch_size in &options.batch_sizes {
                    let row = bench_training(data, backend, model, &architecture, batch_size, optimizer, options)?;
                    report(&row);
                    rows.push(row);
                }
            }
            if options.inference {
                let row = bench_inference(data, backend, model, &architecture, options)?;
                report(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

fn bench_training(
    data: &Data,
    backend: BackendName,
    model: &str,
    architecture: &Architecture,
    batch_size: usize,
    optimizer: OptimizerKind,
    options: &BenchOptions,
) -> Result<BenchRow> {
    let plain_device = backend.device()?;
    let device = plain_device.clone().autodiff();
    device.seed(0);
    // Full batches only, so every step times the same amount of work.
    let count = (data.train.len() / batch_size).min(32);
    let batches = if options.loader {
        let dataset = ImageDataset::augmented(data.train.clone(), options.augment, 0);
        Batches::Loaded { dataset, batcher: data.batcher.clone(), batch_size, count, device: device.clone() }
    } else {
        Batches::Fixed(data.train_batches(batch_size, count, &device))
    };
    if batches.is_empty() {
        return Err(anyhow!("not enough training data for batch size {batch_size}"));
    }
    let config = TrainConfig { optimizer, ..TrainConfig::default() };
    let mut plain = Trainer::new(architecture.init(&device)?, None, &config);
    let mut masked = if !options.masks {
        None
    } else {
        let pruning = WeightPruning {
            criterion: Criterion::Magnitude,
            allocation: Allocation::Layer { target: 0.9, overrides: Default::default() },
            schedule: Schedule::OneShot,
            include_bias: false,
            seed: 0,
        };
        let pruner = WeightPruner::new(pruning, plain_device.clone());
        let net = pruner.prune_to(architecture.init(&device)?, &|t| t);
        Some(Trainer::new(net, Some(pruner.masks()), &config))
    };
    plain.steps(&batches, options.warmup_steps);
    if let Some(m) = masked.as_mut() {
        m.steps(&batches, options.warmup_steps);
    }
    let samples = (options.steps_per_window * batch_size) as f64;
    let (mut rates, mut masked_rates) = (Vec::new(), Vec::new());
    for _ in 0..options.windows {
        rates.push(samples / plain.timed_steps(&batches, options.steps_per_window));
        if let Some(m) = masked.as_mut() {
            masked_rates.push(samples / m.timed_steps(&batches, options.steps_per_window));
        }
    }
    let mut costs: Vec<f64> = rates.iter().zip(&masked_rates).map(|(plain, masked)| plain / masked - 1.0).collect();
    costs.sort_by(f64::total_cmp);
    rates.sort_by(f64::total_cmp);
    masked_rates.sort_by(f64::total_cmp);
    Ok(BenchRow {
        phase: Phase::Train(optimizer),
        backend,
        model: model.to_string(),
        batch_size,
        samples_per_second: median(&rates),
        min: rates[0],
        max: rates[rates.len() - 1],
        masked: (!masked_rates.is_empty()).then(|| median(&masked_rates)),
        mask_cost: (!costs.is_empty()).then(|| median(&costs)),
    })
}

/// The middle of sorted values.
fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

/// Passes over the test set at [`INFERENCE_BATCH`] on the plain device, after one pass of
/// warm-up; one window is one pass.
fn bench_inference(
    data: &Data,
    backend: BackendName,
    model: &str,
    architecture: &Architecture,
    options: &BenchOptions,
) -> Result<BenchRow> {
    let device = backend.device()?;
    device.seed(0);
    let batches = data.test_batches(INFERENCE_BATCH, &device);
    if batches.is_empty() {
        return Err(anyhow!("the test set is empty; fix: point --data at a directory with MNIST's test files"));
    }
    let samples: usize = batches.iter().map(|b| b.targets.dims()[0]).sum();
    let net = architecture.init(&device)?;
    let pass = || {
        let start = Instant::now();
        for batch in &batches {
            let _ = net.forward(batch.images.clone()).into_data();
        }
        start.elapsed().as_secs_f64()
    };
    pass();
    let mut rates: Vec<f64> = (0..options.windows).map(|_| samples as f64 / pass()).collect();
    rates.sort_by(f64::total_cmp);
    Ok(BenchRow {
        phase: Phase::Infer,
        backend,
        model: model.to_string(),
        batch_size: INFERENCE_BATCH,
        samples_per_second: median(&rates),
        min: rates[0],
        max: rates[rates.len() - 1],
        masked: None,
        mask_cost: None,
    })
}

/// A bare training loop with what training itself uses: the optimizer built from `[train]`
/// settings (by default SGD with momentum and weight decay), folding in the masks when there are
/// any, and the callbacks after each step. The network moves through the step as it does in
/// training, so that the optimizer owns its tensors and may update them in place.
struct Trainer {
    net: Option<Network>,
    optim: ModuleOptimizer,
    callbacks: Callbacks,
    lr: f64,
    cursor: usize,
}

impl Trainer {
    fn new(net: Network, masks: Option<MaskSet>, config: &TrainConfig) -> Self {
        let callbacks = Callbacks::new(masks.into_iter().map(|m| Box::new(m) as Box<dyn Callback>).collect());
        let optim = optimizer(config, &net, callbacks.update_masks().as_ref());
        Self { net: Some(net), optim, callbacks, lr: config.lr, cursor: 0 }
    }

    /// Returns the last loss, read back so that lazy backends finish the work being timed.
    fn steps(&mut self, batches: &Batches, steps: usize) -> f64 {
        let mut last = None;
        for _ in 0..steps {
            let batch = batches.get(self.cursor);
            self.cursor += 1;
            let net = self.net.take().expect("the network is back after every step");
            let logits = net.forward(batch.images.clone());
            let loss = CrossEntropyLossConfig::new().init(&logits.device()).forward(logits, batch.targets.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            let net = self.optim.step(self.lr, net, grads);
            self.net = Some(self.callbacks.after_step(net));
            last = Some(loss);
        }
        last.map_or(0.0, |l| l.into_scalar::<f64>())
    }

    fn timed_steps(&mut self, batches: &Batches, steps: usize) -> f64 {
        let start = Instant::now();
        self.steps(batches, steps);
        start.elapsed().as_secs_f64()
    }
}
