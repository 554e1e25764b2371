//! The training loop of train.py, composed from the other pieces: data, model, loss,
//! optimiser groups with warmup and LR schedule, gradient accumulation to the nominal
//! batch of 64, EMA, validation after each epoch, results.csv, checkpoints and resume.
//! The loop reports [`TrainEvent`]s; the CLI renders them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::autoanchor::AutoAnchorError;
use super::criterion::Criterion;
use super::diagnostics::{
    self, probe, probe_images, EpochDiagnostics, GradNorms, DIAGNOSTICS_FILE,
};
use super::ema::ModelEma;
use super::hyp::{Hyp, HypError, DEFAULT_NAME as DEFAULT_HYP, DEFAULT_V8_NAME as DEFAULT_V8_HYP};
use super::loss::{scale_loss_gains, Assignment, LossError, LossGains, MissingHyp, YoloLoss};
use super::loss_v8::V8Loss;
use super::optim::{auto_optimizer, Optimizer, OptimizerKind};
use super::results::{append_results, truncate_epochs, ResultsLayout, ResultsRow};
use super::schedule::{LrSchedule, Warmup};
use crate::act::{ActSpec, SpecError};
use crate::data::dataset::{DataConfig, DataConfigError, Dataset, DatasetError, Split};
use crate::data::loader::{Loader, LoaderConfig, LoaderError, RectBatches};
use crate::eval::val::{validate, ValError, ValLoss, ValOptions, ValOutcome};
use crate::model::build::{BuildError, Model};
use crate::model::config::{ConfigError, ModelConfig};
use crate::model::input::{check_img_size, check_memory, InputSizeError, Workload};
use crate::model::weights::{
    read_tensors_with, read_weights, save_tensors, WeightsError, STATE_KEY,
};
use crate::ops::portable;
use crate::plot::batch::{plot_batch, PlotBatchError};
use crate::plot::results::{plot_results, ResultsPlotError};
use crate::util::fs::{increment_path, write_atomic, FileError};

/// Everything a run is started with; saved in the run (opt.yaml) and in its checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub cfg: String,
    pub data: PathBuf,
    pub act: Option<String>,
    pub hyp: String,
    pub weights: Option<PathBuf>,
    pub epochs: usize,
    pub batch: usize,
    pub imgsz: usize,
    pub optimizer: OptimizerKind,
    pub cos_lr: bool,
    pub project: PathBuf,
    pub name: String,
    pub exist_ok: bool,
    pub workers: usize,
    pub seed: u64,
    pub patience: usize,
    pub freeze: Vec<usize>,
    pub noautoanchor: bool,
    /// Rectangular training batches (train.py's `--rect`): sorted by aspect ratio, no
    /// shuffling, no mosaic.
    #[serde(default)]
    pub rect: bool,
    /// Mixed precision on a GPU: convolutions in bfloat16 (train.py's `amp`, which it
    /// also turns off on the CPU).
    #[serde(default)]
    pub amp: bool,
    /// Epochs at the end trained without mosaic; None: the model family's default
    /// (ultralytics 8's 10 for anchor-free models, none for YOLOv5 and YOLOv7).
    #[serde(default)]
    pub close_mosaic: Option<usize>,
}

/// How a run starts: afresh, or continuing a stopped one.
#[derive(Debug, Clone)]
pub enum TrainStart {
    New(Box<TrainOptions>),
    /// A run's folder, its `weights/` folder or a file in it. The run keeps its own
    /// options, except `epochs` when given: a finished run can be extended that way.
    Resume {
        path: PathBuf,
        epochs: Option<usize>,
    },
}

/// What happens, for the CLI to show.
#[derive(Debug)]
pub enum TrainEvent<'a> {
    Message(String),
    EpochStart {
        epoch: usize,
        epochs: usize,
        batches: usize,
        /// The loss parts' names (box, obj, cls; or box, cls, dfl).
        parts: [&'static str; 3],
    },
    Batch {
        epoch: usize,
        index: usize,
        batches: usize,
        mean_loss: [f32; 3],
        instances: usize,
        size: usize,
    },
    Validating {
        index: usize,
        batches: usize,
    },
    EpochEnd {
        epoch: usize,
        val: &'a ValOutcome,
        seconds: f64,
    },
}

#[derive(Debug)]
pub struct TrainOutcome {
    pub dir: PathBuf,
    pub names: Vec<String>,
    pub best_fitness: f64,
    pub epochs_run: usize,
    pub seconds_per_epoch: f64,
    /// The final validation of the best weights (none when paused).
    pub final_val: Option<ValOutcome>,
    /// Stopped at the epoch `train_until` was given, resumable with the same schedule.
    pub paused: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Before the first step: the same for every run of an experiment.
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("{}: nothing to resume: no checkpoint (weights/{STATE_FILE} or weights/{LAST_FILE}); a run stopped before its first epoch ended must be started again without --resume", dir.display())]
    NoCheckpoint { dir: PathBuf },
    #[error("--epochs {requested}: {} has already trained {done} epochs; to extend it, pass more than {done}", dir.display())]
    EpochsTooFew {
        dir: PathBuf,
        requested: usize,
        done: usize,
    },
    #[error("the loss became {value} at epoch {epoch}, iteration {iteration}: training stopped; {}", match checkpoint { Some(p) => format!("the last good checkpoint is {}", p.display()), None => "no epoch had finished, so there is no checkpoint".to_string() })]
    NonFinite {
        value: f32,
        epoch: usize,
        iteration: usize,
        checkpoint: Option<PathBuf>,
    },
    #[error("training")]
    Step(#[from] StepError),
}

/// What stops a run before it trains: its inputs.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("--hyp")]
    Hyp(#[from] HypError),
    #[error("--data")]
    Data(#[from] DataConfigError),
    #[error("{split} split")]
    Dataset {
        split: &'static str,
        #[source]
        source: DatasetError,
    },
    #[error("{split} split")]
    Loader {
        split: &'static str,
        #[source]
        source: LoaderError,
    },
    #[error("--act")]
    Act(#[from] SpecError),
    #[error("--cfg")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Model(#[from] BuildError),
    #[error("--imgsz")]
    InputSize(#[from] InputSizeError),
    #[error("--weights")]
    Weights(#[source] WeightsError),
    #[error("--weights {}: none of its {tensors} tensors fits this model (names or shapes differ); was it made with another config, nc or activation?", path.display())]
    NothingTransferred { path: PathBuf, tensors: usize },
    #[error("--hyp {hyp}")]
    HypKeys {
        hyp: String,
        #[source]
        source: MissingHyp,
    },
    #[error("--freeze: {n} would freeze layers 0 to {}, but the model's layers are 0 to {last}: nothing would be left to train; give at most {last}", n - 1)]
    FreezeAll { n: usize, last: usize },
    #[error("--freeze: layer {layer} does not exist; the model's layers are 0 to {last}")]
    FreezeMissing { layer: usize, last: usize },
    #[error("loss")]
    Loss(#[from] LossError),
    #[error("AutoAnchor")]
    AutoAnchor(#[from] AutoAnchorError),
    #[error("--resume {}: no such run folder or file", .0.display())]
    NoRun(PathBuf),
    #[error("--resume")]
    Checkpoint(#[source] WeightsError),
    #[error("{}: not an actyolo training checkpoint (no training state in it)", .0.display())]
    NotACheckpoint(PathBuf),
    #[error("{}: its training state", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// What stops a run while it trains.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error(transparent)]
    Loss(#[from] LossError),
    #[error(transparent)]
    Val(#[from] ValError),
    #[error(transparent)]
    Results(#[from] ResultsPlotError),
    #[error(transparent)]
    Batch(#[from] PlotBatchError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("loading the EMA weights")]
    Load(#[from] crate::model::build::LoadError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("the training state")]
    State(#[from] serde_json::Error),
    #[error("the variable store's lock is poisoned (a thread panicked while holding it)")]
    Poisoned,
}

/// Counters a checkpoint carries besides the tensors, so `--resume` continues exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    options: TrainOptions,
    /// The last completed epoch.
    epoch: usize,
    best_fitness: f64,
    best_epoch: usize,
    optimizer_steps: u64,
    ema_updates: u64,
    /// Global iteration of the last optimiser step (-1 before the first, as train.py).
    last_opt_step: i64,
}

const NOMINAL_BATCH: usize = 64;
/// The resume state: raw weights, EMA, optimiser state, pending gradients and counters.
pub const STATE_FILE: &str = "last.state.safetensors";
/// The EMA weights of the last epoch (what val and detect use), with the counters too.
pub const LAST_FILE: &str = "last.safetensors";
pub const BEST_FILE: &str = "best.safetensors";

/// The run under `project` whose checkpoint was written last, for a bare `--resume` (as
/// ultralytics' `get_latest_run`).
pub fn latest_run(project: &Path) -> Option<PathBuf> {
    let runs = std::fs::read_dir(project).ok()?;
    runs.filter_map(|e| e.ok())
        .filter_map(|e| {
            let weights = e.path().join("weights");
            let modified = [STATE_FILE, LAST_FILE]
                .iter()
                .filter_map(|f| weights.join(f).metadata().and_then(|m| m.modified()).ok())
                .max()?;
            Some((modified, e.path()))
        })
        .max()
        .map(|(_, run)| run)
}

/// The run folder a `--resume` path names: the run itself, its `weights/` folder, or a
/// file in `weights/`.
fn run_folder(path: &Path) -> PathBuf {
    let weights = if path.is_file() {
        path.parent().unwrap_or(Path::new("."))
    } else {
        path
    };
    match weights.file_name() {
        Some(name) if name == "weights" && !weights.join("weights").is_dir() => {
            weights.parent().unwrap_or(Path::new(".")).to_path_buf()
        }
        _ => weights.to_path_buf(),
    }
}

/// A stopped run's saved state: its tensors under `raw/`, `ema/`, `optim/` and `grad/`.
struct Checkpoint {
    dir: PathBuf,
    tensors: HashMap<String, candle_core::Tensor>,
    state: TrainState,
}

impl Checkpoint {
    /// The resume state, or, when it is missing, the counters and EMA weights that
    /// last.safetensors carries (the optimiser then starts afresh).
    fn open(path: &Path, on: &mut dyn FnMut(TrainEvent)) -> Result<Checkpoint, TrainError> {
        if !path.exists() {
            return Err(SetupError::NoRun(path.to_path_buf()).into());
        }
        let dir = run_folder(path);
        let weights = dir.join("weights");
        let (state_file, last_file) = (weights.join(STATE_FILE), weights.join(LAST_FILE));
        let read = |file: &Path| -> Result<_, SetupError> {
            let (tensors, state) =
                read_tensors_with(file, STATE_KEY).map_err(SetupError::Checkpoint)?;
            let state = state.ok_or_else(|| SetupError::NotACheckpoint(file.to_path_buf()))?;
            let state: TrainState =
                serde_json::from_str(&state).map_err(|source| SetupError::State {
                    path: file.to_path_buf(),
                    source,
                })?;
            Ok((tensors, state))
        };
        if state_file.is_file() {
            let (tensors, state) = read(&state_file)?;
            return Ok(Checkpoint {
                dir,
                tensors,
                state,
            });
        }
        if last_file.is_file() {
            let (ema, state) = read(&last_file)?;
            on(TrainEvent::Message(format!(
                "WARNING ⚠️ {} is missing: resuming from the EMA weights of {} (epoch {}) with a fresh optimiser; the run will not match an uninterrupted one exactly",
                state_file.display(),
                last_file.display(),
                state.epoch
            )));
            let tensors = ema
                .into_iter()
                .flat_map(|(k, v)| [(format!("raw/{k}"), v.clone()), (format!("ema/{k}"), v)])
                .collect();
            return Ok(Checkpoint {
                dir,
                tensors,
                state,
            });
        }
        Err(TrainError::NoCheckpoint { dir })
    }
}

/// The options with every input path made absolute, so the run can be resumed from any
/// folder. Shipped names (`yolov5n.yaml`, `hyp.scratch-low.yaml`) stay names.
fn absolute_paths(options: &TrainOptions) -> Result<TrainOptions, SetupError> {
    let absolute = |path: &Path| {
        std::path::absolute(path).map_err(FileError::new(path, "cannot make the path absolute"))
    };
    let file_or_name = |name: &str| -> Result<String, SetupError> {
        let path = Path::new(name);
        Ok(if path.is_file() {
            absolute(path)?.display().to_string()
        } else {
            name.to_string()
        })
    };
    Ok(TrainOptions {
        cfg: file_or_name(&options.cfg)?,
        hyp: file_or_name(&options.hyp)?,
        data: absolute(&options.data)?,
        weights: options.weights.as_deref().map(absolute).transpose()?,
        ..options.clone()
    })
}

/// Trains from scratch or from `--weights`, or continues a stopped run, on `device`.
pub fn train(
    start: &TrainStart,
    device: &Device,
    on: &mut dyn FnMut(TrainEvent),
) -> Result<TrainOutcome, TrainError> {
    train_until(start, None, device, on)
}

/// [`train`], pausing once `pause_after` epochs are done (with their checkpoint): the
/// schedule stays that of the run's full `epochs`, so resuming it later gives the run an
/// uninterrupted one would (`compare --screen` trains its rungs this way).
pub fn train_until(
    start: &TrainStart,
    pause_after: Option<usize>,
    device: &Device,
    on: &mut dyn FnMut(TrainEvent),
) -> Result<TrainOutcome, TrainError> {
    let (options, checkpoint) = match start {
        TrainStart::New(options) => (absolute_paths(options).map_err(TrainError::Setup)?, None),
        TrainStart::Resume { path, epochs } => {
            let checkpoint = Checkpoint::open(path, on)?;
            let mut options = checkpoint.state.options.clone();
            let done = checkpoint.state.epoch + 1;
            let dir = checkpoint.dir.clone();
            match *epochs {
                Some(requested) if requested <= done => {
                    return Err(TrainError::EpochsTooFew {
                        dir,
                        requested,
                        done,
                    })
                }
                Some(requested) => {
                    if requested != options.epochs {
                        on(TrainEvent::Message(format!(
                            "--epochs {requested}: the run now trains to {requested} epochs (it was started with {})",
                            options.epochs
                        )));
                    }
                    options.epochs = requested;
                }
                // Finishes what a kill in the last epoch's save left undone (last, best,
                // the final validation), with nothing more to train.
                None if done >= options.epochs => on(TrainEvent::Message(format!(
                    "{} has finished its {done} epochs: nothing left to train (to train it longer, pass --epochs with more than {done})",
                    dir.display()
                ))),
                None => {}
            }
            (options, Some(checkpoint))
        }
    };
    if options.amp && device.is_cpu() {
        on(TrainEvent::Message(
            "--amp: mixed precision runs on a GPU; on the CPU this run trains in FP32".into(),
        ));
    }
    let amp = options.amp && !device.is_cpu();
    portable::set_mixed_precision(amp.then_some(DType::BF16));
    let run = Run::prepare(
        &options,
        checkpoint.as_ref().map(|c| c.dir.as_path()),
        device,
        on,
    )
    .map_err(TrainError::Setup)?;
    run.execute(checkpoint, pause_after, on)
}

/// A prepared run: folders, data, model, loss and hyperparameters.
struct Run {
    options: TrainOptions,
    dir: PathBuf,
    hyp: Hyp,
    config: ModelConfig,
    names: Vec<String>,
    train_loader: Loader,
    val_loader: Loader,
    model: Model,
    eval_model: Model,
    /// The validation images the diagnostics probe each epoch.
    probe_images: Option<Tensor>,
    /// The training loss (OTA with `loss_ota: 1`) and the validation loss (YOLOv5's for
    /// anchor-based models, ultralytics 8's for anchor-free ones).
    train_loss: Criterion,
    loss: Criterion,
    /// The optimiser and its momentum (Adam's β₁), `auto` resolved.
    optimizer: (OptimizerKind, f64),
    /// Epochs at the end trained without mosaic (ultralytics 8's `close_mosaic`).
    close_mosaic: usize,
    /// results.csv's layout: YOLOv5's, or ultralytics 8's for anchor-free models.
    layout: ResultsLayout,
}

impl Run {
    fn prepare(
        options: &TrainOptions,
        resume_dir: Option<&Path>,
        device: &Device,
        on: &mut dyn FnMut(TrainEvent),
    ) -> Result<Run, SetupError> {
        let dir = match resume_dir {
            Some(dir) => dir.to_path_buf(),
            None => increment_path(&options.project.join(&options.name), options.exist_ok),
        };
        let weights_dir = dir.join("weights");
        std::fs::create_dir_all(&weights_dir)
            .map_err(FileError::new(&weights_dir, "cannot create the folder"))?;
        let data = DataConfig::load(&options.data)?;
        let names = data.names.clone();
        let act = options.act.as_deref().map(ActSpec::parse).transpose()?;
        let config = ModelConfig::load(&options.cfg).and_then(|c| c.with_nc(names.len()))?;
        let build = || {
            Model::new_on(
                &config,
                act.as_ref(),
                options.seed,
                Some(names.clone()),
                device,
            )
        };
        let (model, eval_model) = (build()?, build()?);
        let anchor_free = model.head.anchored().is_none();
        // Anchor-free models train with ultralytics 8's defaults unless a file is named.
        let hyp_name = match options.hyp.as_str() {
            DEFAULT_HYP if anchor_free => DEFAULT_V8_HYP,
            name => name,
        };
        let mut hyp = Hyp::load(hyp_name)?;
        for note in hyp.ignored() {
            on(TrainEvent::Message(note));
        }
        let hyp_keys = |source| SetupError::HypKeys {
            hyp: hyp_name.to_string(),
            source,
        };
        let anchor_t = match model.head.anchored() {
            Some(_) => Some(hyp.loss.anchor_t().map_err(hyp_keys)?),
            None => None,
        };
        let size = check_img_size(options.imgsz, model.max_stride(), 2 * model.max_stride())?;
        if let Some(warning) = size.warning() {
            on(TrainEvent::Message(warning));
        }
        let imgsz = size.used;
        check_memory(&model, imgsz, options.batch, Workload::Training)?;
        if let (Some(weights), None) = (&options.weights, resume_dir) {
            let (transferred, total) = transfer(&model, weights)?;
            on(TrainEvent::Message(format!(
                "Transferred {transferred}/{total} items from {}",
                weights.display()
            )));
        }
        let mut load_split = |split: Split| -> Result<Loader, SetupError> {
            let dataset =
                Dataset::from_config(&data, split).map_err(|source| SetupError::Dataset {
                    split: split.key(),
                    source,
                })?;
            for w in &dataset.report.warnings {
                on(TrainEvent::Message(w.to_string()));
            }
            on(TrainEvent::Message(format!(
                "{}: {}",
                split.key(),
                dataset.report.summary()
            )));
            let config = LoaderConfig {
                imgsz: imgsz as u32,
                batch_size: options.batch,
                workers: options.workers,
                seed: options.seed,
                rect: options.rect.then_some(RectBatches {
                    stride: model.max_stride() as u32,
                    pad: 0.0,
                }),
                ..LoaderConfig::default()
            };
            if let (Split::Train, false, None, Some(anchor_t)) =
                (split, options.noautoanchor, resume_dir, anchor_t)
            {
                auto_anchor(&model, &dataset, imgsz, options.seed, anchor_t, on)?;
            }
            let dataset = Arc::new(dataset);
            let loader = match split {
                Split::Train => Loader::train(dataset, &hyp.augment, config),
                // As train.py's validation: twice the batch, rectangular batches, pad 0.5.
                _ => Loader::val(
                    dataset,
                    LoaderConfig {
                        batch_size: options.batch * 2,
                        rect: Some(RectBatches {
                            stride: model.max_stride() as u32,
                            pad: 0.5,
                        }),
                        ..config
                    },
                ),
            };
            loader.map_err(|source| SetupError::Loader {
                split: split.key(),
                source,
            })
        };
        let train_loader = load_split(Split::Train)?;
        let val_loader = load_split(Split::Val)?;
        let probe_images = first_val_images(&val_loader)?;
        let (train_loss, loss) = match model.head.anchored() {
            Some(detect) => {
                let base = LossGains::from_hyp(&hyp.loss).map_err(hyp_keys)?;
                let gains = scale_loss_gains(&base, detect.strides.len(), names.len(), imgsz);
                let loss = YoloLoss::new(gains, names.len(), &detect.anchors)?;
                let assignment = if hyp.uses_ota() {
                    Assignment::Ota {
                        strides: detect.strides.iter().map(|&s| s as f32).collect(),
                    }
                } else {
                    Assignment::Yolov5
                };
                let train_loss = loss.clone().with_assignment(assignment)?;
                (Criterion::Anchors(train_loss), Criterion::Anchors(loss))
            }
            None => {
                // ultralytics 8 uses its gains as they are (no scaling by levels or size).
                let gains = hyp.loss.v8_gains().map_err(hyp_keys)?;
                let reg_max = model.config.reg_max;
                let loss = V8Loss::new(names.len(), reg_max, model.head.strides(), gains);
                (
                    Criterion::AnchorFree(loss.clone()),
                    Criterion::AnchorFree(loss),
                )
            }
        };
        let optimizer = match (options.optimizer, anchor_free) {
            (OptimizerKind::Auto, false) => (OptimizerKind::Sgd, hyp.optim.momentum),
            (OptimizerKind::Auto, true) => {
                let images = train_loader.dataset().len();
                let iterations = images.div_ceil(options.batch.max(NOMINAL_BATCH)) * options.epochs;
                let choice = auto_optimizer(iterations, names.len());
                on(TrainEvent::Message(format!(
                    "optimizer: 'optimizer=auto' found, ignoring 'lr0={}' and 'momentum={}' and determining best 'optimizer', 'lr0' and 'momentum' automatically... {}(lr={}, momentum={})",
                    hyp.optim.lr0,
                    hyp.optim.momentum,
                    choice.kind.name(),
                    choice.lr0,
                    choice.momentum
                )));
                hyp.optim.lr0 = choice.lr0;
                hyp.optim.warmup_bias_lr = choice.warmup_bias_lr;
                (choice.kind, choice.momentum)
            }
            (kind, _) => (kind, hyp.optim.momentum),
        };
        let close_mosaic = match options.close_mosaic {
            Some(n) => n,
            None if anchor_free => 10,
            None => 0,
        };
        let layout = if anchor_free {
            ResultsLayout::Ultralytics8
        } else {
            ResultsLayout::Yolov5
        };
        write_atomic(
            &dir.join("hyp.yaml"),
            serde_yaml::to_string(&hyp).unwrap_or_default().as_bytes(),
        )?;
        let options = TrainOptions {
            imgsz,
            ..options.clone()
        };
        write_atomic(
            &dir.join("opt.yaml"),
            serde_yaml::to_string(&options)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        Ok(Run {
            options,
            dir,
            hyp,
            config,
            names,
            train_loader,
            val_loader,
            model,
            eval_model,
            probe_images,
            train_loss,
            loss,
            optimizer,
            close_mosaic,
            layout,
        })
    }

    fn execute(
        mut self,
        checkpoint: Option<Checkpoint>,
        pause_after: Option<usize>,
        on: &mut dyn FnMut(TrainEvent),
    ) -> Result<TrainOutcome, TrainError> {
        let o = &self.options;
        let batches = self.train_loader.len();
        let accumulate_nominal = ((NOMINAL_BATCH as f64 / o.batch as f64).round() as usize).max(1);
        let weight_decay = self.hyp.optim.weight_decay * (o.batch * accumulate_nominal) as f64
            / NOMINAL_BATCH as f64;
        let vars = self.model.vars().var_map().clone();
        let (kind, momentum) = self.optimizer;
        let mut optimizer = Optimizer::new(kind, &vars, self.hyp.optim.lr0, momentum, weight_decay)
            .map_err(StepError::from)?;
        let layers =
            frozen_layers(&o.freeze, self.config.layers.len()).map_err(TrainError::Setup)?;
        let frozen = freeze(&mut optimizer, &layers);
        if !layers.is_empty() {
            let shown: Vec<String> = layers.iter().map(usize::to_string).collect();
            on(TrainEvent::Message(format!(
                "Freezing layers {} ({} parameter tensors; BatchNorm running statistics still update, as in ultralytics)",
                shown.join(" "),
                frozen.len()
            )));
        }
        let schedule = if o.cos_lr {
            LrSchedule::Cosine {
                epochs: o.epochs,
                lrf: self.hyp.optim.lrf,
            }
        } else {
            LrSchedule::Linear {
                epochs: o.epochs,
                lrf: self.hyp.optim.lrf,
            }
        };
        let warmup = Warmup::new(
            self.hyp.optim.warmup_epochs,
            batches,
            self.hyp.optim.warmup_bias_lr,
            self.hyp.optim.warmup_momentum,
            self.hyp.optim.momentum,
        );
        let mut ema = ModelEma::new(&vars, 0).map_err(StepError::from)?;
        // A frozen tensor's average is the tensor itself: skipping it keeps it bit-exact.
        ema.frozen = frozen;
        let mut state = TrainState {
            options: o.clone(),
            epoch: 0,
            best_fitness: 0.0,
            best_epoch: 0,
            optimizer_steps: 0,
            ema_updates: 0,
            last_opt_step: -1,
        };
        let mut start_epoch = 0;
        let mut pending = HashMap::new();
        if let Some(checkpoint) = checkpoint {
            let saved = checkpoint.state;
            pending = restore(
                &self.model,
                &mut optimizer,
                &mut ema,
                &checkpoint.tensors,
                &saved,
            )?;
            start_epoch = saved.epoch + 1;
            truncate_epochs(
                &self.dir.join("results.csv"),
                saved.epoch + self.layout.first_epoch(),
            )
            .map_err(StepError::from)?;
            truncate_epochs(&self.dir.join(DIAGNOSTICS_FILE), saved.epoch)
                .map_err(StepError::from)?;
            on(TrainEvent::Message(format!(
                "Resuming {} from epoch {start_epoch}",
                self.dir.display()
            )));
            state = TrainState {
                options: o.clone(),
                ..saved
            };
            // The state is written first each epoch: a kill before last or best were
            // written leaves them a step behind; they are made from it again here.
            self.save_weights(&ema, &state, state.best_epoch == state.epoch)?;
        }
        let results = self.dir.join("results.csv");
        let diagnostics_csv = self.dir.join(DIAGNOSTICS_FILE);
        let mut grad_norms = GradNorms::new(optimizer.params());
        let mut seconds = Vec::new();
        // Gradients accumulated since the last optimiser step carry over epoch ends.
        let mut grads = pending;
        let mut stopped_early = false;
        let close_at = o.epochs.saturating_sub(self.close_mosaic);
        let mut mosaic_closed = false;
        let started_training = Instant::now();
        for epoch in start_epoch..o.epochs {
            if pause_after.is_some_and(|p| epoch >= p) {
                break;
            }
            if self.close_mosaic > 0 && epoch >= close_at && !mosaic_closed {
                on(TrainEvent::Message("Closing dataloader mosaic".into()));
                self.train_loader = self
                    .train_loader
                    .without_mosaic()
                    .map_err(StepError::from)?;
                mosaic_closed = true;
            }
            let o = &self.options;
            let started = Instant::now();
            let train_loss = self.train_epoch(
                epoch,
                &mut optimizer,
                &mut ema,
                &mut grads,
                &mut grad_norms,
                &mut state,
                schedule,
                warmup,
                accumulate_nominal,
                on,
            )?;
            let lrs: Vec<f64> = optimizer.groups.iter().map(|g| g.lr).collect();
            self.eval_model
                .load_state_dict(&ema.tensors, true)
                .map_err(StepError::from)?;
            let val = validate(
                &self.eval_model,
                &self.val_loader,
                &ValOptions::default(),
                Some(&self.loss as &dyn ValLoss),
                |index, batches| on(TrainEvent::Validating { index, batches }),
            )
            .map_err(StepError::from)?;
            let probed = Instant::now();
            let probes = match &self.probe_images {
                Some(images) => probe(&self.eval_model, images).map_err(StepError::from)?,
                None => Vec::new(),
            };
            let probe_time = probed.elapsed();
            let (norms, norms_time) = grad_norms.take();
            state.epoch = epoch;
            state.optimizer_steps = optimizer.steps;
            state.ema_updates = ema.updates;
            let fitness = val.fitness();
            let improved = fitness >= state.best_fitness;
            if improved {
                state.best_fitness = fitness;
                state.best_epoch = epoch;
            }
            // results.csv first: a kill after it repeats the epoch, whose row is then dropped.
            let row = ResultsRow {
                epoch,
                seconds: started_training.elapsed().as_secs_f64(),
                train_loss: &train_loss,
                val: &val,
                lrs: &lrs,
            };
            append_results(&results, self.layout, &self.train_loss, &row)
                .map_err(StepError::from)?;
            diagnostics::append(
                &diagnostics_csv,
                &EpochDiagnostics {
                    epoch,
                    probes: &probes,
                    grad_norms: &norms,
                    cost: probe_time + norms_time,
                    epoch_time: started.elapsed(),
                },
            )
            .map_err(StepError::from)?;
            plot_results(&results, &self.dir.join("results.png")).map_err(StepError::from)?;
            self.save_state(&ema, &optimizer, &grads, &state)?;
            self.save_weights(&ema, &state, improved)?;
            seconds.push(started.elapsed().as_secs_f64());
            on(TrainEvent::EpochEnd {
                epoch,
                val: &val,
                seconds: started.elapsed().as_secs_f64(),
            });
            if o.patience > 0 && epoch - state.best_epoch >= o.patience {
                on(TrainEvent::Message(format!(
                    "Stopping early: no improvement for {} epochs (best at epoch {})",
                    o.patience, state.best_epoch
                )));
                stopped_early = true;
                break;
            }
        }
        let done = state.epoch + 1;
        let paused = pause_after.is_some_and(|p| done >= p) && done < o.epochs && !stopped_early;
        let final_val = if paused { None } else { self.validate_best()? };
        Ok(TrainOutcome {
            dir: self.dir.clone(),
            names: self.names.clone(),
            best_fitness: state.best_fitness,
            epochs_run: seconds.len(),
            seconds_per_epoch: seconds.iter().sum::<f64>() / seconds.len().max(1) as f64,
            final_val,
            paused,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn train_epoch(
        &self,
        epoch: usize,
        optimizer: &mut Optimizer,
        ema: &mut ModelEma,
        grads: &mut HashMap<String, candle_core::Tensor>,
        grad_norms: &mut GradNorms,
        state: &mut TrainState,
        schedule: LrSchedule,
        warmup: Warmup,
        accumulate_nominal: usize,
        on: &mut dyn FnMut(TrainEvent),
    ) -> Result<[f32; 3], TrainError> {
        let o = &self.options;
        let batches = self
            .train_loader
            .epoch(epoch as u64)
            .map_err(StepError::from)?;
        let n = batches.len();
        on(TrainEvent::EpochStart {
            epoch,
            epochs: o.epochs,
            batches: n,
            parts: self.train_loss.part_names(),
        });
        let target_lr = self.hyp.optim.lr0 * schedule.factor(epoch as f64);
        let mut sums = [0f32; 3];
        let mut mean_loss = [0f32; 3];
        for (i, batch) in batches.enumerate() {
            let batch = batch.map_err(StepError::from)?;
            let ni = i + n * epoch;
            if epoch == 0 && i == 0 {
                plot_batch(
                    &batch.images,
                    &batch.targets,
                    &batch.paths,
                    &self.names,
                    &self.dir.join("train_batch0.jpg"),
                )
                .map_err(StepError::from)?;
            }
            let accumulate = match warmup.at(ni, target_lr, false) {
                Some(_) => warmup.accumulate(ni, NOMINAL_BATCH, o.batch),
                None => accumulate_nominal,
            };
            // torch's Adam groups have no `momentum` (β₁ stays), so warmup leaves it.
            let warms_momentum = optimizer.kind == OptimizerKind::Sgd;
            for group in optimizer.groups.iter_mut() {
                let is_bias = group.kind == super::optim::GroupKind::Bias;
                let (lr, momentum) = warmup
                    .at(ni, target_lr, is_bias)
                    .unwrap_or((target_lr, self.hyp.optim.momentum));
                group.lr = lr;
                if warms_momentum {
                    group.momentum = momentum;
                }
            }
            let parts = crate::util::runtime::on_pool(|| {
                let preds = self
                    .model
                    .forward(&batch.images, true)
                    .map_err(StepError::from)?;
                let (total, parts) = self
                    .train_loss
                    .compute(&preds, &batch.targets)
                    .map_err(StepError::from)?;
                let value = total.to_scalar::<f32>().map_err(StepError::from)?;
                if !value.is_finite() {
                    let last = self.dir.join("weights").join("last.safetensors");
                    return Err(TrainError::NonFinite {
                        value,
                        epoch,
                        iteration: i,
                        checkpoint: last.is_file().then_some(last),
                    });
                }
                let g = total.backward().map_err(StepError::from)?;
                optimizer.accumulate(grads, &g).map_err(StepError::from)?;
                grad_norms.add(&g).map_err(StepError::from)?;
                if ni as i64 - state.last_opt_step >= accumulate as i64 {
                    optimizer.step(grads, 10.0).map_err(StepError::from)?;
                    grads.clear();
                    ema.update(self.model.vars().var_map())
                        .map_err(StepError::from)?;
                    state.last_opt_step = ni as i64;
                }
                Ok(parts)
            })?;
            sums.iter_mut().zip(parts).for_each(|(s, p)| *s += p);
            mean_loss = sums.map(|s| s / (i + 1) as f32);
            on(TrainEvent::Batch {
                epoch,
                index: i + 1,
                batches: n,
                mean_loss,
                instances: batch.targets.dim(0).unwrap_or(0),
                size: o.imgsz,
            });
        }
        Ok(mean_loss)
    }

    /// The resume state: everything `--resume` needs to continue exactly. Written before
    /// last and best, which can be made from it again.
    fn save_state(
        &self,
        ema: &ModelEma,
        optimizer: &Optimizer,
        pending: &HashMap<String, candle_core::Tensor>,
        state: &TrainState,
    ) -> Result<(), StepError> {
        let mut tensors: HashMap<String, candle_core::Tensor> = HashMap::new();
        let data = self
            .model
            .vars()
            .var_map()
            .data()
            .lock()
            .map_err(|_| StepError::Poisoned)?;
        tensors.extend(
            data.iter()
                .map(|(k, v)| (format!("raw/{k}"), v.as_tensor().clone())),
        );
        drop(data);
        tensors.extend(
            ema.tensors
                .iter()
                .map(|(k, v)| (format!("ema/{k}"), v.clone())),
        );
        tensors.extend(
            optimizer
                .state_tensors()
                .into_iter()
                .map(|(k, v)| (format!("optim/{k}"), v)),
        );
        tensors.extend(
            pending
                .iter()
                .map(|(k, v)| (format!("grad/{k}"), v.clone())),
        );
        let path = self.dir.join("weights").join(STATE_FILE);
        save_tensors(
            &tensors,
            &self.config.yaml,
            self.model.override_act(),
            &self.names,
            state_meta(state)?,
            &path,
        )
        .map_err(StepError::from)
    }

    /// last (every epoch) and best (when fitness improved): the EMA weights for val and
    /// detect. last also carries the counters, so a run whose resume state is lost can
    /// still go on from it.
    fn save_weights(
        &self,
        ema: &ModelEma,
        state: &TrainState,
        best: bool,
    ) -> Result<(), StepError> {
        let weights = self.dir.join("weights");
        let yaml = &self.config.yaml;
        save_tensors(
            &ema.tensors,
            yaml,
            self.model.override_act(),
            &self.names,
            state_meta(state)?,
            &weights.join(LAST_FILE),
        )
        .map_err(StepError::from)?;
        if best {
            save_tensors(
                &ema.tensors,
                yaml,
                self.model.override_act(),
                &self.names,
                HashMap::new(),
                &weights.join(BEST_FILE),
            )
            .map_err(StepError::from)?;
        }
        Ok(())
    }

    fn validate_best(&self) -> Result<Option<ValOutcome>, StepError> {
        let best = self.dir.join("weights").join(BEST_FILE);
        if !best.is_file() {
            return Ok(None);
        }
        let weights = read_weights(&best).map_err(StepError::from)?;
        self.eval_model
            .load_state_dict(&weights.tensors, true)
            .map_err(StepError::from)?;
        validate(
            &self.eval_model,
            &self.val_loader,
            &ValOptions::default(),
            None,
            |_, _| {},
        )
        .map(Some)
        .map_err(StepError::from)
    }
}

/// The counters as metadata of a weights file.
/// The diagnostics' probe batch, from the validation loader's first batch (none when the
/// split is empty).
fn first_val_images(loader: &Loader) -> Result<Option<Tensor>, SetupError> {
    let batch = loader
        .epoch(0)
        .and_then(|mut batches| batches.next().transpose())
        .map_err(|source| SetupError::Loader {
            split: Split::Val.key(),
            source,
        })?;
    Ok(batch.map(|b| probe_images(&b.images)).transpose()?)
}

fn state_meta(state: &TrainState) -> Result<HashMap<String, String>, StepError> {
    let json = serde_json::to_string(state).map_err(StepError::from)?;
    Ok(HashMap::from([(STATE_KEY.to_string(), json)]))
}

/// Copies every tensor of `weights` whose name and shape match the model (ultralytics'
/// `intersect_dicts`), except the anchors, which follow the config; returns how many of
/// the model's tensors were set, and of how many. Weights that fit nothing are an error.
fn transfer(model: &Model, weights: &Path) -> Result<(usize, usize), SetupError> {
    let source = read_weights(weights).map_err(SetupError::Weights)?;
    let data = model.vars().var_map().data().lock().map_err(|_| {
        SetupError::Tensor(candle_core::Error::Msg(
            "the variable store's lock is poisoned".into(),
        ))
    })?;
    let mut count = 0;
    for (name, var) in data.iter() {
        if let Some(t) = source
            .tensors
            .get(name)
            .filter(|t| t.dims() == var.dims() && !name.ends_with(".anchors"))
        {
            var.set(&t.to_dtype(var.dtype())?)?;
            count += 1;
        }
    }
    if count == 0 {
        return Err(SetupError::NothingTransferred {
            path: weights.to_path_buf(),
            tensors: source.tensors.len(),
        });
    }
    Ok((count, data.len()))
}

/// ultralytics' AutoAnchor: keeps the config's anchors when they recall at least 98% of
/// the training boxes, else adopts k-means + evolved ones that recall more.
fn auto_anchor(
    model: &Model,
    dataset: &Dataset,
    imgsz: usize,
    seed: u64,
    anchor_t: f64,
    on: &mut dyn FnMut(TrainEvent),
) -> Result<(), SetupError> {
    use super::autoanchor::{augment_scales, check_anchors, stride_units, ImageLabels, LabelSizes};
    use rand::SeedableRng;
    let images: Vec<ImageLabels> = dataset.records.iter().map(ImageLabels::from).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let scales = augment_scales(images.len(), &mut rng);
    let Some(detect) = model.head.anchored() else {
        return Ok(()); // nothing to fit: the head has no anchors
    };
    let labels = LabelSizes::gather(&images, imgsz, &scales)?;
    let check = check_anchors(
        &labels,
        &model.config.anchors,
        &detect.strides,
        anchor_t,
        &mut rng,
    )?;
    for m in check.messages {
        on(TrainEvent::Message(m));
    }
    if let Some(levels) = check.adopted {
        let values = stride_units(&levels, &detect.strides)?;
        let anchors = &detect.anchors;
        let fresh = candle_core::Tensor::from_vec(values, anchors.shape(), anchors.device())?;
        candle_core::Var::from_tensor(anchors).and_then(|v| v.set(&fresh))?;
    }
    Ok(())
}

/// ultralytics' `--freeze`: one number N freezes layers 0 to N−1 (`--freeze 10`: the
/// backbone of YOLOv5), several numbers freeze those layers (`--freeze 0 1 2`).
fn frozen_layers(freeze: &[usize], layers: usize) -> Result<Vec<usize>, SetupError> {
    let last = layers - 1;
    match freeze {
        [n] if *n > last => Err(SetupError::FreezeAll { n: *n, last }),
        [n] => Ok((0..*n).collect()),
        list => match list.iter().find(|&&i| i > last) {
            Some(&layer) => Err(SetupError::FreezeMissing { layer, last }),
            None => Ok(list.to_vec()),
        },
    }
}

/// Takes the frozen layers' parameters out of the optimiser; returns their names.
fn freeze(optimizer: &mut Optimizer, layers: &[usize]) -> HashSet<String> {
    let prefixes: Vec<String> = layers.iter().map(|i| format!("model.{i}.")).collect();
    let mut frozen = HashSet::new();
    for group in optimizer.groups.iter_mut() {
        group.params.retain(|(name, _)| {
            let keep = !prefixes.iter().any(|p| name.starts_with(p));
            if !keep {
                frozen.insert(name.clone());
            }
            keep
        });
    }
    frozen
}

/// Restores a checkpoint's weights, EMA and optimiser; returns its pending gradients.
fn restore(
    model: &Model,
    optimizer: &mut Optimizer,
    ema: &mut ModelEma,
    tensors: &HashMap<String, candle_core::Tensor>,
    state: &TrainState,
) -> Result<HashMap<String, candle_core::Tensor>, TrainError> {
    let part = |prefix: &str| -> HashMap<String, candle_core::Tensor> {
        tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_string(), v.clone())))
            .collect()
    };
    model
        .load_state_dict(&part("raw/"), true)
        .map_err(|source| WeightsError::Load {
            path: PathBuf::from(STATE_FILE),
            source,
        })
        .map_err(SetupError::Checkpoint)?;
    ema.tensors = part("ema/");
    ema.updates = state.ema_updates;
    optimizer.load_state_tensors(&part("optim/"), state.optimizer_steps);
    Ok(part("grad/"))
}
