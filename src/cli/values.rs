//! Value parsers: numbers on the command line (negative numbers are read as values, never
//! as unknown options, and refused with the allowed range) and the device.

use actyolo::util::error::chain;
use candle_core::Device;

/// `--device`: `cpu`, a GPU index or `cuda:N`, opened here so that a GPU a build cannot
/// use is refused before any work starts.
pub fn device(text: &str) -> Result<Device, String> {
    actyolo::ops::device::select(text).map_err(|e| chain(&e))
}

/// A whole number of at least 1 (sizes and counts).
pub fn positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<i128>() {
        Ok(v) if v >= 1 && v <= usize::MAX as i128 => Ok(v as usize),
        Ok(v) => Err(format!(
            "{v} is out of range: give a whole number of 1 or more"
        )),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// A number from 0 to 1 (thresholds).
pub fn fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is out of range: give a number from 0 to 1")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

/// A percentile above 50 and at most 100 (calibration ranges).
pub fn upper_percentile(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v > 50.0 && v <= 100.0 => Ok(v),
        Ok(v) => Err(format!(
            "{v} is out of range: give a percentile above 50 and at most 100, such as 99.99"
        )),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}
