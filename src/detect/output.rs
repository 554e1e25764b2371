//! What detect writes: the run folder, YOLO label lines and COCO-style predictions,
//! formatted as ultralytics' detect.py and val.py write them.

use std::path::{Path, PathBuf};

use crate::util::format::format_g;

use image::codecs::jpeg::JpegEncoder;
use image::{ImageFormat, RgbImage};
use serde::Serialize;

use crate::eval::Detection;

/// One YOLO label line, `cls cx cy w h [conf]` normalised to the image of `width` ×
/// `height`, computed in float32 as detect.py does.
pub fn label_line(detection: &Detection, width: u32, height: u32, save_conf: bool) -> String {
    let [x1, y1, x2, y2] = detection.bbox;
    let (w, h) = (width as f32, height as f32);
    let xywh = [
        (x1 + x2) / 2.0 / w,
        (y1 + y2) / 2.0 / h,
        (x2 - x1) / w,
        (y2 - y1) / h,
    ];
    let mut fields = vec![detection.class as f64];
    fields.extend(xywh.map(f64::from));
    if save_conf {
        fields.push(f64::from(detection.conf));
    }
    fields
        .into_iter()
        .map(format_g)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A COCO `image_id`: the file stem, as a number when it is one (as val.py).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ImageId {
    Number(u64),
    Name(String),
}

impl ImageId {
    pub fn from_stem(stem: &str) -> ImageId {
        let numeric = !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit());
        match stem.parse() {
            Ok(n) if numeric => ImageId::Number(n),
            _ => ImageId::Name(stem.to_string()),
        }
    }
}

/// One entry of a COCO results file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CocoPrediction {
    pub image_id: ImageId,
    pub category_id: usize,
    /// x, y (top left), w, h in original pixels, to 3 decimals.
    pub bbox: [f64; 4],
    /// To 5 decimals.
    pub score: f64,
}

impl CocoPrediction {
    /// As val.py's `save_one_json`, with class indices as category ids.
    pub fn new(image_id: ImageId, detection: &Detection) -> CocoPrediction {
        let [x1, y1, x2, y2] = detection.bbox;
        let (w, h) = (x2 - x1, y2 - y1);
        let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
        let bbox = [cx - w / 2.0, cy - h / 2.0, w, h].map(|v| round_to(f64::from(v), 3));
        CocoPrediction {
            image_id,
            category_id: detection.class,
            bbox,
            score: round_to(f64::from(detection.conf), 5),
        }
    }
}

/// Python's `round(x, decimals)`: the nearest float to the correctly rounded decimal.
fn round_to(x: f64, decimals: usize) -> f64 {
    format!("{x:.decimals$}").parse().unwrap_or(x)
}

/// Saves in the format of the file name (JPEG at quality 95, as cv2.imwrite); a name
/// whose format cannot be written gets a `.png` extension instead. Returns the path used.
pub fn save_image(image: &RgbImage, path: &Path) -> Result<PathBuf, image::ImageError> {
    match ImageFormat::from_path(path) {
        Ok(ImageFormat::Jpeg) => {
            let file = std::fs::File::create(path).map_err(image::ImageError::IoError)?;
            image.write_with_encoder(JpegEncoder::new_with_quality(
                std::io::BufWriter::new(file),
                95,
            ))?;
            Ok(path.to_owned())
        }
        Ok(format) if format.writing_enabled() => image
            .save_with_format(path, format)
            .map(|()| path.to_owned()),
        _ => {
            let png = path.with_extension("png");
            image.save_with_format(&png, ImageFormat::Png).map(|()| png)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_stems_are_numbers() {
        assert_eq!(ImageId::from_stem("000123"), ImageId::Number(123));
        assert_eq!(ImageId::from_stem("img_1"), ImageId::Name("img_1".into()));
        assert_eq!(ImageId::from_stem("-1"), ImageId::Name("-1".into()));
        assert_eq!(ImageId::from_stem(""), ImageId::Name(String::new()));
    }

    #[test]
    fn rounding_is_pythons() {
        assert_eq!(round_to(12.34567, 3), 12.346);
        assert_eq!(round_to(0.123456789, 5), 0.12346);
    }
}
