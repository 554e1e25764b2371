//! A fused model under simulated INT8 post-training quantization (see
//! [`crate::ops::fake_quant`]): calibrated on training images letterboxed to the square
//! inference size, then run with every convolution's operands quantized. It predicts
//! through [`Predict`], so `val` scores it as it scores any model.

use std::sync::{Arc, Mutex};

use candle_core::Tensor;

use super::predict::{Predict, PredictError};
use crate::data::dataset::{DataConfig, Dataset, DatasetError, Split};
use crate::data::loader::{Loader, LoaderConfig, LoaderError};
use crate::model::build::Model;
use crate::ops::fake_quant::{self, Calibration, Observed, Uint8, WeightCache};
use crate::util::runtime::on_pool;

/// Calibration images per batch.
const CALIBRATION_BATCH: usize = 16;

/// How the simulation is calibrated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Int8Options {
    /// Training images calibrated on (the first, in the dataset's order).
    pub calib_images: usize,
    pub calibration: Calibration,
}

impl Default for Int8Options {
    fn default() -> Self {
        Int8Options {
            calib_images: 128,
            calibration: Calibration::MinMax,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Int8Error {
    #[error("INT8 calibration: the train split")]
    Dataset(#[source] DatasetError),
    #[error("INT8 calibration: the train split")]
    Loader(#[source] LoaderError),
    #[error("INT8 calibration: --calib-images must be at least 1")]
    NoImages,
    #[error("INT8 calibration")]
    Tensor(#[from] candle_core::Error),
}

/// A fused model and the uint8 quantization of each convolution's input.
pub struct Int8Model {
    model: Model,
    inputs: Arc<Vec<Uint8>>,
    /// The images calibrated on (fewer than asked when the split is smaller).
    images: usize,
    weights: Mutex<WeightCache>,
}

impl Int8Model {
    /// Calibrates the fused `model` at the square size `imgsz` on the first
    /// `options.calib_images` training images of `data`.
    pub fn calibrate(
        model: Model,
        data: &DataConfig,
        imgsz: usize,
        options: &Int8Options,
    ) -> Result<Int8Model, Int8Error> {
        if options.calib_images == 0 {
            return Err(Int8Error::NoImages);
        }
        let mut dataset = Dataset::from_config(data, Split::Train).map_err(Int8Error::Dataset)?;
        dataset.records.truncate(options.calib_images);
        let images = dataset.records.len();
        let loader = Loader::val(
            Arc::new(dataset),
            LoaderConfig {
                imgsz: imgsz as u32,
                batch_size: CALIBRATION_BATCH,
                rect: None,
                ..Default::default()
            },
        )
        .map_err(Int8Error::Loader)?;
        let keep_sample = matches!(options.calibration, Calibration::Percentile(_));
        let mut seen: Vec<Observed> = Vec::new();
        for batch in loader.epoch(0).map_err(Int8Error::Loader)? {
            let batch = batch.map_err(Int8Error::Loader)?;
            on_pool(|| {
                fake_quant::observe(&mut seen, keep_sample, || {
                    model.forward(&batch.images, false)
                })
            })?;
        }
        let inputs = seen
            .iter()
            .map(|o| {
                let (min, max) = o.range(options.calibration);
                Uint8::from_range(min, max)
            })
            .collect();
        Ok(Int8Model {
            model,
            inputs: Arc::new(inputs),
            images,
            weights: Mutex::new(Vec::new()),
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn calibration_images(&self) -> usize {
        self.images
    }

    /// The convolutions' input quantizations, in forward order.
    pub fn inputs(&self) -> &[Uint8] {
        &self.inputs
    }
}

impl Predict for Int8Model {
    fn predict(&self, images: &Tensor) -> Result<(Tensor, Option<Vec<Tensor>>), PredictError> {
        // The mode is per thread: set where the forward pass runs.
        let (decoded, raw) = on_pool(|| {
            let mut weights = self.weights.lock().unwrap_or_else(|e| e.into_inner());
            fake_quant::quantized(&self.inputs, &mut weights, || self.model.predict(images))
        })?;
        Ok((decoded, Some(raw)))
    }

    fn names(&self) -> &[String] {
        &self.model.names
    }

    fn anchor_free(&self) -> bool {
        self.model.head.anchored().is_none()
    }
}
