//! Augmentation against hand-computed expectations and, for the resampling and colour
//! arithmetic, against OpenCV 5.0 (values printed by opencv-python in the reference
//! environment: cv2.warpAffine/warpPerspective with borderValue 114, cv2.resize with
//! INTER_AREA, and ultralytics' augment_hsv with fixed gains).

use actyolo::data::augment::{
    apply_hsv_gains, augment_hsv, box_candidate, flip_lr, flip_ud, mixup, mosaic4, mosaic_border,
    mosaic_centre, random_flips, random_perspective, resize_long_side, rgb_to_hsv, stream_rng,
    to_labels, LabelledImage, MosaicTile, PixelBox, Warp, WarpRanges,
};
use actyolo::data::labels::Label;
use image::{Rgb, RgbImage};
use rand::Rng;

fn image_from(width: u32, height: u32, bytes: &[u8]) -> RgbImage {
    RgbImage::from_raw(width, height, bytes.to_vec()).unwrap()
}

fn pixel_box(class: usize, [x1, y1, x2, y2]: [f32; 4]) -> PixelBox {
    PixelBox {
        class,
        x1,
        y1,
        x2,
        y2,
    }
}

const NO_WARP: WarpRanges = WarpRanges {
    degrees: 0.0,
    translate: 0.0,
    scale: 0.0,
    shear: 0.0,
    perspective: 0.0,
};

#[test]
fn to_labels_normalises_and_clips_as_xyxy2xywhn() {
    let labels = to_labels(
        &[
            pixel_box(2, [10.0, 20.0, 30.0, 60.0]),
            pixel_box(0, [-5.0, 0.0, 120.0, 50.0]),
        ],
        100,
        100,
    );
    assert_eq!(
        labels[0],
        Label {
            class: 2,
            cx: 0.2,
            cy: 0.4,
            w: 0.2,
            h: 0.4
        }
    );
    // x2 is clipped to 100 - 0.001.
    let expected_w = (100.0f32 - 1e-3) / 100.0;
    assert!(
        (labels[1].w - expected_w).abs() < 1e-7 && (labels[1].cx - expected_w / 2.0).abs() < 1e-7
    );
    assert_eq!((labels[1].cy, labels[1].h), (0.25, 0.5));
}

#[test]
fn flips_mirror_pixels_and_labels() {
    let mut image = image_from(
        3,
        2,
        &[1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6],
    );
    let mut labels = vec![Label {
        class: 1,
        cx: 0.25,
        cy: 0.1,
        w: 0.2,
        h: 0.3,
    }];
    flip_lr(&mut image, &mut labels);
    assert_eq!(image.get_pixel(0, 0).0, [3; 3]);
    assert_eq!(image.get_pixel(2, 1).0, [4; 3]);
    assert_eq!(
        labels[0],
        Label {
            class: 1,
            cx: 0.75,
            cy: 0.1,
            w: 0.2,
            h: 0.3
        }
    );
    flip_ud(&mut image, &mut labels);
    assert_eq!(image.get_pixel(0, 0).0, [6; 3]);
    assert_eq!((labels[0].cx, labels[0].cy), (0.75, 0.9));

    let original = (image.clone(), labels.clone());
    random_flips(&mut image, &mut labels, 0.0, 0.0, &mut stream_rng(0, 0));
    assert_eq!((image.clone(), labels.clone()), original);
    random_flips(&mut image, &mut labels, 1.0, 1.0, &mut stream_rng(0, 0));
    assert_eq!(image.get_pixel(0, 0).0, [1; 3]);
    assert!((labels[0].cx - 0.25).abs() < 1e-6 && (labels[0].cy - 0.1).abs() < 1e-6);
}

#[test]
fn perspective_with_identity_parameters_changes_nothing() {
    let image = RgbImage::from_fn(64, 48, |x, y| Rgb([x as u8, y as u8, (x + y) as u8]));
    let boxes = vec![
        pixel_box(0, [3.0, 4.0, 20.0, 30.0]),
        pixel_box(1, [40.0, 10.0, 63.0, 47.0]),
    ];
    let warp = Warp::random(&NO_WARP, (64, 48), 0, &mut stream_rng(1, 0));
    assert!(warp.is_identity((64, 48)));
    let out = random_perspective(
        LabelledImage {
            image: image.clone(),
            boxes: boxes.clone(),
        },
        &NO_WARP,
        0,
        &mut stream_rng(1, 0),
    );
    assert_eq!(out.image, image);
    assert_eq!(out.boxes, boxes);
}

#[test]
fn mosaic_border_crops_the_centre_of_the_canvas() {
    // With no random range, the warp after a mosaic is a pure shift by -imgsz/2.
    let canvas = RgbImage::from_fn(64, 64, |x, y| Rgb([x as u8, y as u8, 7]));
    let boxes = vec![
        pixel_box(0, [10.0, 20.0, 40.0, 50.0]),
        pixel_box(1, [0.0, 0.0, 12.0, 12.0]),
        pixel_box(2, [10.0, 10.0, 22.0, 22.0]),
    ];
    let out = random_perspective(
        LabelledImage {
            image: canvas.clone(),
            boxes,
        },
        &NO_WARP,
        mosaic_border(32),
        &mut stream_rng(0, 0),
    );
    assert_eq!(
        out.image,
        image::imageops::crop_imm(&canvas, 16, 16, 32, 32).to_image()
    );
    // Shifted by -16 and clipped to [0, 32]; the second box leaves the image entirely and
    // the third keeps 6x6 of its 12x12 pixels (25% > 10%).
    assert_eq!(
        out.boxes,
        vec![
            pixel_box(0, [0.0, 4.0, 24.0, 32.0]),
            pixel_box(2, [0.0, 0.0, 6.0, 6.0])
        ]
    );
}

#[test]
fn box_candidates_follow_yolov5_thresholds() {
    let before = [0.0, 0.0, 10.0, 10.0];
    assert!(box_candidate(before, [0.0, 0.0, 10.0, 10.0]));
    // More than 2 pixels wide and high.
    assert!(!box_candidate(before, [0.0, 0.0, 2.0, 10.0]));
    assert!(box_candidate(before, [0.0, 0.0, 2.01, 10.0]));
    // More than 10% of the area left: 3.2 x 3.2 = 10.24%, 3.1 x 3.2 = 9.92%.
    assert!(box_candidate(before, [0.0, 0.0, 3.2, 3.2]));
    assert!(!box_candidate(before, [0.0, 0.0, 3.1, 3.2]));
    // Aspect ratio below 100.
    let wide = [0.0, 0.0, 1000.0, 3.0];
    assert!(box_candidate(wide, [0.0, 0.0, 299.0, 3.0]));
    assert!(!box_candidate(wide, [0.0, 0.0, 300.0, 3.0]));
}

#[test]
fn mosaic_places_tiles_around_the_centre_and_shifts_their_boxes() {
    let colours = [[200, 0, 0], [0, 200, 0], [0, 0, 200], [200, 200, 0]];
    let sizes = [(40, 30), (64, 20), (25, 64), (64, 64)];
    let images: Vec<RgbImage> = colours
        .iter()
        .zip(sizes)
        .map(|(&c, (w, h))| RgbImage::from_pixel(w, h, Rgb(c)))
        .collect();
    // Each tile has one box covering it entirely.
    let whole = [Label {
        class: 0,
        cx: 0.5,
        cy: 0.5,
        w: 1.0,
        h: 1.0,
    }];
    let labels: Vec<[Label; 1]> = (0..4).map(|class| [Label { class, ..whole[0] }]).collect();
    let tiles: [MosaicTile; 4] = std::array::from_fn(|i| MosaicTile {
        image: &images[i],
        labels: &labels[i],
    });
    let (xc, yc) = (50, 60);
    let mosaic = mosaic4(tiles, 64, (xc, yc));
    assert_eq!(mosaic.image.dimensions(), (128, 128));
    // top-left ends at the centre, top-right starts there, and so on; clipped to the canvas.
    let expected = [
        [10.0, 30.0, 50.0, 60.0],
        [50.0, 40.0, 114.0, 60.0],
        [25.0, 60.0, 50.0, 124.0],
        [50.0, 60.0, 114.0, 124.0],
    ];
    for (k, b) in mosaic.boxes.iter().enumerate() {
        assert_eq!((b.class, [b.x1, b.y1, b.x2, b.y2]), (k, expected[k]));
        // The box matches the drawn content: its inside has the tile's colour.
        let (x1, y1, x2, y2) = (b.x1 as u32, b.y1 as u32, b.x2 as u32, b.y2 as u32);
        for (x, y) in [(x1, y1), (x2 - 1, y1), (x1, y2 - 1), (x2 - 1, y2 - 1)] {
            assert_eq!(
                mosaic.image.get_pixel(x, y).0,
                colours[k],
                "tile {k} at ({x}, {y})"
            );
        }
    }
    // Outside every tile the canvas is grey 114.
    assert_eq!(mosaic.image.get_pixel(5, 5).0, [114; 3]);
    assert_eq!(mosaic.image.get_pixel(120, 20).0, [114; 3]);

    // A tile larger than its quadrant is cropped, and its box clipped to the canvas.
    let big = RgbImage::from_pixel(64, 64, Rgb([9, 9, 9]));
    let tiles: [MosaicTile; 4] = std::array::from_fn(|_| MosaicTile {
        image: &big,
        labels: &whole,
    });
    let cropped = mosaic4(tiles, 64, (100, 100));
    assert_eq!(
        [
            cropped.boxes[3].x1,
            cropped.boxes[3].y1,
            cropped.boxes[3].x2,
            cropped.boxes[3].y2
        ],
        [100.0, 100.0, 128.0, 128.0]
    );
    assert_eq!([cropped.boxes[0].x1, cropped.boxes[0].y1], [36.0, 36.0]);
}

#[test]
fn mosaic_centre_stays_in_the_middle_half() {
    let mut rng = stream_rng(3, 0);
    for _ in 0..1000 {
        let (x, y) = mosaic_centre(64, &mut rng);
        assert!((32..96).contains(&x) && (32..96).contains(&y), "({x}, {y})");
    }
    assert_eq!(mosaic_border(64), -32);
    assert_eq!(mosaic_border(65), -33);
}

/// The 7x6 image warped by the OpenCV fixtures.
const WARP_SRC: [u8; 126] = [
    255, 228, 34, 121, 243, 189, 6, 131, 102, 168, 82, 193, 187, 150, 81, 243, 205, 24, 236, 8,
    246, 164, 231, 36, 210, 111, 172, 210, 174, 176, 218, 242, 169, 114, 205, 63, 160, 47, 212, 79,
    72, 112, 120, 222, 69, 31, 95, 108, 36, 109, 238, 69, 51, 81, 228, 211, 202, 58, 202, 65, 76,
    70, 193, 104, 42, 250, 209, 164, 2, 44, 178, 140, 98, 2, 243, 21, 50, 29, 14, 7, 53, 50, 151,
    221, 46, 60, 230, 192, 164, 156, 127, 214, 154, 194, 195, 137, 72, 153, 74, 209, 58, 76, 105,
    84, 10, 213, 226, 115, 168, 118, 214, 201, 69, 25, 185, 31, 36, 45, 158, 77, 46, 12, 218, 31,
    12, 112,
];

#[test]
fn affine_warp_matches_opencv() {
    let matrix = [
        [1.0665770566268578, 0.28578846098873034, -3.290385081160194],
        [
            -0.19101299543362338,
            1.0832885283134288,
            -3.1813201009226044,
        ],
        [0.0, 0.0, 1.0],
    ];
    let warp = Warp {
        matrix,
        scale: 1.0,
        width: 5,
        height: 6,
        projective: false,
    };
    let expected: [u8; 90] = [
        82, 165, 157, 135, 95, 179, 55, 116, 60, 157, 58, 71, 124, 80, 32, 144, 183, 129, 185, 139,
        101, 91, 144, 78, 82, 73, 138, 57, 22, 141, 185, 85, 81, 172, 62, 52, 114, 103, 80, 84,
        107, 123, 94, 85, 134, 116, 113, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114,
        114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114,
        114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114,
    ];
    assert_eq!(
        warp.warp_image(&image_from(7, 6, &WARP_SRC)).into_raw(),
        expected
    );
}

#[test]
fn perspective_warp_matches_opencv_within_one_level() {
    let matrix = [
        [1.0795770566268577, 0.2597884609887303, -3.257885081160193],
        [-0.19701299543362338, 1.0952885283134288, -3.196320100922605],
        [0.01, -0.02, 1.025],
    ];
    let warp = Warp {
        matrix,
        scale: 1.0,
        width: 5,
        height: 6,
        projective: true,
    };
    let expected: [u8; 90] = [
        83, 162, 159, 134, 94, 179, 55, 116, 60, 156, 58, 71, 124, 80, 31, 140, 191, 133, 186, 146,
        106, 93, 145, 79, 85, 77, 132, 61, 23, 141, 193, 82, 62, 180, 53, 43, 114, 101, 74, 77,
        108, 122, 87, 76, 144, 133, 107, 109, 121, 108, 107, 114, 114, 114, 114, 114, 114, 114,
        114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114,
        114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114, 114,
    ];
    // OpenCV inverts the 3x3 matrix by LU decomposition, which can round differently.
    let out = warp.warp_image(&image_from(7, 6, &WARP_SRC)).into_raw();
    for (i, (a, b)) in out.iter().zip(expected).enumerate() {
        assert!(a.abs_diff(b) <= 1, "byte {i}: {a} vs {b}");
    }
}

#[test]
fn warped_boxes_are_the_extent_of_their_corners() {
    // A 90° rotation about the origin followed by a shift: (x, y) -> (30 - y, x).
    let matrix = [[0.0, -1.0, 30.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
    let warp = Warp {
        matrix,
        scale: 1.0,
        width: 40,
        height: 40,
        projective: false,
    };
    assert_eq!(
        warp.warp_boxes(&[pixel_box(4, [2.0, 5.0, 12.0, 9.0])]),
        vec![pixel_box(4, [21.0, 2.0, 25.0, 12.0])]
    );
}

/// ultralytics' `load_image` sizes; shrinking for validation averages as INTER_AREA.
#[test]
fn validation_shrink_matches_opencv_inter_area() {
    let big: [u8; 210] = [
        11, 130, 22, 250, 129, 142, 80, 34, 93, 181, 32, 98, 165, 105, 50, 103, 85, 37, 100, 231,
        132, 164, 21, 52, 236, 253, 147, 128, 146, 247, 38, 67, 243, 22, 19, 5, 49, 230, 23, 192,
        69, 151, 224, 15, 77, 222, 200, 71, 118, 252, 140, 127, 199, 121, 53, 124, 77, 166, 239,
        29, 215, 151, 17, 251, 0, 53, 197, 191, 116, 42, 47, 246, 222, 35, 148, 23, 100, 213, 139,
        185, 10, 161, 11, 75, 220, 215, 141, 138, 185, 71, 200, 236, 137, 87, 226, 70, 25, 242,
        210, 185, 115, 125, 32, 41, 2, 80, 148, 82, 41, 8, 77, 248, 46, 89, 206, 107, 33, 18, 29,
        132, 216, 252, 255, 74, 104, 94, 169, 29, 68, 143, 178, 108, 77, 6, 157, 159, 161, 29, 162,
        116, 95, 180, 212, 198, 214, 208, 227, 92, 202, 200, 237, 156, 179, 140, 213, 197, 186, 5,
        212, 234, 199, 98, 100, 109, 62, 194, 34, 10, 213, 109, 241, 183, 62, 160, 81, 135, 227,
        165, 65, 223, 82, 9, 151, 117, 3, 114, 58, 94, 91, 36, 246, 15, 33, 60, 9, 117, 56, 21, 46,
        164, 122, 103, 35, 197, 76, 37, 70, 218, 42, 3,
    ];
    let big = image_from(10, 7, &big);
    // imgsz 4: ratio 0.4, so (ceil(4.0), ceil(2.8)) = (4, 3).
    let small = resize_long_side(&big, 4, false);
    let expected: [u8; 36] = [
        98, 96, 88, 162, 71, 100, 132, 167, 95, 150, 173, 115, 159, 170, 112, 116, 90, 126, 117,
        108, 90, 155, 133, 125, 141, 95, 158, 107, 125, 75, 146, 92, 111, 140, 86, 150,
    ];
    assert_eq!(small.into_raw(), expected);
    // imgsz 5: ratio 0.5, so (5, ceil(3.5)) = (5, 4).
    let expected: [u8; 60] = [
        87, 92, 100, 126, 83, 92, 172, 100, 57, 128, 169, 108, 151, 192, 135, 178, 115, 67, 116,
        140, 164, 118, 81, 126, 144, 96, 67, 150, 160, 92, 151, 194, 156, 149, 125, 120, 104, 85,
        70, 167, 114, 136, 137, 151, 178, 138, 82, 156, 117, 141, 97, 106, 64, 24, 127, 94, 177,
        137, 65, 117,
    ];
    assert_eq!(resize_long_side(&big, 5, false).into_raw(), expected);
    // Training resizes bilinearly, and an image already at imgsz is left alone.
    assert_eq!(resize_long_side(&big, 5, true).dimensions(), (5, 4));
    assert_eq!(resize_long_side(&big, 10, false), big);
}

const HSV_INPUT: [[u8; 3]; 12] = [
    [0, 0, 0],
    [255, 255, 255],
    [128, 128, 128],
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
    [205, 78, 169],
    [61, 125, 10],
    [29, 240, 66],
    [19, 182, 39],
    [59, 4, 59],
    [81, 222, 44],
];

#[test]
fn rgb_to_hsv_matches_opencv() {
    let expected = [
        [0, 0, 0],
        [0, 0, 255],
        [0, 0, 128],
        [0, 255, 255],
        [60, 255, 255],
        [120, 255, 255],
        [158, 158, 205],
        [47, 235, 125],
        [65, 224, 240],
        [64, 228, 182],
        [150, 238, 59],
        [54, 204, 222],
    ];
    for (rgb, hsv) in HSV_INPUT.iter().zip(expected) {
        assert_eq!(rgb_to_hsv(*rgb), hsv, "{rgb:?}");
    }
}

#[test]
fn hsv_gains_match_ultralytics_augment_hsv() {
    let cases: [([f64; 3], [[u8; 3]; 12]); 3] = [
        (
            [1.0, 1.0, 1.0],
            [
                [0, 0, 0],
                [255, 255, 255],
                [128, 128, 128],
                [255, 0, 0],
                [0, 255, 0],
                [0, 0, 255],
                [205, 78, 171],
                [60, 125, 10],
                [29, 240, 64],
                [19, 182, 41],
                [59, 4, 59],
                [80, 222, 44],
            ],
        ),
        (
            [1.0123, 1.5, 0.7],
            [
                [0, 0, 0],
                [178, 178, 178],
                [89, 89, 89],
                [178, 0, 0],
                [0, 178, 0],
                [6, 0, 178],
                [143, 10, 103],
                [38, 87, 0],
                [0, 168, 28],
                [0, 127, 17],
                [41, 0, 40],
                [31, 155, 0],
            ],
        ),
        (
            [0.985, 0.3, 1.4],
            [
                [0, 0, 0],
                [255, 255, 255],
                [179, 179, 179],
                [255, 179, 179],
                [182, 255, 179],
                [179, 184, 255],
                [255, 208, 247],
                [149, 175, 127],
                [188, 255, 197],
                [186, 254, 193],
                [80, 59, 82],
                [208, 255, 194],
            ],
        ),
    ];
    for (gains, expected) in cases {
        let mut image = image_from(12, 1, HSV_INPUT.as_flattened());
        apply_hsv_gains(&mut image, gains);
        assert_eq!(image.into_raw(), expected.as_flattened(), "gains {gains:?}");
    }
}

#[test]
fn zero_hsv_gains_draw_nothing() {
    let mut image = RgbImage::from_pixel(4, 4, Rgb([10, 20, 30]));
    let (mut used, mut fresh) = (stream_rng(5, 0), stream_rng(5, 0));
    augment_hsv(&mut image, [0.0; 3], &mut used);
    assert_eq!(image, RgbImage::from_pixel(4, 4, Rgb([10, 20, 30])));
    assert_eq!(used.random::<u64>(), fresh.random::<u64>());
}

#[test]
fn mixup_blends_near_half_and_keeps_both_boxes() {
    let first = LabelledImage {
        image: RgbImage::from_pixel(8, 8, Rgb([100; 3])),
        boxes: vec![pixel_box(0, [1.0, 1.0, 4.0, 4.0])],
    };
    let second = LabelledImage {
        image: RgbImage::from_pixel(8, 8, Rgb([200; 3])),
        boxes: vec![pixel_box(1, [2.0, 2.0, 6.0, 6.0])],
    };
    let mixed = mixup(first.clone(), second.clone(), &mut stream_rng(9, 0));
    assert_eq!(mixed.boxes, [first.boxes, second.boxes.clone()].concat());
    // Beta(32, 32) stays within 0.5 ± 0.25 for any practical draw.
    let value = mixed.image.get_pixel(3, 3).0[0];
    assert!((125..=175).contains(&value), "{value}");
    assert!(mixed.image.pixels().all(|p| p.0 == [value; 3]));
    assert_eq!(
        mixup(second.clone(), second.clone(), &mut stream_rng(9, 0)).image,
        second.image
    );
}
