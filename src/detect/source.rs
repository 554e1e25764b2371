//! The images of `--source`, found and read as ultralytics' `LoadImages` does: a file, a
//! folder (its `*.*`), or a glob pattern, sorted by path; images picked by extension.

use std::path::PathBuf;

use glob::{MatchOptions, Pattern};

use crate::data::image::{has_image_extension, image_path_problem, IMG_FORMATS};

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
    #[error("source {given}: cannot make it an absolute path")]
    Path {
        given: String,
        #[source]
        error: std::io::Error,
    },
    #[error("source {given}: invalid glob pattern")]
    Pattern {
        given: String,
        #[source]
        error: glob::PatternError,
    },
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

/// Splits files into images (by extension) and others; folders are left out silently,
/// unless named like an image.
fn partition(mut paths: Vec<PathBuf>) -> SourceFiles {
    paths.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    let mut files = SourceFiles::default();
    for path in paths {
        if has_image_extension(&path) {
            match image_path_problem(&path) {
                Some(problem) => files.skipped.push((path, problem)),
                None => files.images.push(path),
            }
        } else if !path.is_dir() {
            files.skipped.push((
                path,
                format!("not a supported image format ({})", IMG_FORMATS.join(", ")),
            ));
        }
    }
    files
}
