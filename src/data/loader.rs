//! Batches for training and validation in ultralytics' collate format, built in parallel
//! ahead of the consumer.
//!
//! Determinism: the training order of epoch `e` is a shuffle seeded by (seed, e), and
//! sample `i` of epoch `e` draws all its augmentation from its own stream (seed, e, i), so
//! a batch does not depend on thread scheduling, the number of workers, or the batch size.
//!
//! Validation images are letterboxed without augmentation, in dataset order, into an
//! imgsz × imgsz square or, with rectangular batches (as val.py always uses them), sorted
//! by aspect ratio into the smallest stride-multiple rectangle that fits their batch.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::Rng;
use rayon::prelude::*;

use crate::data::augment::{
    augment_hsv, mixup, mosaic4, mosaic_border, mosaic_centre, random_flips, random_perspective,
    resize_long_side, stream_rng, to_labels, Augmentation, LabelledImage, MosaicTile, PixelBox,
    WarpRanges,
};
use crate::data::dataset::Dataset;
use crate::data::image::{read_image, ReadImageError};
use crate::data::labels::Label;
use crate::data::letterbox::{image_to_tensor, letterbox, LetterboxError};

/// How batches are made.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    /// Side of the square images in a batch.
    pub imgsz: u32,
    /// Images per batch (at most the dataset's size, as ultralytics); the last batch of an
    /// epoch may be smaller.
    pub batch_size: usize,
    /// Threads decoding and augmenting (0 counts as 1).
    pub workers: usize,
    pub seed: u64,
    /// Batches made ahead of the consumer.
    pub prefetch: usize,
    /// Rectangular batches (ultralytics' `rect=True`), when set.
    pub rect: Option<RectBatches>,
}

/// ultralytics' rectangular batches: images sorted by aspect ratio (no shuffling, no
/// mosaic), each batch letterboxed to `ceil(ratio · imgsz / stride + pad) · stride`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RectBatches {
    pub stride: u32,
    /// 0.5 for validation (val.py, train.py's validation), 0 for `train --rect`.
    pub pad: f64,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            imgsz: 640,
            batch_size: 16,
            workers: 8,
            seed: 0,
            prefetch: 2,
            rect: None,
        }
    }
}

/// How a validation image was fitted, to map predictions back: ultralytics' `shapes`
/// entry `((h0, w0), ((h / h0, w / w0), pad))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageShape {
    /// Original (height, width).
    pub original: (u32, u32),
    /// Resized over original, (height, width).
    pub gain: (f64, f64),
    /// Letterbox padding (width, height) on each side.
    pub pad: (f64, f64),
}

/// One image ready for a batch.
#[derive(Debug, Clone)]
pub struct Sample {
    pub image: RgbImage,
    pub labels: Vec<Label>,
    pub path: PathBuf,
    /// `None` for mosaics, which have no single original.
    pub shape: Option<ImageShape>,
}

/// ultralytics' collated batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// (B, 3, imgsz, imgsz) float32 RGB in [0, 1].
    pub images: Tensor,
    /// (n, 6): image index in the batch, class, cx, cy, w, h (normalised).
    pub targets: Tensor,
    pub paths: Vec<PathBuf>,
    pub shapes: Vec<Option<ImageShape>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("{path}")]
    Read {
        path: PathBuf,
        #[source]
        error: ReadImageError,
    },
    #[error("{path}")]
    Letterbox {
        path: PathBuf,
        #[source]
        error: LetterboxError,
    },
    #[error("the dataset has no usable images (every one was skipped; see the warnings)")]
    Empty,
    #[error("the training set has no labels at all; training needs labelled images")]
    NoLabels,
    #[error("invalid loader settings: {0}")]
    Settings(String),
    #[error("cannot start {workers} loader threads")]
    Threads {
        workers: usize,
        #[source]
        error: rayon::ThreadPoolBuildError,
    },
    #[error("cannot start the batch producer thread")]
    Producer(#[source] std::io::Error),
    #[error("cannot build a batch tensor")]
    Tensor(#[from] candle_core::Error),
}

#[derive(Debug)]
enum Mode {
    Train {
        hyp: Box<Augmentation>,
        warp: WarpRanges,
    },
    Val,
}

#[derive(Debug)]
struct Shared {
    dataset: Arc<Dataset>,
    config: LoaderConfig,
    mode: Mode,
    pool: rayon::ThreadPool,
    /// With rectangular batches: the images sorted by aspect ratio, and each image's
    /// letterbox shape (height, width), that of its batch.
    rect: Option<RectPlan>,
}

#[derive(Debug)]
struct RectPlan {
    order: Vec<usize>,
    shapes: Vec<(u32, u32)>,
}

impl RectPlan {
    /// ultralytics' `batch_shapes`: per batch, the aspect-ratio extremes of its images
    /// (sorted by height / width) decide a rectangle of imgsz on its long side.
    fn new(dataset: &Dataset, config: &LoaderConfig, rect: RectBatches) -> RectPlan {
        let ratio = |i: usize| {
            let record = &dataset.records[i];
            f64::from(record.height) / f64::from(record.width)
        };
        let mut order: Vec<usize> = (0..dataset.len()).collect();
        order.sort_by(|&a, &b| ratio(a).total_cmp(&ratio(b)));
        let mut shapes = vec![(config.imgsz, config.imgsz); dataset.len()];
        let side = |factor: f64| {
            let units =
                (factor * f64::from(config.imgsz) / f64::from(rect.stride) + rect.pad).ceil();
            units as u32 * rect.stride
        };
        for batch in order.chunks(config.batch_size) {
            let (min, max) = batch.iter().fold((f64::INFINITY, 0f64), |(lo, hi), &i| {
                (lo.min(ratio(i)), hi.max(ratio(i)))
            });
            let (h, w) = if max < 1.0 {
                (max, 1.0)
            } else if min > 1.0 {
                (1.0, 1.0 / min)
            } else {
                (1.0, 1.0)
            };
            for &i in batch {
                shapes[i] = (side(h), side(w));
            }
        }
        RectPlan { order, shapes }
    }
}

/// A dataset's batches, epoch by epoch.
#[derive(Debug, Clone)]
pub struct Loader {
    shared: Arc<Shared>,
}

/// The random stream of epoch orders; sample streams are `(epoch << 32) | index`.
const ORDER_STREAM: u64 = 1 << 63;

impl Loader {
    /// A training loader: shuffled, with mosaic, perspective, HSV, flips and mixup from `hyp`.
    pub fn train(
        dataset: Arc<Dataset>,
        hyp: &Augmentation,
        config: LoaderConfig,
    ) -> Result<Loader, LoaderError> {
        if dataset
            .records
            .iter()
            .all(|record| record.labels.is_empty())
            && !dataset.is_empty()
        {
            return Err(LoaderError::NoLabels);
        }
        Self::new(
            dataset,
            Mode::Train {
                hyp: Box::new(hyp.clone()),
                warp: WarpRanges::from(hyp),
            },
            config,
        )
    }

    /// The same training loader without mosaic, mixup and copy-paste: ultralytics 8's
    /// `close_mosaic` for the last epochs (the other augmentations stay).
    pub fn without_mosaic(&self) -> Result<Loader, LoaderError> {
        let Mode::Train { hyp, .. } = &self.shared.mode else {
            return Ok(Loader {
                shared: Arc::clone(&self.shared),
            });
        };
        let hyp = Augmentation {
            mosaic: 0.0,
            mixup: 0.0,
            copy_paste: 0.0,
            ..(**hyp).clone()
        };
        Self::train(
            Arc::clone(&self.shared.dataset),
            &hyp,
            self.shared.config.clone(),
        )
    }

    /// A validation loader: letterboxed, not augmented, in order.
    pub fn val(dataset: Arc<Dataset>, config: LoaderConfig) -> Result<Loader, LoaderError> {
        Self::new(dataset, Mode::Val, config)
    }

    fn new(
        dataset: Arc<Dataset>,
        mode: Mode,
        mut config: LoaderConfig,
    ) -> Result<Loader, LoaderError> {
        if dataset.is_empty() {
            return Err(LoaderError::Empty);
        }
        if config.imgsz < 32 || config.batch_size == 0 {
            return Err(LoaderError::Settings(format!(
                "imgsz must be at least 32 and the batch size at least 1 (got {} and {})",
                config.imgsz, config.batch_size
            )));
        }
        config.batch_size = config.batch_size.min(dataset.len());
        config.workers = config.workers.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.workers)
            .thread_name(|i| format!("loader-{i}"))
            .build()
            .map_err(|error| LoaderError::Threads {
                workers: config.workers,
                error,
            })?;
        let rect = config
            .rect
            .map(|rect| RectPlan::new(&dataset, &config, rect));
        Ok(Loader {
            shared: Arc::new(Shared {
                dataset,
                config,
                mode,
                pool,
                rect,
            }),
        })
    }

    /// Batches per epoch (the last one may be partial).
    pub fn len(&self) -> usize {
        self.shared
            .dataset
            .len()
            .div_ceil(self.shared.config.batch_size)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn batch_size(&self) -> usize {
        self.shared.config.batch_size
    }

    pub fn dataset(&self) -> &Dataset {
        &self.shared.dataset
    }

    /// The dataset indices of epoch `epoch`, in the order they are batched: sorted by
    /// aspect ratio with rectangular batches, else shuffled when training.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        if let Some(rect) = &self.shared.rect {
            return rect.order.clone();
        }
        let mut order: Vec<usize> = (0..self.shared.dataset.len()).collect();
        if matches!(self.shared.mode, Mode::Train { .. }) {
            order.shuffle(&mut stream_rng(
                self.shared.config.seed,
                ORDER_STREAM | epoch,
            ));
        }
        order
    }

    /// Sample `index` of the dataset as epoch `epoch` makes it.
    pub fn sample(&self, epoch: u64, index: usize) -> Result<Sample, LoaderError> {
        self.shared.sample(epoch, index)
    }

    /// The batches of epoch `epoch`, made on the worker threads while the caller consumes
    /// earlier ones. Dropping the iterator stops the work.
    pub fn epoch(&self, epoch: u64) -> Result<Batches, LoaderError> {
        let shared = Arc::clone(&self.shared);
        let order = self.order(epoch);
        let (sender, receiver) = sync_channel(shared.config.prefetch);
        let producer = std::thread::Builder::new()
            .name("batch-producer".into())
            .spawn(move || {
                for indices in order.chunks(shared.config.batch_size) {
                    let batch = shared.batch(epoch, indices);
                    if sender.send(batch).is_err() {
                        return;
                    }
                }
            })
            .map_err(LoaderError::Producer)?;
        Ok(Batches {
            receiver: Some(receiver),
            producer: Some(producer),
            remaining: self.len(),
        })
    }
}

impl Shared {
    fn batch(&self, epoch: u64, indices: &[usize]) -> Result<Batch, LoaderError> {
        let samples = self.pool.install(|| {
            indices
                .par_iter()
                .map(|&index| self.sample(epoch, index))
                .collect::<Result<Vec<_>, _>>()
        })?;
        collate(samples)
    }

    fn sample(&self, epoch: u64, index: usize) -> Result<Sample, LoaderError> {
        match &self.mode {
            Mode::Train { hyp, warp } => self.train_sample(
                hyp,
                warp,
                &mut stream_rng(self.config.seed, (epoch << 32) | index as u64),
                index,
            ),
            Mode::Val => {
                let (fitted, shape) = self.letterboxed(index, false)?;
                let (w, h) = fitted.image.dimensions();
                let labels = to_labels(&fitted.boxes, w, h);
                Ok(Sample {
                    image: fitted.image,
                    labels,
                    path: self.dataset.records[index].path.clone(),
                    shape: Some(shape),
                })
            }
        }
    }

    /// ultralytics' `__getitem__` with augmentation.
    fn train_sample(
        &self,
        hyp: &Augmentation,
        warp: &WarpRanges,
        rng: &mut impl Rng,
        index: usize,
    ) -> Result<Sample, LoaderError> {
        // As ultralytics: no mosaic with rectangular batches.
        let mosaic = self.rect.is_none() && rng.random::<f64>() < hyp.mosaic;
        let (composed, shape) = if mosaic {
            let mut composed = self.mosaic(index, warp, rng)?;
            if rng.random::<f64>() < hyp.mixup {
                let other = rng.random_range(0..self.dataset.len());
                composed = mixup(composed, self.mosaic(other, warp, rng)?, rng);
            }
            (composed, None)
        } else {
            let (fitted, shape) = self.letterboxed(index, true)?;
            (random_perspective(fitted, warp, 0, rng), Some(shape))
        };
        let (w, h) = composed.image.dimensions();
        let mut labels = to_labels(&composed.boxes, w, h);
        let mut image = composed.image;
        augment_hsv(&mut image, [hyp.hsv_h, hyp.hsv_s, hyp.hsv_v], rng);
        random_flips(&mut image, &mut labels, hyp.flipud, hyp.fliplr, rng);
        Ok(Sample {
            image,
            labels,
            path: self.dataset.records[index].path.clone(),
            shape,
        })
    }

    /// ultralytics' `load_mosaic`: the image and three random others around a random
    /// centre, then the perspective warp that crops the canvas back to imgsz.
    fn mosaic(
        &self,
        index: usize,
        warp: &WarpRanges,
        rng: &mut impl Rng,
    ) -> Result<LabelledImage, LoaderError> {
        let imgsz = self.config.imgsz;
        let centre = mosaic_centre(imgsz, rng);
        let n = self.dataset.len();
        let mut indices = [
            index,
            rng.random_range(0..n),
            rng.random_range(0..n),
            rng.random_range(0..n),
        ];
        indices.shuffle(rng);
        let images = indices
            .iter()
            .map(|&i| self.load_resized(i, true))
            .collect::<Result<Vec<_>, _>>()?;
        let tiles: [MosaicTile; 4] = std::array::from_fn(|k| MosaicTile {
            image: &images[k],
            labels: &self.dataset.records[indices[k]].labels,
        });
        let canvas = mosaic4(tiles, imgsz, centre);
        Ok(random_perspective(canvas, warp, mosaic_border(imgsz), rng))
    }

    /// Reads image `index` and resizes its long side to imgsz.
    fn load_resized(&self, index: usize, augment: bool) -> Result<RgbImage, LoaderError> {
        let path = &self.dataset.records[index].path;
        let original = read_image(path).map_err(|error| LoaderError::Read {
            path: path.clone(),
            error,
        })?;
        Ok(resize_long_side(&original, self.config.imgsz, augment))
    }

    /// The image letterboxed into the imgsz square or its rectangular batch's shape
    /// (enlarging only when augmenting, as ultralytics' `scaleup=self.augment`), with its
    /// boxes in pixels.
    fn letterboxed(
        &self,
        index: usize,
        augment: bool,
    ) -> Result<(LabelledImage, ImageShape), LoaderError> {
        let record = &self.dataset.records[index];
        let resized = self.load_resized(index, augment)?;
        let imgsz = self.config.imgsz;
        let shape = self
            .rect
            .as_ref()
            .map_or((imgsz, imgsz), |r| r.shapes[index]);
        let fitted = letterbox(&resized, shape, 32, false, augment).map_err(|error| {
            LoaderError::Letterbox {
                path: record.path.clone(),
                error,
            }
        })?;
        let (w, h) = (f64::from(resized.width()), f64::from(resized.height()));
        let (w0, h0) = (record.width, record.height);
        let (scaled_w, scaled_h) = ((fitted.ratio * w) as f32, (fitted.ratio * h) as f32);
        let (pad_w, pad_h) = (fitted.pad.0 as f32, fitted.pad.1 as f32);
        let boxes = record
            .labels
            .iter()
            .map(|label| PixelBox::from_label(label, scaled_w, scaled_h, pad_w, pad_h))
            .collect();
        let shape = ImageShape {
            original: (h0, w0),
            gain: (h / f64::from(h0), w / f64::from(w0)),
            pad: fitted.pad,
        };
        Ok((
            LabelledImage {
                image: fitted.image,
                boxes,
            },
            shape,
        ))
    }
}

/// ultralytics' `collate_fn`: images stacked, targets concatenated with their image index.
fn collate(samples: Vec<Sample>) -> Result<Batch, LoaderError> {
    let device = Device::Cpu;
    let images = samples
        .iter()
        .map(|sample| image_to_tensor(&sample.image, &device))
        .collect::<Result<Vec<_>, _>>()?;
    let images = Tensor::cat(&images, 0)?;
    let targets: Vec<f32> = samples
        .iter()
        .enumerate()
        .flat_map(|(i, sample)| {
            sample
                .labels
                .iter()
                .flat_map(move |l| [i as f32, l.class as f32, l.cx, l.cy, l.w, l.h])
        })
        .collect();
    let rows = targets.len() / 6;
    let targets = Tensor::from_vec(targets, (rows, 6), &device)?;
    let (paths, shapes) = samples
        .into_iter()
        .map(|sample| (sample.path, sample.shape))
        .unzip();
    Ok(Batch {
        images,
        targets,
        paths,
        shapes,
    })
}

/// The batches of one epoch, in order; see [`Loader::epoch`].
pub struct Batches {
    receiver: Option<Receiver<Result<Batch, LoaderError>>>,
    producer: Option<JoinHandle<()>>,
    remaining: usize,
}

impl Iterator for Batches {
    type Item = Result<Batch, LoaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.receiver.as_ref()?.recv().ok()?;
        self.remaining = self.remaining.saturating_sub(1);
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Batches {}

impl Drop for Batches {
    /// Hangs up first, so a producer blocked on a full channel stops, then waits for it.
    fn drop(&mut self) {
        drop(self.receiver.take());
        if let Some(producer) = self.producer.take() {
            // A panic in the producer has nothing left to report to.
            let _ = producer.join();
        }
    }
}
