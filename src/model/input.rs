//! Input sizes a model accepts: `--imgsz` rounded to the model's stride as ultralytics'
//! `check_img_size` does, and a refusal, before any work, of sizes whose feature maps
//! cannot fit in this machine's memory (an allocation failure would abort the process).

use super::build::Model;

/// The largest `--imgsz`: far above any YOLO input (P6 models use 1280), and small enough
/// that sizes and pixel counts never overflow.
pub const MAX_IMGSZ: usize = 16384;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputSizeError {
    #[error("--imgsz {0}: must be between 1 and {MAX_IMGSZ}")]
    OutOfRange(usize),
    #[error("--imgsz {imgsz} with batch {batch} needs about {need_gib:.1} GiB for the feature maps of {model}, but this machine has {available_gib:.1} GiB available; use a smaller --imgsz or --batch")]
    Memory {
        imgsz: usize,
        batch: usize,
        model: String,
        need_gib: f64,
        available_gib: f64,
    },
}

/// `--imgsz` after rounding up to a multiple of the stride (and at least `floor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedSize {
    pub requested: usize,
    pub used: usize,
    pub stride: usize,
}

impl CheckedSize {
    /// ultralytics' warning when the size had to change.
    pub fn warning(&self) -> Option<String> {
        (self.used != self.requested).then(|| {
            format!(
                "WARNING ⚠️ --imgsz {} must be multiple of max stride {}, updating to {}",
                self.requested, self.stride, self.used
            )
        })
    }
}

/// ultralytics' `check_img_size(imgsz, s=stride, floor)`: the size rounded up to a multiple
/// of `stride`, and at least `floor`.
pub fn check_img_size(
    imgsz: usize,
    stride: usize,
    floor: usize,
) -> Result<CheckedSize, InputSizeError> {
    if !(1..=MAX_IMGSZ).contains(&imgsz) {
        return Err(InputSizeError::OutOfRange(imgsz));
    }
    let used = imgsz.next_multiple_of(stride.max(1)).max(floor);
    Ok(CheckedSize {
        requested: imgsz,
        used,
        stride,
    })
}

/// What the feature maps are kept for: inference keeps each map until its last reader;
/// training also keeps every intermediate for the backward pass, and its gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Inference,
    Training,
}

impl Workload {
    /// Bytes per element of the layers' outputs, measured with peak RSS (`detect` at
    /// 4096 px: 1.67 GB for 0.44 G elements' worth of maps plus the input; a yolov5n
    /// training step at batch 8, 320 px: 366 MiB for 21 M elements): the outputs, the
    /// buffers beside them while a layer runs, and (training) what the backward pass keeps
    /// and its gradients.
    fn bytes_per_element(self) -> f64 {
        match self {
            Workload::Inference => 16.0,
            Workload::Training => 24.0,
        }
    }
}

/// Bytes per input pixel: the letterboxed 8-bit image and its float32 tensor, with room.
const BYTES_PER_PIXEL: f64 = 16.0;

/// Refuses a size whose feature maps would not fit in the memory this machine has
/// available (`MemAvailable`); where that is unknown, nothing is refused.
pub fn check_memory(
    model: &Model,
    imgsz: usize,
    batch: usize,
    workload: Workload,
) -> Result<(), InputSizeError> {
    let Some(available) = available_memory() else {
        return Ok(());
    };
    let pixels = (imgsz * imgsz) as f64;
    let per_image = model.feature_elements((imgsz, imgsz)) * workload.bytes_per_element()
        + pixels * BYTES_PER_PIXEL;
    let need = per_image * batch as f64;
    if need > available as f64 {
        let gib = |bytes: f64| bytes / f64::from(1u32 << 30);
        return Err(InputSizeError::Memory {
            imgsz,
            batch,
            model: model.config.source.clone(),
            need_gib: gib(need),
            available_gib: gib(available as f64),
        });
    }
    Ok(())
}

/// `MemAvailable` from /proc/meminfo, in bytes.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
