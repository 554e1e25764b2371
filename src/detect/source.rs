//! The images of `--source`, found and read as ultralytics' `LoadImages` does: a file, a
//! folder (its `*.*`), or a glob pattern, sorted by path; images picked by extension.

use std::path::{Path, PathBuf};

use glob::{MatchOptions, Pattern};
use image::{metadata::Orientation, DynamicImage, ImageDecoder, ImageReader, RgbImage};

/// ultralytics' `IMG_FORMATS`. Decoding is up to the `image` crate, which reads all but
/// dng and pfm; those are reported as unreadable like any other file that fails.
pub const IMG_FORMATS: &[&str] = &[
    "bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm",
];

/// What `--source` names: the images, and the files left out with the reason why.
#[derive(Debug, Default)]
pub struct SourceFiles {
    pub images: Vec<PathBuf>,
    pub skipped: Vec<(PathBuf, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {} does not exist", .0.display())]
    NotFound(PathBuf),
    #[error("source {given}: cannot make it an absolute path: {error}")]
    Path {
        given: String,
        error: std::io::Error,
    },
    #[error("source {given}: invalid glob pattern: {error}")]
    Pattern {
        given: String,
        error: glob::PatternError,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ReadImageError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot decode: {0}")]
    Decode(#[from] image::ImageError),
    #[error("the image is empty ({width}x{height} pixels)")]
    Empty { width: u32, height: u32 },
}

/// Lists the files `source` names, as absolute paths (ultralytics resolves them too).
pub fn list_source(source: &str) -> Result<SourceFiles, SourceError> {
    let path = std::path::absolute(source).map_err(|error| SourceError::Path {
        given: source.to_string(),
        error,
    })?;
    let pattern = if source.contains('*') {
        path.to_string_lossy().into_owned()
    } else if path.is_dir() {
        format!("{}/*.*", Pattern::escape(&path.to_string_lossy()))
    } else if path.is_file() {
        return Ok(partition(vec![path]));
    } else {
        return Err(SourceError::NotFound(path));
    };
    // As Python's glob: `*` does not match a leading dot.
    let options = MatchOptions {
        require_literal_leading_dot: true,
        ..MatchOptions::new()
    };
    let entries = glob::glob_with(&pattern, options).map_err(|error| SourceError::Pattern {
        given: source.to_string(),
        error,
    })?;
    let mut files = SourceFiles::default();
    let mut found = Vec::new();
    for entry in entries {
        match entry {
            Ok(path) => found.push(path),
            Err(e) => files
                .skipped
                .push((e.path().to_owned(), format!("cannot read: {}", e.error()))),
        }
    }
    let listed = partition(found);
    files.images = listed.images;
    files.skipped.extend(listed.skipped);
    Ok(files)
}

/// Splits files into images (by extension) and others; folders are left out silently.
fn partition(mut paths: Vec<PathBuf>) -> SourceFiles {
    paths.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    let mut files = SourceFiles::default();
    for path in paths.into_iter().filter(|p| p.is_file()) {
        if has_image_extension(&path) {
            files.images.push(path);
        } else {
            files.skipped.push((
                path,
                format!("not a supported image format ({})", IMG_FORMATS.join(", ")),
            ));
        }
    }
    files
}

fn has_image_extension(path: &Path) -> bool {
    let extension = path.extension().map(|e| e.to_string_lossy().to_lowercase());
    extension.is_some_and(|e| IMG_FORMATS.contains(&e.as_str()))
}

/// Reads an image as 8-bit RGB, turned upright by its EXIF orientation as `cv2.imread`
/// does. The format is taken from the content, so a misnamed file still reads.
pub fn read_image(path: &Path) -> Result<RgbImage, ReadImageError> {
    let mut decoder = ImageReader::open(path)?
        .with_guessed_format()?
        .into_decoder()?;
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
    Ok(rgb)
}
