//! `compare`: trains one model per (activation, seed) with everything else equal (the same
//! data order, augmentation stream, hyperparameters and initialisation seed), measures each
//! activation's size and latency, and keeps the report current as runs finish.
//!
//! The experiment folder holds `experiment.json` (settings and every run's record), one
//! training run per (activation, seed) under `runs/`, and the report. Running the same
//! command again continues: finished runs are kept, a stopped run resumes from its
//! checkpoint, and a diverged run stays recorded as diverged.

use candle_core::Device;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::claim::{read_lock, Lock, Shard};
use super::record::{run_name, ActCost, EpochPoint, Experiment, RunRecord, RunStatus};
use super::report::{write_report, ReportFiles};
use crate::act::{ActSpec, SpecError};
use crate::data::dataset::{DataConfig, DataConfigError};
use crate::eval::val::{run_val, ValOptions, ValRun};
use crate::export::int8::Int8Options;
use crate::model::build::Model;
use crate::model::config::{ConfigError, ModelConfig};
use crate::model::input::check_img_size;
use crate::model::latency::inference_latency;
use crate::train::trainer::{
    train_until, TrainError, TrainEvent, TrainOptions, TrainStart, BEST_FILE, STATE_FILE,
};
use crate::util::error::chain;
use crate::util::fs::{write_atomic, FileError};

/// The experiment: what to compare and how each run trains.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The settings every run shares; its `act`, `seed`, `project`, `name` and `exist_ok`
    /// are set per run.
    pub train: TrainOptions,
    /// Activation specs, the baseline first.
    pub acts: Vec<String>,
    pub seeds: Vec<u64>,
    /// The experiment folder.
    pub out: PathBuf,
    /// Timed inferences per activation for the latency median.
    pub latency_runs: usize,
    /// Train only this shard's runs (with `None`, any run no other process holds).
    pub shard: Option<Shard>,
    /// Runs trained at once in this process, each on its own share of the cores.
    pub jobs: usize,
    /// Write the report from the finished runs, training nothing.
    pub report_only: bool,
    /// A run lock whose heartbeat is older than this (its holder on another host) is
    /// stale: the run is taken over and resumed.
    pub claim_timeout: Duration,
    /// Successive halving: rungs at about 1/9, 1/3 and all of the epochs; after each,
    /// only the best third of the activations by mean fitness (and the baseline) go on.
    pub screen: bool,
    /// Where the runs train and the latencies are measured.
    pub device: Device,
}

/// What happens, for the CLI to show.
#[derive(Debug)]
pub enum CompareEvent<'a> {
    /// Before the first run: how many runs the plan has and how many are already done.
    Planned {
        total: usize,
        done: usize,
    },
    Measuring {
        act: &'a str,
    },
    RunStart {
        act: &'a str,
        seed: u64,
        resume: bool,
    },
    /// A training event of the run in progress (one run at a time).
    Train(TrainEvent<'a>),
    /// With several runs at once: an epoch of one of them finished.
    EpochDone {
        act: &'a str,
        seed: u64,
        epoch: usize,
        epochs: usize,
    },
    /// A finished run's best weights are scored under simulated INT8 quantization.
    Quantizing {
        act: &'a str,
        seed: u64,
    },
    RunEnd {
        record: &'a RunRecord,
    },
    /// `--screen` after a rung: the activations that go on and those screened out.
    Screened {
        epochs: usize,
        kept: &'a [String],
        dropped: &'a [String],
    },
    Report(&'a ReportFiles),
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("--acts: {0}")]
    Acts(String),
    #[error("--acts `{act}`")]
    Spec {
        act: String,
        #[source]
        source: SpecError,
    },
    #[error("--seeds: give at least one seed")]
    NoSeeds,
    #[error("{} holds an experiment with other settings ({difference}); continue it with the same options, or choose another --out", path.display())]
    Mismatch { path: PathBuf, difference: String },
    #[error("{}: not an actyolo experiment file", path.display())]
    NotExperiment {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: cannot serialise the experiment", path.display())]
    Serialize {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("--data")]
    Data(#[from] DataConfigError),
    #[error("--cfg")]
    Config(#[from] ConfigError),
    #[error("measuring {act}")]
    Measure {
        act: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("run {act} seed {seed}")]
    Setup {
        act: String,
        seed: u64,
        source: TrainError,
    },
    #[error("writing the report")]
    Report(#[from] super::report::ReportError),
    #[error(transparent)]
    Write(#[from] crate::util::fs::FileError),
    #[error("{} holds no experiment yet: run compare with this --out first", .0.display())]
    NoExperiment(PathBuf),
    #[error("--jobs {jobs}: starting a thread pool")]
    Pool {
        jobs: usize,
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
}

/// `experiment.json`: the shared settings beside the records, so a re-run can check that
/// it continues the same experiment.
#[derive(Debug, Serialize, Deserialize)]
struct SavedExperiment {
    options: TrainOptions,
    experiment: Experiment,
}

const EXPERIMENT_FILE: &str = "experiment.json";
/// Held while `experiment.json` is read and rewritten.
const EXPERIMENT_LOCK: &str = "locks/experiment.lock";
/// Held while the report is written.
const REPORT_LOCK: &str = "locks/report.lock";

const LOCKS: &str = "locks";

/// The events of a run, from whichever thread trains it.
type Observer<'o> = Mutex<&'o mut (dyn FnMut(CompareEvent) + Send)>;

/// Runs (or continues) the experiment and returns it with every record; the report in
/// `options.out` is rewritten after each run. Several processes (shards, or identical
/// commands sharing the work) may run on one `out`: each run is trained by one of them at
/// a time, and the settings, records and report are written under locks.
pub fn compare(
    options: &CompareOptions,
    on: &mut (dyn FnMut(CompareEvent) + Send),
) -> Result<Experiment, CompareError> {
    check_acts(&options.acts)?;
    if options.seeds.is_empty() {
        return Err(CompareError::NoSeeds);
    }
    let shared = shared_options(&options.train);
    let experiment = {
        let _lock = Lock::take(&options.out.join(EXPERIMENT_LOCK), options.claim_timeout)?;
        let mut experiment = load_or_plan(options, &shared)?;
        if !options.report_only {
            measure_costs(&mut experiment, options, on)?;
        }
        save(&options.out, &shared, &experiment)?;
        experiment
    };
    let total = experiment.runs.len();
    let done = experiment
        .runs
        .iter()
        .filter(|r| is_settled(&r.status))
        .count();
    on(CompareEvent::Planned { total, done });
    if !options.report_only {
        // Seed-major order: every activation has a first result before any has a second.
        if options.screen {
            screen(options, &shared, on)?;
        } else {
            train_runs(
                &run_order(options, &options.acts),
                options,
                &shared,
                None,
                on,
            )?;
        }
    }
    let experiment = load_saved(&options.out)?.experiment;
    let files = write_report_locked(&experiment, options)?;
    on(CompareEvent::Report(&files));
    Ok(experiment)
}

/// This process's runs of `acts`, seed-major (every activation has a first result before
/// any has a second), the shard's only when sharded.
fn run_order(options: &CompareOptions, acts: &[String]) -> Vec<(String, u64)> {
    options
        .seeds
        .iter()
        .flat_map(|&seed| acts.iter().map(move |act| (act.clone(), seed)))
        .filter(|(act, seed)| options.shard.is_none_or(|s| s.owns(act, *seed)))
        .collect()
}

/// The rungs of `--screen` for a budget of `epochs`: about 1/9, 1/3 and all of it.
pub fn rungs(epochs: usize) -> Vec<usize> {
    let mut rungs: Vec<usize> = [epochs.div_ceil(9), epochs.div_ceil(3), epochs]
        .into_iter()
        .filter(|&r| r >= 1)
        .collect();
    rungs.dedup();
    rungs
}

/// Successive halving: each rung trains the surviving runs to its epochs (pausing them
/// with their full schedule), waits for the runs other processes hold, then keeps the
/// best third of the activations by mean fitness over the seeds, and the baseline. Any
/// process computes the same cut from the records, so shards and resumes agree.
fn screen(
    options: &CompareOptions,
    shared: &TrainOptions,
    on: &mut (dyn FnMut(CompareEvent) + Send),
) -> Result<(), CompareError> {
    let all = rungs(shared.epochs);
    for (i, &rung) in all.iter().enumerate() {
        let last = i + 1 == all.len();
        loop {
            let survivors = surviving_acts(&load_saved(&options.out)?.experiment);
            let order = run_order(options, &survivors);
            train_runs(&order, options, shared, (!last).then_some(rung), on)?;
            let experiment = load_saved(&options.out)?.experiment;
            let waiting = experiment.runs.iter().any(|r| {
                survivors.contains(&r.act) && !is_settled(&r.status) && r.curve.len() < rung
            });
            if !waiting {
                break;
            }
            // Runs of this rung that other processes hold: wait (or take them over).
            std::thread::sleep(Duration::from_secs(1));
        }
        if !last {
            let (kept, dropped) = cut(options, rung)?;
            if !dropped.is_empty() {
                on(CompareEvent::Screened {
                    epochs: rung,
                    kept: &kept,
                    dropped: &dropped,
                });
            }
        }
    }
    Ok(())
}

/// The activations with a run not screened out, in `--acts` order.
fn surviving_acts(experiment: &Experiment) -> Vec<String> {
    experiment
        .acts
        .iter()
        .filter(|act| {
            experiment
                .runs
                .iter()
                .any(|r| &r.act == *act && !matches!(r.status, RunStatus::Screened { .. }))
        })
        .cloned()
        .collect()
}

/// After a rung of `epochs`: keeps the baseline and the best third of the surviving
/// activations by mean best fitness over their seeds within those epochs, and marks the
/// other activations' runs screened out. Returns (kept, dropped).
fn cut(
    options: &CompareOptions,
    epochs: usize,
) -> Result<(Vec<String>, Vec<String>), CompareError> {
    let _lock = Lock::take(&options.out.join(EXPERIMENT_LOCK), options.claim_timeout)?;
    let mut saved = load_saved(&options.out)?;
    let experiment = &mut saved.experiment;
    let survivors = surviving_acts(experiment);
    let score = |act: &str| -> f64 {
        let bests: Vec<f64> = experiment
            .runs
            .iter()
            .filter(|r| r.act == act && r.curve.len() >= epochs)
            .filter_map(|r| {
                r.curve[..epochs]
                    .iter()
                    .map(EpochPoint::fitness)
                    .filter(|f| f.is_finite())
                    .reduce(f64::max)
            })
            .collect();
        if bests.is_empty() {
            f64::NEG_INFINITY
        } else {
            bests.iter().sum::<f64>() / bests.len() as f64
        }
    };
    let mut ranked: Vec<(f64, usize, &String)> = survivors
        .iter()
        .enumerate()
        .map(|(i, act)| (score(act), i, act))
        .collect();
    // Best first; ties in --acts order.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let keep = survivors.len().div_ceil(3);
    let baseline = experiment.acts.first().cloned().unwrap_or_default();
    let kept: Vec<String> = survivors
        .iter()
        .filter(|act| **act == baseline || ranked[..keep].iter().any(|(_, _, a)| a == act))
        .cloned()
        .collect();
    let dropped: Vec<String> = survivors
        .iter()
        .filter(|act| !kept.contains(act))
        .cloned()
        .collect();
    for run in experiment.runs.iter_mut() {
        if dropped.contains(&run.act) && !is_settled(&run.status) {
            run.status = RunStatus::Screened { epochs };
        }
    }
    save(&options.out, &saved.options, &saved.experiment)?;
    Ok((kept, dropped))
}

/// Trains every run of `order` that is neither settled nor held by another process,
/// `options.jobs` at a time; with `pause`, only up to that many epochs.
fn train_runs(
    order: &[(String, u64)],
    options: &CompareOptions,
    shared: &TrainOptions,
    pause: Option<usize>,
    on: &mut (dyn FnMut(CompareEvent) + Send),
) -> Result<(), CompareError> {
    let jobs = options.jobs.clamp(1, order.len().max(1));
    let observer: Observer = Mutex::new(on);
    if jobs == 1 {
        for (act, seed) in order {
            claim_and_train(act, *seed, options, shared, &observer, pause, false)?;
        }
        return Ok(());
    }
    let threads = (rayon::current_num_threads() / jobs).max(1);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| -> Result<(), CompareError> {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .map_err(|source| CompareError::Pool { jobs, source })?;
                    while let Some((act, seed)) = order.get(next.fetch_add(1, Ordering::SeqCst)) {
                        pool.install(|| {
                            claim_and_train(act, *seed, options, shared, &observer, pause, true)
                        })?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    })
}

/// Trains the run if it needs training and no other process holds it; then rewrites the
/// report.
#[allow(clippy::too_many_arguments)]
fn claim_and_train(
    act: &str,
    seed: u64,
    options: &CompareOptions,
    shared: &TrainOptions,
    on: &Observer,
    pause: Option<usize>,
    parallel: bool,
) -> Result<(), CompareError> {
    // Settled, or already as far as this rung goes.
    let settled = |out: &Path| -> Result<bool, CompareError> {
        let saved = load_saved(out)?;
        Ok(run_index(&saved.experiment, act, seed).is_some_and(|i| {
            let run = &saved.experiment.runs[i];
            is_settled(&run.status) || pause.is_some_and(|p| run.curve.len() >= p)
        }))
    };
    if settled(&options.out)? {
        return Ok(());
    }
    let lock_path = options
        .out
        .join(LOCKS)
        .join(format!("{}.lock", run_name(act, seed)));
    let Some(lock) = Lock::try_take(&lock_path, options.claim_timeout)? else {
        return Ok(());
    };
    // Finished by its holder between our look and our claim.
    if settled(&options.out)? {
        return Ok(());
    }
    let record = run_one(act, seed, options, shared, on, &lock, pause, parallel)?;
    drop(lock);
    emit(on, CompareEvent::RunEnd { record: &record });
    let experiment = load_saved(&options.out)?.experiment;
    let files = write_report_locked(&experiment, options)?;
    emit(on, CompareEvent::Report(&files));
    Ok(())
}

fn emit(on: &Observer, event: CompareEvent) {
    let mut on = on.lock().unwrap_or_else(|e| e.into_inner());
    on(event);
}

/// The report, written by one process at a time.
fn write_report_locked(
    experiment: &Experiment,
    options: &CompareOptions,
) -> Result<ReportFiles, CompareError> {
    let _lock = Lock::take(&options.out.join(REPORT_LOCK), options.claim_timeout)?;
    Ok(write_report(experiment, &options.out)?)
}

/// Every spec parses, and no activation appears twice.
fn check_acts(acts: &[String]) -> Result<(), CompareError> {
    if acts.is_empty() {
        return Err(CompareError::Acts(
            "give at least one activation, e.g. --acts silu,relu".into(),
        ));
    }
    for (i, act) in acts.iter().enumerate() {
        ActSpec::parse(act).map_err(|source| CompareError::Spec {
            act: act.clone(),
            source,
        })?;
        if acts[..i].contains(act) {
            return Err(CompareError::Acts(format!("`{act}` is listed twice")));
        }
    }
    Ok(())
}

/// The settings all runs share: per-run fields blanked so experiments can be compared.
fn shared_options(train: &TrainOptions) -> TrainOptions {
    TrainOptions {
        act: None,
        seed: 0,
        project: PathBuf::new(),
        name: String::new(),
        exist_ok: true,
        ..train.clone()
    }
}

/// A run that needs no more training: finished or diverged (a diverged run would diverge
/// again; a failed one is retried).
fn is_settled(status: &RunStatus) -> bool {
    matches!(
        status,
        RunStatus::Finished | RunStatus::Diverged { .. } | RunStatus::Screened { .. }
    )
}

fn run_index(experiment: &Experiment, act: &str, seed: u64) -> Option<usize> {
    experiment
        .runs
        .iter()
        .position(|r| r.act == act && r.seed == seed)
}

/// The saved experiment when `out` holds one with the same settings (its runs kept, new
/// activations and seeds added), else a fresh plan.
fn load_or_plan(
    options: &CompareOptions,
    shared: &TrainOptions,
) -> Result<Experiment, CompareError> {
    let path = options.out.join(EXPERIMENT_FILE);
    let name = options.out.file_name().map_or_else(
        || "experiment".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut experiment = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let saved: SavedExperiment =
                serde_json::from_str(&text).map_err(|source| CompareError::NotExperiment {
                    path: path.clone(),
                    source,
                })?;
            if let Some(difference) = first_difference(&saved.options, shared) {
                return Err(CompareError::Mismatch {
                    path: options.out.clone(),
                    difference,
                });
            }
            saved.experiment
        }
        Err(_) => Experiment {
            name,
            cfg: shared.cfg.clone(),
            data: shared.data.display().to_string(),
            imgsz: shared.imgsz,
            epochs: shared.epochs,
            batch: shared.batch,
            acts: Vec::new(),
            seeds: Vec::new(),
            costs: Vec::new(),
            runs: Vec::new(),
        },
    };
    experiment.acts = options.acts.clone();
    experiment.seeds = options.seeds.clone();
    let mut runs = Vec::new();
    for act in &options.acts {
        for &seed in &options.seeds {
            let kept = run_index(&experiment, act, seed).map(|i| experiment.runs[i].clone());
            runs.push(kept.unwrap_or_else(|| RunRecord::new(act, seed)));
        }
    }
    experiment.runs = runs;
    experiment.costs.retain(|c| options.acts.contains(&c.act));
    Ok(experiment)
}

/// The first setting in which a saved experiment differs from the requested one.
fn first_difference(saved: &TrainOptions, requested: &TrainOptions) -> Option<String> {
    let (a, b) = (
        serde_json::to_value(saved).ok()?,
        serde_json::to_value(requested).ok()?,
    );
    let (a, b) = (a.as_object()?, b.as_object()?);
    a.iter().find(|(k, v)| b.get(*k) != Some(v)).map(|(k, v)| {
        format!(
            "{k}: saved {v}, requested {}",
            b.get(k).map_or("nothing".to_string(), |x| x.to_string())
        )
    })
}

fn save(out: &Path, shared: &TrainOptions, experiment: &Experiment) -> Result<(), CompareError> {
    std::fs::create_dir_all(out).map_err(FileError::new(out, "cannot create the folder"))?;
    let saved = SavedExperiment {
        options: shared.clone(),
        experiment: experiment.clone(),
    };
    let path = out.join(EXPERIMENT_FILE);
    let text = serde_json::to_string_pretty(&saved).map_err(|source| CompareError::Serialize {
        path: path.clone(),
        source,
    })?;
    Ok(write_atomic(&path, text.as_bytes())?)
}

/// Parameters, GFLOPs and fused batch-1 latency of each activation not yet measured,
/// measured before training so the runs do not disturb the timing.
fn measure_costs(
    experiment: &mut Experiment,
    options: &CompareOptions,
    on: &mut (dyn FnMut(CompareEvent) + Send),
) -> Result<(), CompareError> {
    let nc = DataConfig::load(&options.train.data)?.names.len();
    let config = ModelConfig::load(&options.train.cfg).and_then(|c| c.with_nc(nc))?;
    let mut costs = Vec::new();
    for act in &options.acts {
        if let Some(known) = experiment.costs.iter().find(|c| &c.act == act) {
            costs.push(known.clone());
            continue;
        }
        on(CompareEvent::Measuring { act });
        let measure_err =
            |source: Box<dyn std::error::Error + Send + Sync>| CompareError::Measure {
                act: act.clone(),
                source,
            };
        let spec = ActSpec::parse(act).map_err(|e| measure_err(e.into()))?;
        let mut model = Model::new_on(&config, Some(&spec), 0, None, &options.device)
            .map_err(|e| measure_err(e.into()))?;
        // At the size the runs train at: --imgsz rounded as train rounds it.
        let stride = model.max_stride();
        let imgsz = check_img_size(options.train.imgsz, stride, 2 * stride)
            .map_err(|e| measure_err(e.into()))?
            .used;
        let (params, gflops) = (model.num_params(), model.gflops(imgsz));
        model.fuse().map_err(|e| measure_err(e.into()))?;
        let latency = inference_latency(&model, 1, imgsz, options.latency_runs)
            .map_err(|e| measure_err(e.into()))?;
        costs.push(ActCost {
            act: act.clone(),
            label: spec.to_string(),
            params,
            gflops,
            latency_ms: latency.median_ms,
            latency_runs: latency.runs,
        });
    }
    experiment.costs = costs;
    Ok(())
}

/// Trains (or resumes) one run, keeping its record current after every epoch and the
/// lock's heartbeat fresh; returns the final record. With `pause`, it stops after that
/// many epochs and stays pending.
#[allow(clippy::too_many_arguments)]
fn run_one(
    act: &str,
    seed: u64,
    options: &CompareOptions,
    shared: &TrainOptions,
    on: &Observer,
    lock: &Lock,
    pause: Option<usize>,
    parallel: bool,
) -> Result<RunRecord, CompareError> {
    let saved = load_saved(&options.out)?.experiment;
    let mut record = run_index(&saved, act, seed)
        .map_or_else(|| RunRecord::new(act, seed), |i| saved.runs[i].clone());
    let runs_dir = options.out.join("runs");
    let name = run_name(act, seed);
    let dir = runs_dir.join(&name);
    let run_options = TrainOptions {
        act: Some(act.to_string()),
        seed,
        project: runs_dir,
        name,
        exist_ok: true,
        ..shared.clone()
    };
    let checkpoint = dir.join("weights").join(STATE_FILE);
    let resume = checkpoint.is_file();
    if !resume && dir.exists() {
        // Stopped before its first checkpoint: start it again from nothing.
        std::fs::remove_dir_all(&dir).map_err(FileError::new(&dir, "cannot remove the folder"))?;
        record.epoch_seconds.clear();
    }
    record.status = RunStatus::Running;
    update_record(&options.out, &record, options.claim_timeout)?;
    emit(on, CompareEvent::RunStart { act, seed, resume });
    let results = dir.join("results.csv");
    let mut save_error = None;
    let start = if resume {
        TrainStart::Resume {
            path: dir.clone(),
            epochs: None,
        }
    } else {
        TrainStart::New(Box::new(run_options))
    };
    let outcome = train_until(&start, pause, &options.device, &mut |event| {
        if let TrainEvent::EpochEnd { epoch, seconds, .. } = &event {
            record.epoch_seconds.truncate(*epoch);
            record.epoch_seconds.push(*seconds);
            update_curve(&mut record, &results);
            let saved = update_record(&options.out, &record, options.claim_timeout)
                .and_then(|()| Ok(lock.beat(Some(*epoch))?));
            if let Err(e) = saved {
                save_error.get_or_insert(e);
            }
            if parallel {
                emit(
                    on,
                    CompareEvent::EpochDone {
                        act,
                        seed,
                        epoch: *epoch,
                        epochs: shared.epochs,
                    },
                );
            }
        }
        if !parallel {
            emit(on, CompareEvent::Train(event));
        }
    });
    if let Some(e) = save_error {
        return Err(e);
    }
    let status = match &outcome {
        Ok(outcome) if outcome.paused => RunStatus::Pending,
        Ok(_) => RunStatus::Finished,
        Err(e @ TrainError::NonFinite { .. }) => RunStatus::Diverged { message: chain(e) },
        Err(e) => RunStatus::Failed { message: chain(e) },
    };
    update_curve(&mut record, &results);
    if status == RunStatus::Finished {
        emit(on, CompareEvent::Quantizing { act, seed });
        record.int8 = int8_score(&dir, shared, record.best);
    }
    record.status = status;
    update_record(&options.out, &record, options.claim_timeout)?;
    match outcome {
        // The same for every run (bad data, a config error): stop the experiment.
        Err(source @ TrainError::Setup(_)) => Err(CompareError::Setup {
            act: act.to_string(),
            seed,
            source,
        }),
        _ => Ok(record),
    }
}

/// A finished run's best weights under simulated INT8 quantization, as `val --int8` with
/// its defaults scores them; `None` when that fails (the report then has no INT8 figure
/// for the run, and the float results stand).
fn int8_score(dir: &Path, shared: &TrainOptions, best: Option<EpochPoint>) -> Option<EpochPoint> {
    let run = ValRun {
        weights: dir.join("weights").join(BEST_FILE),
        data: shared.data.clone(),
        imgsz: shared.imgsz,
        batch: shared.batch * 2,
        workers: shared.workers,
        options: ValOptions::default(),
        int8: Some(Int8Options::default()),
        // The simulation rounds on the host: a GPU would only add copies.
        device: Device::Cpu,
    };
    let metrics = run_val(&run, &mut |_| {}).ok()?.outcome.metrics;
    Some(EpochPoint {
        epoch: best?.epoch,
        map50: metrics.map50,
        map: metrics.map,
    })
}

/// Replaces the run's record in `experiment.json`, under the experiment's lock (other
/// processes write theirs into the same file).
fn update_record(out: &Path, record: &RunRecord, timeout: Duration) -> Result<(), CompareError> {
    let _lock = Lock::take(&out.join(EXPERIMENT_LOCK), timeout)?;
    let mut saved = load_saved(out)?;
    if let Some(i) = run_index(&saved.experiment, &record.act, record.seed) {
        saved.experiment.runs[i] = record.clone();
    }
    save(out, &saved.options, &saved.experiment)
}

/// `experiment.json` as saved.
fn load_saved(out: &Path) -> Result<SavedExperiment, CompareError> {
    let path = out.join(EXPERIMENT_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|_| CompareError::NoExperiment(out.to_path_buf()))?;
    serde_json::from_str(&text).map_err(|source| CompareError::NotExperiment { path, source })
}

/// One line per run: pending, running (host, pid, epoch, heartbeat age), stopped (held by
/// no one, resumable), finished, diverged or failed.
pub fn status(out: &Path, timeout: Duration) -> Result<Vec<String>, CompareError> {
    let experiment = load_saved(out)?.experiment;
    let lines = experiment
        .runs
        .iter()
        .map(|r| {
            let name = run_name(&r.act, r.seed);
            let held = read_lock(&out.join(LOCKS).join(format!("{name}.lock")));
            let epochs = format!("{}/{} epochs", r.curve.len(), experiment.epochs);
            let state = match (&r.status, held) {
                (RunStatus::Finished, _) => format!("finished ({epochs})"),
                (RunStatus::Screened { epochs }, _) => {
                    format!("screened out after {epochs} epochs")
                }
                (RunStatus::Diverged { message }, _) => format!("diverged: {message}"),
                (RunStatus::Failed { message }, None) => format!("failed: {message}"),
                (_, Some(lock)) => format!(
                    "running on {} pid {}, epoch {}, heartbeat {} s ago{}",
                    lock.host,
                    lock.pid,
                    lock.epoch.map_or("-".to_string(), |e| e.to_string()),
                    lock.age(),
                    if lock.is_stale(timeout) {
                        " (stale: the next compare takes it over)"
                    } else {
                        ""
                    }
                ),
                (RunStatus::Running, None) => {
                    format!("stopped ({epochs}; resumes on the next compare)")
                }
                (RunStatus::Pending, None) => "pending".to_string(),
            };
            format!("{} seed {}: {state}", r.act, r.seed)
        })
        .collect();
    Ok(lines)
}

/// The record's curve and best epoch from the run's results.csv, the run's own account
/// (truncated on resume to the checkpoint's epoch).
fn update_curve(record: &mut RunRecord, results: &Path) {
    record.curve = read_curve(results);
    // `>=` as the trainer: a later epoch of equal fitness is the best.
    record.best =
        record
            .curve
            .iter()
            .copied()
            .fold(None, |best: Option<EpochPoint>, p| match best {
                Some(b) if p.fitness() < b.fitness() => Some(b),
                _ => Some(p),
            });
}

/// (epoch from 0, mAP50, mAP50-95) rows of a results.csv in YOLOv5's or ultralytics 8's
/// layout; missing file: none.
pub fn read_curve(results: &Path) -> Vec<EpochPoint> {
    let Ok(text) = std::fs::read_to_string(results) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(|c| c.trim().to_string())
        .collect();
    let column = |names: [&str; 2]| header.iter().position(|c| names.contains(&c.as_str()));
    let (Some(e), Some(m50), Some(m)) = (
        column(["epoch", "epoch"]),
        column(["metrics/mAP_0.5", "metrics/mAP50(B)"]),
        column(["metrics/mAP_0.5:0.95", "metrics/mAP50-95(B)"]),
    ) else {
        return Vec::new();
    };
    // ultralytics 8 numbers epochs from 1 (its columns say `(B)`); YOLOv5 from 0.
    let first = usize::from(header.iter().any(|c| c == "metrics/mAP50(B)"));
    lines
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            Some(EpochPoint {
                epoch: fields.get(e)?.parse::<usize>().ok()?.checked_sub(first)?,
                map50: fields.get(m50)?.parse().ok()?,
                map: fields.get(m)?.parse().ok()?,
            })
        })
        .collect()
}
