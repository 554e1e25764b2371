//! Target assignment for YOLOv5's loss: ultralytics' `ComputeLoss.build_targets` (v7.0).
//!
//! At each level a target is matched to every anchor whose shape is within `anchor_t` of
//! its own (both width and height ratios, either way round), and the match is made
//! responsible in the target's own grid cell and in the (up to two) neighbouring cells
//! whose border the centre lies within half a cell of. The predicted centre spans
//! −0.5..1.5 cells, so a neighbour can still reach it.
//!
//! The arithmetic is f32, operation for operation as torch does it in training, so that
//! decisions on a border (a centre exactly on a half cell, a ratio exactly at anchor_t)
//! come out the same.
//!
//! yolov7's `ComputeLossOTA.find_3_positive` is the same matching: [`super::ota`] takes
//! these positives as its candidates.

use candle_core::{DType, Tensor};

/// One ground-truth box: image index in the batch, class, and centre and size
/// normalised to the input image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub image: usize,
    pub class: usize,
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
}

/// A prediction made responsible for a target at one level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Positive {
    pub image: usize,
    pub anchor: usize,
    /// Grid cell row and column, clamped into the grid.
    pub gy: usize,
    pub gx: usize,
    pub class: usize,
    /// What the prediction regresses to, in grid units: the centre relative to the
    /// (clamped) cell, and the size.
    pub tbox: [f32; 4],
    /// The matched anchor's width and height in grid units.
    pub anchor_wh: [f32; 2],
}

impl Positive {
    /// The prediction at (`anchor`, cell `gy`, `gx`) of an `ny` × `nx` grid made
    /// responsible for `target`: the centre is regressed relative to that cell.
    pub fn for_target(
        target: &Target,
        anchor: usize,
        anchor_wh: [f32; 2],
        (gy, gx): (usize, usize),
        (ny, nx): (usize, usize),
    ) -> Positive {
        let (gain_x, gain_y) = (nx as f32, ny as f32);
        Positive {
            image: target.image,
            anchor,
            gy,
            gx,
            class: target.class,
            tbox: [
                target.cx * gain_x - gx as f32,
                target.cy * gain_y - gy as f32,
                target.w * gain_x,
                target.h * gain_y,
            ],
            anchor_wh,
        }
    }

    /// The prediction's row in its level's maps flattened to (batch · na · ny · nx, no).
    pub fn row(&self, (na, ny, nx): (usize, usize, usize)) -> usize {
        ((self.image * na + self.anchor) * ny + self.gy) * nx + self.gx
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("targets must be (n, 6) rows of [image, class, cx, cy, w, h], got shape {0:?}")]
    Shape(Vec<usize>),
    #[error("targets row {row}: {what} {value} must be an integer in 0..{limit}")]
    Index {
        row: usize,
        what: &'static str,
        value: f32,
        limit: usize,
    },
    #[error("targets")]
    Read(#[from] candle_core::Error),
}

/// Reads an (n, 6) targets tensor of `[image, class, cx, cy, w, h]` rows, checking that
/// image and class are valid indices for a batch of `batch_size` and `nc` classes.
pub fn targets_from_tensor(
    targets: &Tensor,
    batch_size: usize,
    nc: usize,
) -> Result<Vec<Target>, TargetError> {
    let dims = targets.dims();
    if dims.len() != 2 || dims[1] != 6 {
        return Err(TargetError::Shape(dims.to_vec()));
    }
    let rows = targets.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    rows.iter()
        .enumerate()
        .map(|(row, r)| {
            Ok(Target {
                image: index(row, "image", r[0], batch_size)?,
                class: index(row, "class", r[1], nc)?,
                cx: r[2],
                cy: r[3],
                w: r[4],
                h: r[5],
            })
        })
        .collect()
}

fn index(row: usize, what: &'static str, value: f32, limit: usize) -> Result<usize, TargetError> {
    if value >= 0.0 && value.fract() == 0.0 && (value as usize) < limit {
        Ok(value as usize)
    } else {
        Err(TargetError::Index {
            row,
            what,
            value,
            limit,
        })
    }
}

/// How far from a cell border (in cells) a centre may lie for the neighbour across it
/// to share the target (ultralytics' `g`).
const NEIGHBOUR_REACH: f32 = 0.5;

/// Subtracted from the centre to reach the cell itself, then the neighbours left,
/// above, right and below (ultralytics' `off`, in the order of its j, k, l, m masks).
const OFFSETS: [[f32; 2]; 5] = [
    [0.0, 0.0],
    [NEIGHBOUR_REACH, 0.0],
    [0.0, NEIGHBOUR_REACH],
    [-NEIGHBOUR_REACH, 0.0],
    [0.0, -NEIGHBOUR_REACH],
];

/// A target matched to an anchor, in grid units.
struct AnchorMatch {
    anchor: usize,
    target: Target,
    gxy: [f32; 2],
}

/// The positives of one level with `anchors` (grid units) on an `ny` × `nx` grid, in
/// ultralytics' order: by offset (own cell first), then anchor, then target. The order
/// matters where two positives share a cell and anchor: the last one's IoU becomes the
/// objectness target there.
pub fn build_targets(
    targets: &[Target],
    anchors: &[[f32; 2]],
    (ny, nx): (usize, usize),
    anchor_t: f32,
) -> Vec<Positive> {
    let gain = [nx as f32, ny as f32];
    let matches = anchor_matches(targets, anchors, gain, anchor_t);
    let mut positives = Vec::new();
    for (o, offset) in OFFSETS.iter().enumerate() {
        for m in matches.iter().filter(|m| cells_reached(m.gxy, gain)[o]) {
            positives.push(positive(m, anchors[m.anchor], *offset, (ny, nx)));
        }
    }
    positives
}

/// Anchor-major, then target order: ultralytics' `t[j]` on the (anchors, targets) mask.
fn anchor_matches(
    targets: &[Target],
    anchors: &[[f32; 2]],
    gain: [f32; 2],
    anchor_t: f32,
) -> Vec<AnchorMatch> {
    let mut matches = Vec::new();
    for (a, anchor) in anchors.iter().enumerate() {
        for t in targets {
            if shape_matches([t.w * gain[0], t.h * gain[1]], *anchor, anchor_t) {
                matches.push(AnchorMatch {
                    anchor: a,
                    target: *t,
                    gxy: [t.cx * gain[0], t.cy * gain[1]],
                });
            }
        }
    }
    matches
}

/// `max(r, 1/r) < anchor_t` for both the width and the height ratio `r = gwh / anchor`.
fn shape_matches(gwh: [f32; 2], anchor: [f32; 2], anchor_t: f32) -> bool {
    gwh.iter().zip(anchor).all(|(&g, a)| {
        let r = g / a;
        r.max(1.0 / r) < anchor_t
    })
}

/// Which of [`OFFSETS`] apply to a centre: its own cell always; a neighbour when the
/// centre is within half a cell of the border between them and that neighbour is
/// inside the grid (more than one cell from the image edge on that side).
fn cells_reached(gxy: [f32; 2], gain: [f32; 2]) -> [bool; 5] {
    let near_lower_border = |v: f32| v.rem_euclid(1.0) < NEIGHBOUR_REACH && v > 1.0;
    let inverse = [gain[0] - gxy[0], gain[1] - gxy[1]];
    [
        true,
        near_lower_border(gxy[0]),
        near_lower_border(gxy[1]),
        near_lower_border(inverse[0]),
        near_lower_border(inverse[1]),
    ]
}

fn positive(
    m: &AnchorMatch,
    anchor_wh: [f32; 2],
    offset: [f32; 2],
    (ny, nx): (usize, usize),
) -> Positive {
    // torch's `.long()` truncates toward zero, as `as` does. ultralytics clamps the cell
    // in place (`gi.clamp_`, a view of `gij`), so the box offset is from the clamped cell.
    let gx = ((m.gxy[0] - offset[0]) as i64).clamp(0, nx as i64 - 1) as usize;
    let gy = ((m.gxy[1] - offset[1]) as i64).clamp(0, ny as i64 - 1) as usize;
    Positive::for_target(&m.target, m.anchor, anchor_wh, (gy, gx), (ny, nx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(cx: f32, cy: f32, w: f32, h: f32) -> Target {
        Target {
            image: 0,
            class: 0,
            cx,
            cy,
            w,
            h,
        }
    }

    #[test]
    fn centre_on_a_cell_corner_takes_all_five_offsets() {
        // 4x4 grid, centre at (2, 2): every mask is set, but 2 + 0.5 truncates back to 2,
        // so the right and lower "neighbours" are the own cell again (as in ultralytics).
        let p = build_targets(&[target(0.5, 0.5, 0.25, 0.25)], &[[1.0, 1.0]], (4, 4), 4.0);
        let cells: Vec<(usize, usize)> = p.iter().map(|p| (p.gy, p.gx)).collect();
        assert_eq!(cells, vec![(2, 2), (2, 1), (1, 2), (2, 2), (2, 2)]);
        assert_eq!(p[1].tbox[..2], [1.0, 0.0]);
    }

    #[test]
    fn shapes_beyond_anchor_t_do_not_match() {
        let tiny = build_targets(&[target(0.5, 0.5, 0.01, 0.01)], &[[1.0, 1.0]], (4, 4), 4.0);
        assert!(tiny.is_empty());
    }

    #[test]
    fn bad_rows_are_errors() {
        let t = Tensor::new(
            &[[0f32, 3.0, 0.5, 0.5, 0.1, 0.1]],
            &candle_core::Device::Cpu,
        )
        .unwrap();
        assert!(matches!(
            targets_from_tensor(&t, 1, 3),
            Err(TargetError::Index { what: "class", .. })
        ));
        assert!(matches!(targets_from_tensor(&t, 1, 4), Ok(ref v) if v.len() == 1));
    }
}
