//! YOLO label files (`class cx cy w h` per line, normalised) and the checks of
//! ultralytics' `verify_image_label`.

use serde::{Deserialize, Serialize};

/// One object: its class and box as normalised centre x, centre y, width and height.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub class: usize,
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
}

/// Why a label file was rejected; `line` counts from 1 as editors do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelError {
    #[error("line {line}: {columns} columns; a box label has 5 (class cx cy w h)")]
    Columns { line: usize, columns: usize },
    #[error("line {line}: a polygon label needs a class and x y pairs, but has {coordinates} coordinates")]
    Polygon { line: usize, coordinates: usize },
    #[error("line {line}: `{text}` is not a number")]
    NotNumber { line: usize, text: String },
    #[error("line {line}: class {value} is not a whole number")]
    ClassNotInteger { line: usize, value: f32 },
    #[error("line {line}: class {class} out of range [0, {nc}); fix the label or the names in data.yaml")]
    ClassRange { line: usize, class: f32, nc: usize },
    #[error("line {line}: {name} {value} is outside [0, 1]; coordinates must be normalised by the image width and height")]
    Coordinate {
        line: usize,
        name: &'static str,
        value: f32,
    },
}

/// A label file's boxes, after removing exact duplicate rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLabels {
    pub labels: Vec<Label>,
    pub duplicates_removed: usize,
}

/// Parses a label file's text. Blank lines are skipped; as in ultralytics, when any row has
/// more than 6 values every row is a polygon (`class x1 y1 x2 y2 ...`) and becomes the
/// polygon's bounding box; otherwise every row must have exactly 5 values.
pub fn parse_labels(text: &str, nc: usize) -> Result<ParsedLabels, LabelError> {
    let rows: Vec<(usize, Vec<&str>)> = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.split_whitespace().collect::<Vec<_>>()))
        .filter(|(_, fields)| !fields.is_empty())
        .collect();
    let polygons = rows.iter().any(|(_, fields)| fields.len() > 6);
    let mut labels: Vec<Label> = Vec::with_capacity(rows.len());
    let mut duplicates_removed = 0;
    for (line, fields) in &rows {
        let values = parse_numbers(*line, fields)?;
        let (class, xywh) = if polygons {
            polygon_box(*line, &values)?
        } else {
            box_row(*line, &values)?
        };
        let label = check_label(*line, class, xywh, nc)?;
        if labels.contains(&label) {
            duplicates_removed += 1;
        } else {
            labels.push(label);
        }
    }
    Ok(ParsedLabels {
        labels,
        duplicates_removed,
    })
}

fn parse_numbers(line: usize, fields: &[&str]) -> Result<Vec<f32>, LabelError> {
    fields
        .iter()
        .map(|text| {
            text.parse::<f32>().map_err(|_| LabelError::NotNumber {
                line,
                text: text.to_string(),
            })
        })
        .collect()
}

fn box_row(line: usize, values: &[f32]) -> Result<(f32, [f32; 4]), LabelError> {
    match values {
        &[class, cx, cy, w, h] => Ok((class, [cx, cy, w, h])),
        _ => Err(LabelError::Columns {
            line,
            columns: values.len(),
        }),
    }
}

/// ultralytics' `segments2boxes`: the polygon's extent as centre and size.
fn polygon_box(line: usize, values: &[f32]) -> Result<(f32, [f32; 4]), LabelError> {
    let coordinates = values.len() - 1;
    if coordinates < 2 || !coordinates.is_multiple_of(2) {
        return Err(LabelError::Polygon { line, coordinates });
    }
    let points = values[1..].chunks_exact(2);
    let (x0, y0, x1, y1) = points.fold(
        (
            f32::INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        ),
        |(a, b, c, d), p| (a.min(p[0]), b.min(p[1]), c.max(p[0]), d.max(p[1])),
    );
    Ok((
        values[0],
        [(x0 + x1) / 2.0, (y0 + y1) / 2.0, x1 - x0, y1 - y0],
    ))
}

/// ultralytics requires every value to be >= 0 and the coordinates <= 1; the class must
/// also be a whole number below `nc` (ultralytics checks that later, for the whole set).
fn check_label(
    line: usize,
    class: f32,
    [cx, cy, w, h]: [f32; 4],
    nc: usize,
) -> Result<Label, LabelError> {
    if class.fract() != 0.0 {
        return Err(LabelError::ClassNotInteger { line, value: class });
    }
    if !(class >= 0.0 && class < nc as f32) {
        return Err(LabelError::ClassRange { line, class, nc });
    }
    for (name, value) in [("x", cx), ("y", cy), ("width", w), ("height", h)] {
        if !(0.0..=1.0).contains(&value) {
            return Err(LabelError::Coordinate { line, name, value });
        }
    }
    Ok(Label {
        class: class as usize,
        cx,
        cy,
        w,
        h,
    })
}
