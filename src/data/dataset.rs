//! A YOLO-format dataset: `data.yaml`, the image files of a split, their verified labels,
//! and the label cache, as ultralytics' `check_dataset` and `LoadImagesAndLabels` build
//! them.
//!
//! Nothing here prints: problems with single files become [`DatasetWarning`]s in the
//! [`DatasetReport`], and only problems with the dataset as a whole are errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use glob::{MatchOptions, Pattern};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::data::image::{
    decode_image, has_image_extension, image_path_problem, IMG_FORMATS, TRUNCATED_JPEG,
};
use crate::data::labels::{parse_labels, Label};
use crate::util::error::chain;
use crate::util::fs::{read_text, FileError};

/// The parts of a dataset that `data.yaml` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub fn key(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// `data.yaml`: where the splits are, and the class names.
#[derive(Debug, Clone, PartialEq)]
pub struct DataConfig {
    pub file: PathBuf,
    /// The dataset root: `path:` resolved against the YAML's folder (the folder itself when absent).
    pub root: PathBuf,
    pub train: Vec<PathBuf>,
    pub val: Vec<PathBuf>,
    pub test: Vec<PathBuf>,
    pub names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataConfigError {
    #[error("{file}: cannot read")]
    Read {
        file: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{file}: not valid YAML")]
    Yaml {
        file: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{file}: `{key}`")]
    Key {
        file: PathBuf,
        key: &'static str,
        #[source]
        source: KeyError,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
}

/// What is wrong with the value of a `data.yaml` key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("list items must be paths")]
    NotPathItems,
    #[error("must be a path or a list of paths")]
    NotPaths,
    #[error("each name must be text")]
    NameNotText,
    #[error("key `{0}` is not a class index; use `0: name`")]
    NotIndex(String),
    #[error("the name of class {0} must be text")]
    IndexedNameNotText(u64),
    #[error(
        "class indices must run 0, 1, 2, ... without gaps; expected {expected}, found {found}"
    )]
    Gap { expected: usize, found: u64 },
    #[error("must be a list of names or a map {{0: name, ...}}")]
    NotNames,
    #[error("there must be at least one class")]
    NoClasses,
}

impl DataConfig {
    /// Reads `data.yaml`. `train`, `val` and `test` are each a folder of images, a text file
    /// listing image paths, or a list of those, relative to `path:`; `names` is a list or a
    /// map `{0: name, ...}`; `nc`, when given, must equal the number of names.
    pub fn load(file: &Path) -> Result<DataConfig, DataConfigError> {
        let text = std::fs::read_to_string(file).map_err(|error| DataConfigError::Read {
            file: file.to_path_buf(),
            error,
        })?;
        let invalid = |message: String| DataConfigError::Invalid {
            file: file.to_path_buf(),
            message,
        };
        let yaml: Value = serde_yaml::from_str(&text).map_err(|source| DataConfigError::Yaml {
            file: file.to_path_buf(),
            source,
        })?;
        let key_error = |key: &'static str| {
            move |source: KeyError| DataConfigError::Key {
                file: file.to_path_buf(),
                key,
                source,
            }
        };
        let map = yaml
            .as_mapping()
            .ok_or_else(|| invalid("expected a mapping with train, val and names".into()))?;
        let get = |key: &str| map.get(key).filter(|v| !v.is_null());
        let folder = std::path::absolute(file).map_err(|error| DataConfigError::Read {
            file: file.to_path_buf(),
            error,
        })?;
        let folder = folder.parent().unwrap_or(Path::new("/"));
        let root = match get("path") {
            Some(path) => folder.join(
                scalar_text(path).ok_or_else(|| invalid("`path` must be a folder name".into()))?,
            ),
            None => folder.to_path_buf(),
        };
        // Resolved like ultralytics' `.resolve()`, so that `..` does not reach the image paths.
        let root = std::fs::canonicalize(&root).unwrap_or(root);
        let split = |key: &'static str, required: bool| {
            match get(key) {
            Some(value) => sources(value, &root).map_err(key_error(key)),
            None if required => Err(invalid(format!("the `{key}:` key is missing; it names a folder of images or a .txt list of image paths"))),
            None => Ok(Vec::new()),
        }
        };
        let (train, val, test) = (
            split("train", true)?,
            split("val", true)?,
            split("test", false)?,
        );
        let names =
            match get("names") {
                Some(value) => parse_names(value).map_err(key_error("names"))?,
                None => return Err(invalid(
                    "the `names:` key is missing; list the class names, e.g. `names: [cat, dog]`"
                        .into(),
                )),
            };
        if let Some(nc) = get("nc") {
            if nc.as_u64() != Some(names.len() as u64) {
                return Err(invalid(format!(
                    "`nc: {}` disagrees with the {} class names; remove `nc` or fix it",
                    scalar_text(nc).unwrap_or_default(),
                    names.len()
                )));
            }
        }
        Ok(DataConfig {
            file: file.to_path_buf(),
            root,
            train,
            val,
            test,
            names,
        })
    }

    pub fn nc(&self) -> usize {
        self.names.len()
    }

    pub fn sources(&self, split: Split) -> &[PathBuf] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A split's sources resolved against the root; ultralytics also tries a `../x` without
/// its `../` when the first does not exist.
fn sources(value: &Value, root: &Path) -> Result<Vec<PathBuf>, KeyError> {
    let names: Vec<String> = match value {
        Value::Sequence(items) => items
            .iter()
            .map(|item| scalar_text(item).ok_or(KeyError::NotPathItems))
            .collect::<Result<_, _>>()?,
        other => vec![scalar_text(other).ok_or(KeyError::NotPaths)?],
    };
    let resolve = |name: &String| {
        let path = root.join(name);
        match name.strip_prefix("../") {
            Some(rest) if !path.exists() => root.join(rest),
            _ => path,
        }
    };
    Ok(names.iter().map(resolve).collect())
}

fn parse_names(value: &Value) -> Result<Vec<String>, KeyError> {
    let names = match value {
        Value::Sequence(items) => items
            .iter()
            .map(|item| scalar_text(item).ok_or(KeyError::NameNotText))
            .collect::<Result<Vec<_>, _>>()?,
        Value::Mapping(map) => {
            let mut by_index = BTreeMap::new();
            for (key, name) in map {
                let index = key
                    .as_u64()
                    .ok_or_else(|| KeyError::NotIndex(scalar_text(key).unwrap_or_default()))?;
                by_index.insert(
                    index,
                    scalar_text(name).ok_or(KeyError::IndexedNameNotText(index))?,
                );
            }
            if let Some((expected, &found)) = by_index
                .keys()
                .enumerate()
                .find(|&(position, &index)| position as u64 != index)
            {
                return Err(KeyError::Gap { expected, found });
            }
            by_index.into_values().collect()
        }
        _ => return Err(KeyError::NotNames),
    };
    if names.is_empty() {
        return Err(KeyError::NoClasses);
    }
    Ok(names)
}

/// A problem with one file; the image it belongs to may or may not have been kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetWarning {
    pub file: PathBuf,
    pub message: String,
}

impl fmt::Display for DatasetWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WARNING ⚠️ {}: {}", self.file.display(), self.message)
    }
}

/// Counts after verification: images kept, label boxes, kept images without boxes, and
/// images skipped as corrupt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetCounts {
    pub images: usize,
    pub labels: usize,
    pub backgrounds: usize,
    pub corrupt: usize,
}

/// Whether the label cache was used.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheStatus {
    Loaded(PathBuf),
    Created(PathBuf),
    NotWritable { path: PathBuf, reason: String },
}

/// What loading a split found; the CLI prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetReport {
    pub cache: CacheStatus,
    pub counts: DatasetCounts,
    pub warnings: Vec<DatasetWarning>,
}

impl DatasetReport {
    pub fn summary(&self) -> String {
        let c = &self.counts;
        format!(
            "found {} images, {} labels, {} backgrounds, {} corrupt",
            c.images, c.labels, c.backgrounds, c.corrupt
        )
    }
}

/// One usable image: its path, original size and boxes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub labels: Vec<Label>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path} does not exist; a split names a folder of images, a .txt list of image paths, or a list of those")]
    MissingSource { path: PathBuf },
    #[error("{path}: cannot read")]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{path}: invalid path pattern")]
    Pattern {
        path: PathBuf,
        #[source]
        error: glob::PatternError,
    },
    #[error("no images found in {sources}; image files end in {}", IMG_FORMATS.join(", "))]
    NoImages { sources: String },

    #[error("{file}: the `{split}:` split is empty or missing")]
    NoSplit { file: PathBuf, split: &'static str },
}

/// A verified split: the usable images and what loading them found.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub records: Vec<ImageRecord>,
    pub report: DatasetReport,
}

/// Bumped whenever the cache's contents or the checks change meaning.
const CACHE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct LabelCache {
    version: u32,
    hash: String,
    records: Vec<ImageRecord>,
    counts: DatasetCounts,
    warnings: Vec<DatasetWarning>,
}

impl Dataset {
    /// Loads one split of `config`.
    pub fn from_config(config: &DataConfig, split: Split) -> Result<Dataset, DatasetError> {
        let sources = config.sources(split);
        if sources.is_empty() {
            return Err(DatasetError::NoSplit {
                file: config.file.clone(),
                split: split.key(),
            });
        }
        Dataset::load(sources, config.nc())
    }

    /// Finds the images of `sources`, and verifies them and their labels for `nc`
    /// classes, or reads the result from the label cache when no file has changed since.
    pub fn load(sources: &[PathBuf], nc: usize) -> Result<Dataset, DatasetError> {
        let listing = list_images(sources)?;
        let images = listing.images;
        let labels: Vec<PathBuf> = images.iter().map(|image| label_path(image)).collect();
        let cache_path = cache_path(sources, &labels);
        let hash = files_hash(&labels, &images, nc);
        let (cache, status) = match read_cache(&cache_path, &hash) {
            Some(cache) => (cache, CacheStatus::Loaded(cache_path)),
            None => {
                let (records, counts, warnings) = verify_all(&images, &labels, nc);
                let cache = LabelCache {
                    version: CACHE_VERSION,
                    hash,
                    records,
                    counts,
                    warnings,
                };
                let status = match write_cache(&cache_path, &cache) {
                    Ok(()) => CacheStatus::Created(cache_path),
                    Err(e) => CacheStatus::NotWritable {
                        path: cache_path,
                        reason: chain(&e),
                    },
                };
                (cache, status)
            }
        };
        // Paths that could not even be listed as images are found afresh every time.
        let mut counts = cache.counts;
        counts.corrupt += listing.skipped.len();
        let mut warnings = listing.skipped;
        warnings.extend(cache.warnings);
        Ok(Dataset {
            records: cache.records,
            report: DatasetReport {
                cache: status,
                counts,
                warnings,
            },
        })
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The image files a split's sources name, and the paths that look like images but
/// cannot be one (each with its warning).
#[derive(Debug, Default)]
pub struct ImageListing {
    pub images: Vec<PathBuf>,
    pub skipped: Vec<DatasetWarning>,
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|s| s.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The image files of the sources, sorted: every image under a folder (recursively), or
/// the paths a list file names (relative ones against the list's folder).
pub fn list_images(sources: &[PathBuf]) -> Result<ImageListing, DatasetError> {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for source in sources {
        let source = std::path::absolute(source).map_err(|e| DatasetError::Io {
            path: source.clone(),
            error: e,
        })?;
        if source.is_dir() {
            found.extend(files_under(&source, &mut skipped)?);
        } else if source.is_file() {
            found.extend(listed_files(&source)?);
        } else {
            return Err(DatasetError::MissingSource { path: source });
        }
    }
    let mut images = Vec::new();
    for path in found.into_iter().filter(|path| has_image_extension(path)) {
        match image_path_problem(&path) {
            Some(message) => skipped.push(DatasetWarning {
                file: path,
                message: format!("{message} (image skipped)"),
            }),
            None => images.push(path),
        }
    }
    images.sort();
    skipped.sort_by(|a, b| a.file.cmp(&b.file));
    if images.is_empty() && skipped.is_empty() {
        return Err(DatasetError::NoImages {
            sources: join_paths(sources),
        });
    }
    Ok(ImageListing { images, skipped })
}

/// `folder/**/*.*` as Python's recursive glob: hidden names are not matched. Folders that
/// cannot be read are warned about and skipped.
fn files_under(
    folder: &Path,
    skipped: &mut Vec<DatasetWarning>,
) -> Result<Vec<PathBuf>, DatasetError> {
    let pattern = format!("{}/**/*.*", Pattern::escape(&folder.to_string_lossy()));
    let options = MatchOptions {
        require_literal_leading_dot: true,
        ..MatchOptions::new()
    };
    let entries = glob::glob_with(&pattern, options).map_err(|error| DatasetError::Pattern {
        path: folder.to_path_buf(),
        error,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        match entry {
            Ok(path) => files.push(path),
            Err(e) => skipped.push(DatasetWarning {
                file: e.path().to_path_buf(),
                message: format!("cannot read: {} (skipped)", e.error()),
            }),
        }
    }
    Ok(files)
}

/// The largest image list file read.
const MAX_LIST_BYTES: u64 = 256 << 20;

fn listed_files(list: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let text = read_text(list, MAX_LIST_BYTES).map_err(|error| DatasetError::Io {
        path: list.to_path_buf(),
        error,
    })?;
    let folder = list.parent().unwrap_or(Path::new("/"));
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| folder.join(line.strip_prefix("./").unwrap_or(line)))
        .collect())
}

/// The label file of an image: the last `images` folder in its path becomes `labels`,
/// and the extension `.txt` (ultralytics' `img2label_paths`).
pub fn label_path(image: &Path) -> PathBuf {
    let components: Vec<Component> = image.components().collect();
    let folders = components.len().saturating_sub(1);
    let last_images = components[..folders]
        .iter()
        .rposition(|c| c.as_os_str() == "images");
    let mut path: PathBuf = components
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if Some(i) == last_images {
                "labels".as_ref()
            } else {
                c.as_os_str()
            }
        })
        .collect();
    path.set_extension("txt");
    path
}

/// Where ultralytics keeps the cache: beside a list file, or beside the labels folder
/// (`labels/train.cache` for `labels/train/*.txt`).
fn cache_path(sources: &[PathBuf], labels: &[PathBuf]) -> PathBuf {
    match (sources, labels.first().and_then(|label| label.parent())) {
        ([source], _) if source.is_file() => source.with_extension("cache"),
        (_, Some(folder)) => folder.with_extension("cache"),
        _ => PathBuf::from("labels.cache"),
    }
}

/// FNV-1a over every path with its size and modification time, and over `nc` (the class
/// check depends on it): any added, removed, edited or touched file changes it.
fn files_hash(labels: &[PathBuf], images: &[PathBuf], nc: usize) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &byte in bytes {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(&(CACHE_VERSION as u64).to_le_bytes());
    feed(&(nc as u64).to_le_bytes());
    for path in labels.iter().chain(images) {
        feed(path.as_os_str().as_encoded_bytes());
        let metadata = std::fs::metadata(path).ok();
        let size = metadata.as_ref().map_or(u64::MAX, |m| m.len());
        let modified = metadata
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        feed(&size.to_le_bytes());
        feed(&modified.to_le_bytes());
    }
    format!("{hash:016x}")
}

/// The cache when it exists, parses, and matches the version and the files' hash.
fn read_cache(path: &Path, hash: &str) -> Option<LabelCache> {
    let text = std::fs::read_to_string(path).ok()?;
    let cache: LabelCache = serde_json::from_str(&text).ok()?;
    (cache.version == CACHE_VERSION && cache.hash == hash).then_some(cache)
}

/// Writes through a temporary file and a rename, so a reader never sees half a cache.
fn write_cache(path: &Path, cache: &LabelCache) -> Result<(), FileError> {
    // The cache is plain data: serialising it cannot fail.
    let json = serde_json::to_string(cache).unwrap_or_default();
    let temporary = path.with_extension("cache.tmp");
    std::fs::write(&temporary, json).map_err(FileError::new(&temporary, "cannot write"))?;
    std::fs::rename(&temporary, path).map_err(FileError::new(path, "cannot rename into place"))
}

/// The outcome of checking one image and its label file.
enum Verified {
    Kept {
        record: ImageRecord,
        warnings: Vec<DatasetWarning>,
    },
    Corrupt(DatasetWarning),
}

fn verify_all(
    images: &[PathBuf],
    labels: &[PathBuf],
    nc: usize,
) -> (Vec<ImageRecord>, DatasetCounts, Vec<DatasetWarning>) {
    let outcomes: Vec<Verified> = images
        .par_iter()
        .zip(labels)
        .map(|(image, label)| verify_pair(image, label, nc))
        .collect();
    let (mut records, mut counts, mut warnings) =
        (Vec::new(), DatasetCounts::default(), Vec::new());
    for outcome in outcomes {
        match outcome {
            Verified::Kept {
                record,
                warnings: w,
            } => {
                counts.images += 1;
                counts.labels += record.labels.len();
                counts.backgrounds += usize::from(record.labels.is_empty());
                warnings.extend(w);
                records.push(record);
            }
            Verified::Corrupt(warning) => {
                counts.corrupt += 1;
                warnings.push(warning);
            }
        }
    }
    (records, counts, warnings)
}

/// The largest label file read: a million boxes' worth of lines.
const MAX_LABEL_BYTES: u64 = 64 << 20;

/// ultralytics' smallest usable image side.
const MIN_IMAGE_SIDE: u32 = 10;

/// Decodes the image fully (a header alone can hide a truncated file) and checks its
/// labels; a missing or empty label file makes it a background image.
fn verify_pair(image: &Path, label: &Path, nc: usize) -> Verified {
    let skipped = |file: &Path, message: String| {
        Verified::Corrupt(DatasetWarning {
            file: file.to_path_buf(),
            message: format!("{message} (image skipped)"),
        })
    };
    let decoded = match decode_image(image) {
        Ok(decoded) => decoded,
        Err(e) => return skipped(image, chain(&e)),
    };
    let (width, height) = decoded.image.dimensions();
    if width < MIN_IMAGE_SIDE || height < MIN_IMAGE_SIDE {
        return skipped(
            image,
            format!("image size {width}x{height} is below {MIN_IMAGE_SIDE} pixels"),
        );
    }
    let mut warnings: Vec<DatasetWarning> = Vec::new();
    if decoded.truncated_jpeg {
        warnings.push(DatasetWarning {
            file: image.to_path_buf(),
            message: TRUNCATED_JPEG.to_string(),
        });
    }
    let text = match read_text(label, MAX_LABEL_BYTES) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return skipped(label, format!("cannot read: {e}")),
    };
    match parse_labels(&text, nc) {
        Ok(parsed) => {
            if parsed.duplicates_removed > 0 {
                warnings.push(DatasetWarning {
                    file: label.to_path_buf(),
                    message: format!("{} duplicate labels removed", parsed.duplicates_removed),
                });
            }
            Verified::Kept {
                record: ImageRecord {
                    path: image.to_path_buf(),
                    width,
                    height,
                    labels: parsed.labels,
                },
                warnings,
            }
        }
        Err(e) => skipped(label, e.to_string()),
    }
}
