//! Box geometry in float32, as torchvision and ultralytics compute it: corners from centre
//! and size, and intersection over union. OTA's assignment, NMS and the validation metrics
//! share it; COCO evaluation has its own in float64 on `[x, y, w, h]` boxes, as pycocotools.

/// `[x1, y1, x2, y2]` of a `[cx, cy, w, h]` box (ultralytics' `xywh2xyxy`).
pub fn xywh_to_xyxy([x, y, w, h]: [f32; 4]) -> [f32; 4] {
    [x - w / 2.0, y - h / 2.0, x + w / 2.0, y + h / 2.0]
}

/// The area of a corner box.
pub fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

/// IoU of two corner boxes: intersection / (union + `eps`), torchvision's `box_iou`
/// formula (eps 0; ultralytics' metrics add 1e-7).
pub fn iou(a: &[f32; 4], b: &[f32; 4], eps: f32) -> f32 {
    iou_with_areas(a, area(a), b, area(b), eps)
}

/// [`iou`] with the areas already known (NMS computes each box's once).
pub fn iou_with_areas(a: &[f32; 4], area_a: f32, b: &[f32; 4], area_b: f32, eps: f32) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / (area_a + area_b - inter + eps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// torchvision.ops.box_iou(tensor([[0., 0., 2., 2.]]), tensor([[1., 0., 3., 2.]])) is
    /// 1/3 (float32: 0.33333334); disjoint boxes give exactly 0.
    #[test]
    fn iou_of_overlapping_and_disjoint_boxes() {
        assert_eq!(
            iou(&[0.0, 0.0, 2.0, 2.0], &[1.0, 0.0, 3.0, 2.0], 0.0),
            0.333_333_34
        );
        assert_eq!(iou(&[0.0, 0.0, 1.0, 1.0], &[2.0, 2.0, 3.0, 3.0], 0.0), 0.0);
    }

    #[test]
    fn corners_of_a_centre_box() {
        assert_eq!(xywh_to_xyxy([5.0, 4.0, 2.0, 6.0]), [4.0, 1.0, 6.0, 7.0]);
    }
}
