//! Reading images: the formats ultralytics accepts, decoding to 8-bit RGB turned upright by
//! EXIF orientation (as `cv2.imread`), and the checks that keep one bad file from stopping a
//! whole run: a size limit read from the header before any pixel is decoded, and the end
//! marker of a JPEG.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use image::{
    metadata::Orientation, DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage,
};

/// ultralytics' `IMG_FORMATS`. Decoding is up to the `image` crate, which reads all but
/// dng and pfm; those are reported as unreadable like any other file that fails.
pub const IMG_FORMATS: &[&str] = &[
    "bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm",
];

/// The most pixels an image may have: PIL's decompression-bomb bound, which ultralytics
/// inherits. A header can claim any size; this keeps a 69-byte file from asking for
/// terabytes.
pub const MAX_PIXELS: u64 = 89_478_485;

#[derive(Debug, thiserror::Error)]
pub enum ReadImageError {
    #[error("cannot read")]
    Io(#[from] std::io::Error),
    #[error("cannot decode")]
    Decode(#[from] image::ImageError),
    #[error("the image is empty ({width}x{height} pixels)")]
    Empty { width: u32, height: u32 },
    #[error("the header claims {width}x{height} pixels, more than the limit of {MAX_PIXELS} (a corrupt or hostile file?)")]
    TooLarge { width: u32, height: u32 },
}

/// A decoded image, and whether it is a JPEG cut short (no end-of-image marker), which the
/// decoder reads as far as it goes.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    pub image: RgbImage,
    pub truncated_jpeg: bool,
}

/// The warning for a truncated JPEG that was still decoded.
pub const TRUNCATED_JPEG: &str =
    "corrupt JPEG: the file ends before its end-of-image marker (truncated?); decoded as far as it goes";

/// Has a name ending in one of [`IMG_FORMATS`] (case-insensitively).
pub fn has_image_extension(path: &Path) -> bool {
    let extension = path.extension().map(|e| e.to_string_lossy().to_lowercase());
    extension.is_some_and(|e| IMG_FORMATS.contains(&e.as_str()))
}

/// Reads an image as 8-bit RGB (see [`decode_image`]).
pub fn read_image(path: &Path) -> Result<RgbImage, ReadImageError> {
    decode_image(path).map(|decoded| decoded.image)
}

/// Reads an image as 8-bit RGB, turned upright by its EXIF orientation. The format is taken
/// from the content, so a misnamed file still reads. The size is checked from the header
/// before decoding.
pub fn decode_image(path: &Path) -> Result<DecodedImage, ReadImageError> {
    let reader = ImageReader::open(path)?.with_guessed_format()?;
    let is_jpeg = reader.format() == Some(ImageFormat::Jpeg);
    let mut decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ReadImageError::TooLarge { width, height });
    }
    // A broken orientation tag is no reason to drop the image: leave it as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder)?;
    image.apply_orientation(orientation);
    let rgb = image.into_rgb8();
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(ReadImageError::Empty {
            width: rgb.width(),
            height: rgb.height(),
        });
    }
    Ok(DecodedImage {
        image: rgb,
        truncated_jpeg: is_jpeg && !ends_with_jpeg_marker(path)?,
    })
}

/// ultralytics' check: a complete JPEG's last two bytes are the end-of-image marker FF D9.
fn ends_with_jpeg_marker(path: &Path) -> std::io::Result<bool> {
    let mut file = std::fs::File::open(path)?;
    if file.metadata()?.len() < 2 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-2))?;
    let mut tail = [0u8; 2];
    file.read_exact(&mut tail)?;
    Ok(tail == [0xFF, 0xD9])
}

/// Why a path with an image's name cannot be read as one, if it cannot: a folder so named,
/// a broken or looping symbolic link, something that is not a regular file.
pub fn image_path_problem(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Some("is a folder, not an image file".into()),
        Ok(meta) if !meta.is_file() => Some("is not a regular file".into()),
        Ok(_) => None,
        Err(e) => Some(format!("cannot read: {e}")),
    }
}
