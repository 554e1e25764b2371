//! A synthetic detection dataset in YOLO format: filled shapes of random colour and size on
//! textured, noisy backgrounds, whose boxes are tight to the pixels left visible after
//! later shapes occlude earlier ones.
//!
//! Every image has its own random stream (seed, split, index), so generation runs in
//! parallel and still gives the same files for the same seed.

use std::f32::consts::{PI, TAU};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use rand::Rng;
use rayon::prelude::*;

use crate::data::augment::stream_rng;

/// The shapes the generator can draw; each chosen one becomes a class, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeKind {
    Circle,
    Rectangle,
    Triangle,
    Star,
    Cross,
}

impl ShapeKind {
    pub const ALL: [ShapeKind; 5] = [
        ShapeKind::Circle,
        ShapeKind::Rectangle,
        ShapeKind::Triangle,
        ShapeKind::Star,
        ShapeKind::Cross,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ShapeKind::Circle => "circle",
            ShapeKind::Rectangle => "rectangle",
            ShapeKind::Triangle => "triangle",
            ShapeKind::Star => "star",
            ShapeKind::Cross => "cross",
        }
    }

    pub fn parse(name: &str) -> Result<ShapeKind, SynthError> {
        let wanted = name.trim().to_lowercase();
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == wanted)
            .ok_or_else(|| SynthError::UnknownShape {
                name: name.to_string(),
            })
    }

    /// Parses a comma-separated list such as `circle,rectangle,triangle`.
    pub fn parse_list(list: &str) -> Result<Vec<ShapeKind>, SynthError> {
        list.split(',')
            .filter(|name| !name.trim().is_empty())
            .map(Self::parse)
            .collect()
    }
}

fn supported_shapes() -> String {
    ShapeKind::ALL
        .iter()
        .map(|kind| kind.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(
        "unknown shape `{name}`; the supported shapes are {}",
        supported_shapes()
    )]
    UnknownShape { name: String },
    #[error("invalid synth settings: {0}")]
    Settings(String),
    #[error("{path} already exists; choose another --out or delete it first")]
    Exists { path: PathBuf },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{path}: cannot encode PNG")]
    Encode {
        path: PathBuf,
        #[source]
        error: image::ImageError,
    },
}

/// What to generate; [`Default`] is `actyolo data synth`'s defaults.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub out: PathBuf,
    pub n_train: usize,
    pub n_val: usize,
    /// Side of the square images in pixels.
    pub imgsz: u32,
    pub seed: u64,
    pub classes: Vec<ShapeKind>,
    /// Each image holds between 1 and this many shapes (fewer when a placement fails).
    pub max_objects: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            out: PathBuf::from("datasets/synth"),
            n_train: 2000,
            n_val: 200,
            imgsz: 256,
            seed: 0,
            classes: vec![ShapeKind::Circle, ShapeKind::Rectangle, ShapeKind::Triangle],
            max_objects: 6,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct SynthSummary {
    pub data_yaml: PathBuf,
    pub train_images: usize,
    pub val_images: usize,
    pub train_objects: usize,
    pub val_objects: usize,
}

/// A box in pixel edges: columns `x1..x2` and rows `y1..y2` (ends exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelRect {
    pub x1: u32,
    pub y1: u32,
    pub x2: u32,
    pub y2: u32,
}

/// A shape's outline in image coordinates (pixel (x, y) covers [x, x+1) × [y, y+1)).
#[derive(Debug, Clone, PartialEq)]
pub enum Outline {
    Disc { cx: f32, cy: f32, r: f32 },
    Polygon(Vec<(f32, f32)>),
}

impl Outline {
    /// Whether the point lies inside (even-odd rule for polygons).
    pub fn contains(&self, x: f32, y: f32) -> bool {
        match self {
            Outline::Disc { cx, cy, r } => (x - cx).powi(2) + (y - cy).powi(2) <= r * r,
            Outline::Polygon(points) => {
                crossings(points, y).filter(|&edge_x| x < edge_x).count() % 2 == 1
            }
        }
    }

    /// Whether pixel (x, y) is painted: its centre lies inside.
    pub fn covers_pixel(&self, x: u32, y: u32) -> bool {
        self.contains(x as f32 + 0.5, y as f32 + 0.5)
    }

    /// The exact area, for the fraction of a shape that stays visible.
    fn area(&self) -> f32 {
        match self {
            Outline::Disc { r, .. } => PI * r * r,
            Outline::Polygon(points) => {
                let twice: f32 = points
                    .iter()
                    .zip(points.iter().cycle().skip(1))
                    .map(|(a, b)| a.0 * b.1 - b.0 * a.1)
                    .sum();
                twice.abs() / 2.0
            }
        }
    }

    /// The pixels it covers inside a `size`×`size` image, as indices `y * size + x`.
    fn pixels(&self, size: u32) -> Vec<usize> {
        let (x0, y0, x1, y1) = match self {
            Outline::Disc { cx, cy, r } => (cx - r, cy - r, cx + r, cy + r),
            Outline::Polygon(points) => points.iter().fold(
                (f32::MAX, f32::MAX, f32::MIN, f32::MIN),
                |(a, b, c, d), &(x, y)| (a.min(x), b.min(y), c.max(x), d.max(y)),
            ),
        };
        let clamp = |v: f32| (v.max(0.0) as u32).min(size);
        let (cols, rows) = (clamp(x0)..clamp(x1.ceil()), clamp(y0)..clamp(y1.ceil()));
        let mut pixels = Vec::new();
        for y in rows {
            let row = (y * size) as usize;
            match self {
                Outline::Disc { .. } => pixels.extend(
                    cols.clone()
                        .filter(|&x| self.covers_pixel(x, y))
                        .map(|x| row + x as usize),
                ),
                // Scanline spans: the same crossings as `contains`, computed once per row.
                Outline::Polygon(points) => {
                    let mut edges: Vec<f32> = crossings(points, y as f32 + 0.5).collect();
                    edges.sort_by(f32::total_cmp);
                    for span in edges.chunks_exact(2) {
                        let inside = |x: &u32| (span[0]..span[1]).contains(&(*x as f32 + 0.5));
                        let candidates = clamp(span[0].floor())..clamp(span[1].ceil() + 1.0);
                        pixels.extend(candidates.filter(inside).map(|x| row + x as usize));
                    }
                }
            }
        }
        pixels
    }
}

/// Where the polygon's edges cross the horizontal line at `y` (half-open in y, so a vertex
/// on the line counts once); a point is inside when an odd number lie to its right.
fn crossings(points: &[(f32, f32)], y: f32) -> impl Iterator<Item = f32> + '_ {
    let previous = points.iter().cycle().skip(points.len() - 1);
    points
        .iter()
        .zip(previous)
        .filter(move |(&(_, y1), &(_, y0))| (y1 > y) != (y0 > y))
        .map(move |(&(x1, y1), &(x0, y0))| x0 + (y - y0) * (x1 - x0) / (y1 - y0))
}

/// One shape of a rendered image, in paint order.
#[derive(Debug, Clone)]
pub struct SynthObject {
    pub class: usize,
    pub outline: Outline,
    /// The bounding box of its visible pixels; `None` when too little of it stayed visible
    /// to be labelled.
    pub visible_box: Option<PixelRect>,
}

/// A rendered image and its shapes.
#[derive(Debug, Clone)]
pub struct SynthImage {
    pub image: RgbImage,
    pub objects: Vec<SynthObject>,
}

impl SynthImage {
    /// The YOLO label file: `class cx cy w h`, normalised, one labelled shape a line.
    pub fn label_text(&self) -> String {
        let size = self.image.width() as f32;
        let mut text = String::new();
        for object in &self.objects {
            if let Some(rect) = object.visible_box {
                let (x1, y1, x2, y2) = (
                    rect.x1 as f32,
                    rect.y1 as f32,
                    rect.x2 as f32,
                    rect.y2 as f32,
                );
                let (cx, cy, w, h) = (
                    (x1 + x2) / 2.0 / size,
                    (y1 + y2) / 2.0 / size,
                    (x2 - x1) / size,
                    (y2 - y1) / size,
                );
                // Writing to a String cannot fail.
                let _ = writeln!(text, "{} {cx:.6} {cy:.6} {w:.6} {h:.6}", object.class);
            }
        }
        text
    }
}

/// Shape sizes, as fractions of the image side: the side of the square the shape is drawn in.
const SIZE_RANGE: (f32, f32) = (0.08, 0.45);
/// A new shape is placed again when it would leave an earlier one less visible than this.
const KEEP_VISIBLE: f32 = 0.5;
/// A new shape is placed again when less than this much of it falls inside the image.
const MIN_IN_FRAME: f32 = 0.6;
/// A shape is labelled only when at least this fraction of it, and [`MIN_VISIBLE_PIXELS`], is visible.
const MIN_VISIBLE: f32 = 0.4;
const MIN_VISIBLE_PIXELS: usize = 20;
const PLACEMENT_TRIES: usize = 10;
/// Shape colours are redrawn until they differ this much (sum over RGB) from what lies under them.
const MIN_CONTRAST: f32 = 120.0;

/// A working canvas in f32 RGB, so that layers blend without rounding.
struct Canvas {
    size: u32,
    rgb: Vec<[f32; 3]>,
}

impl Canvas {
    fn random_colour(rng: &mut impl Rng) -> [f32; 3] {
        [
            rng.random_range(0.0..255.0),
            rng.random_range(0.0..255.0),
            rng.random_range(0.0..255.0),
        ]
    }

    /// A linear gradient between two random colours in a random direction.
    fn gradient(size: u32, rng: &mut impl Rng) -> Canvas {
        let (from, to) = (Self::random_colour(rng), Self::random_colour(rng));
        let angle = rng.random_range(0.0..TAU);
        let (dx, dy) = (angle.cos(), angle.sin());
        let span = (dx.abs() + dy.abs()) * size as f32;
        let offset = dx.min(0.0) * size as f32 + dy.min(0.0) * size as f32;
        let rgb = (0..size * size)
            .map(|i| {
                let (x, y) = ((i % size) as f32, (i / size) as f32);
                let t = (x * dx + y * dy - offset) / span;
                [0, 1, 2].map(|c| from[c] + (to[c] - from[c]) * t)
            })
            .collect();
        Canvas { size, rgb }
    }

    fn blend(&mut self, index: usize, colour: [f32; 3], alpha: f32) {
        let pixel = &mut self.rgb[index];
        *pixel = [0, 1, 2].map(|c| pixel[c] + (colour[c] - pixel[c]) * alpha);
    }

    /// Soft-edged blobs (their opacity fades to 0 at the rim, so none reads as a circle).
    fn blobs(&mut self, rng: &mut impl Rng) {
        let size = self.size as f32;
        for _ in 0..rng.random_range(3..9) {
            let (cx, cy) = (rng.random_range(0.0..size), rng.random_range(0.0..size));
            let radius = rng.random_range(0.05..0.35) * size;
            let (colour, strength) = (Self::random_colour(rng), rng.random_range(0.3..0.7));
            let disc = Outline::Disc { cx, cy, r: radius };
            for index in disc.pixels(self.size) {
                let (x, y) = (
                    (index as u32 % self.size) as f32 + 0.5,
                    (index as u32 / self.size) as f32 + 0.5,
                );
                let fade = 1.0 - ((x - cx).powi(2) + (y - cy).powi(2)) / (radius * radius);
                self.blend(index, colour, strength * fade.powi(2));
            }
        }
    }

    /// Thin straight lines across the image.
    fn lines(&mut self, rng: &mut impl Rng) {
        let size = self.size as f32;
        for _ in 0..rng.random_range(2..7) {
            let (x0, y0, x1, y1) = (
                rng.random_range(0.0..size),
                rng.random_range(0.0..size),
                rng.random_range(0.0..size),
                rng.random_range(0.0..size),
            );
            let half_width = rng.random_range(0.5..1.5);
            let (colour, alpha) = (Self::random_colour(rng), rng.random_range(0.4..0.9));
            let (dx, dy) = (x1 - x0, y1 - y0);
            let reach = half_width * (dx * dx + dy * dy).sqrt().max(1.0);
            let size = self.size;
            let clamp = |v: f32| (v.max(0.0) as u32).min(size);
            for y in 0..size {
                let yc = y as f32 + 0.5;
                // Only the columns near where the line crosses this row; a nearly
                // horizontal line is tested along the whole row.
                let cols = if dy.abs() < 1.0 {
                    0..size
                } else {
                    let (centre, extent) = (x0 + (yc - y0) * dx / dy, reach / dy.abs());
                    clamp(centre - extent - 1.0)..clamp(centre + extent + 2.0)
                };
                for x in cols {
                    // Distance to the line times its length, against half the width times the length.
                    if ((x as f32 + 0.5 - x0) * dy - (yc - y0) * dx).abs() <= reach {
                        self.blend((y * size + x) as usize, colour, alpha);
                    }
                }
            }
        }
    }

    fn mean_under(&self, pixels: &[usize]) -> [f32; 3] {
        let sum = pixels.iter().fold([0.0f32; 3], |acc, &i| {
            [0, 1, 2].map(|c| acc[c] + self.rgb[i][c])
        });
        sum.map(|s| s / pixels.len().max(1) as f32)
    }

    /// Adds pixel noise and rounds to 8 bits. The noise is triangular (the sum of two
    /// uniform bytes), which looks like sensor noise and needs one random u64 per pixel.
    fn into_noisy_image(self, amplitude: f32, rng: &mut impl Rng) -> RgbImage {
        let scale = amplitude / 255.0;
        let mut bytes = Vec::with_capacity(self.rgb.len() * 3);
        for pixel in &self.rgb {
            let bits = rng.random::<u64>().to_le_bytes();
            for c in 0..3 {
                let noise = (f32::from(bits[2 * c]) + f32::from(bits[2 * c + 1]) - 255.0) * scale;
                // + 0.5 and truncation round the clamped, non-negative value.
                bytes.push(((pixel[c] + noise).clamp(0.0, 255.0) + 0.5) as u8);
            }
        }
        RgbImage::from_raw(self.size, self.size, bytes)
            .unwrap_or_else(|| unreachable!("the buffer holds size² RGB pixels"))
    }
}

/// A random outline of `kind` drawn in a square of side `side` centred on (cx, cy), at a random angle.
fn random_outline(kind: ShapeKind, (cx, cy): (f32, f32), side: f32, rng: &mut impl Rng) -> Outline {
    let angle = rng.random_range(0.0..TAU);
    let polar = |points: &[(f32, f32)]| {
        Outline::Polygon(
            points
                .iter()
                .map(|&(radius, theta)| {
                    (
                        cx + radius * (theta + angle).cos(),
                        cy + radius * (theta + angle).sin(),
                    )
                })
                .collect(),
        )
    };
    let r = side / 2.0;
    match kind {
        ShapeKind::Circle => Outline::Disc { cx, cy, r },
        ShapeKind::Rectangle => {
            let (w, h) = (side / 2.0, side * rng.random_range(0.35..1.0) / 2.0);
            let (diagonal, corner) = ((w * w + h * h).sqrt(), h.atan2(w));
            polar(&[
                (diagonal, corner),
                (diagonal, PI - corner),
                (diagonal, PI + corner),
                (diagonal, -corner),
            ])
        }
        ShapeKind::Triangle => {
            // Up to ±17° off equilateral, so the triangles vary without degenerating.
            let vertices: Vec<_> = (0..3)
                .map(|k| (r, k as f32 * TAU / 3.0 + rng.random_range(-0.3..0.3)))
                .collect();
            polar(&vertices)
        }
        ShapeKind::Star => {
            let inner = r * rng.random_range(0.38..0.55);
            let vertices: Vec<_> = (0..10)
                .map(|k| (if k % 2 == 0 { r } else { inner }, k as f32 * TAU / 10.0))
                .collect();
            polar(&vertices)
        }
        ShapeKind::Cross => {
            let arm = side * rng.random_range(0.15..0.22);
            let corners = [
                (arm, r),
                (arm, arm),
                (r, arm),
                (r, -arm),
                (arm, -arm),
                (arm, -r),
                (-arm, -r),
                (-arm, -arm),
                (-r, -arm),
                (-r, arm),
                (-arm, arm),
                (-arm, r),
            ];
            let vertices: Vec<_> = corners
                .iter()
                .map(|&(x, y)| ((x * x + y * y).sqrt(), y.atan2(x)))
                .collect();
            polar(&vertices)
        }
    }
}

/// Shapes being placed on one image: who owns each pixel (0 = background, k = shape k-1).
struct Layout {
    owner: Vec<u16>,
    areas: Vec<f32>,
    visible: Vec<usize>,
}

impl Layout {
    /// How many visible pixels of each placed shape `pixels` would cover.
    fn covered(&self, pixels: &[usize]) -> Vec<usize> {
        let mut covered = vec![0; self.areas.len()];
        for &i in pixels {
            if let Some(shape) = (self.owner[i] as usize).checked_sub(1) {
                covered[shape] += 1;
            }
        }
        covered
    }

    /// Whether a new shape over `pixels` (of exact area `area`) is mostly in frame and leaves
    /// every earlier shape visible enough.
    fn accepts(&self, pixels: &[usize], area: f32) -> bool {
        let in_frame =
            pixels.len() >= MIN_VISIBLE_PIXELS && pixels.len() as f32 >= MIN_IN_FRAME * area;
        in_frame
            && self
                .covered(pixels)
                .iter()
                .enumerate()
                .all(|(k, &c)| (self.visible[k] - c) as f32 >= KEEP_VISIBLE * self.areas[k])
    }

    fn place(&mut self, pixels: &[usize], area: f32) {
        for (k, c) in self.covered(pixels).into_iter().enumerate() {
            self.visible[k] -= c;
        }
        let id = (self.areas.len() + 1) as u16;
        pixels.iter().for_each(|&i| self.owner[i] = id);
        self.areas.push(area);
        self.visible.push(pixels.len());
    }

    /// The bounding box of each shape's visible pixels, for those visible enough to label.
    fn visible_boxes(&self, size: u32) -> Vec<Option<PixelRect>> {
        let mut boxes: Vec<Option<PixelRect>> = vec![None; self.areas.len()];
        for (i, &id) in self.owner.iter().enumerate() {
            let Some(shape) = (id as usize).checked_sub(1) else {
                continue;
            };
            let (x, y) = (i as u32 % size, i as u32 / size);
            let rect = boxes[shape].get_or_insert(PixelRect {
                x1: x,
                y1: y,
                x2: x + 1,
                y2: y + 1,
            });
            *rect = PixelRect {
                x1: rect.x1.min(x),
                y1: rect.y1.min(y),
                x2: rect.x2.max(x + 1),
                y2: rect.y2.max(y + 1),
            };
        }
        let labelled = |k: usize| {
            self.visible[k] >= MIN_VISIBLE_PIXELS
                && self.visible[k] as f32 >= MIN_VISIBLE * self.areas[k]
        };
        boxes
            .into_iter()
            .enumerate()
            .map(|(k, rect)| rect.filter(|_| labelled(k)))
            .collect()
    }
}

/// Renders one image of side `size` with 1..=`max_objects` shapes drawn from `classes`
/// (fewer when a shape finds no place; none when `classes` is empty).
pub fn render(
    size: u32,
    classes: &[ShapeKind],
    max_objects: usize,
    rng: &mut impl Rng,
) -> SynthImage {
    let mut canvas = Canvas::gradient(size, rng);
    canvas.blobs(rng);
    canvas.lines(rng);
    let mut layout = Layout {
        owner: vec![0; (size * size) as usize],
        areas: Vec::new(),
        visible: Vec::new(),
    };
    let mut objects = Vec::new();
    let count = if classes.is_empty() {
        0
    } else {
        rng.random_range(1..=max_objects.max(1))
    };
    for _ in 0..count {
        let class = rng.random_range(0..classes.len());
        for _ in 0..PLACEMENT_TRIES {
            let side = rng.random_range(SIZE_RANGE.0..SIZE_RANGE.1) * size as f32;
            let centre = (
                rng.random_range(0.05..0.95) * size as f32,
                rng.random_range(0.05..0.95) * size as f32,
            );
            let outline = random_outline(classes[class], centre, side, rng);
            let (pixels, area) = (outline.pixels(size), outline.area());
            if !layout.accepts(&pixels, area) {
                continue;
            }
            paint(&mut canvas, &pixels, rng);
            layout.place(&pixels, area);
            objects.push(SynthObject {
                class,
                outline,
                visible_box: None,
            });
            break;
        }
    }
    for (object, rect) in objects.iter_mut().zip(layout.visible_boxes(size)) {
        object.visible_box = rect;
    }
    let amplitude = rng.random_range(8.0..30.0);
    SynthImage {
        image: canvas.into_noisy_image(amplitude, rng),
        objects,
    }
}

/// Fills `pixels` with one random colour that stands out from what lies under it.
fn paint(canvas: &mut Canvas, pixels: &[usize], rng: &mut impl Rng) {
    let under = canvas.mean_under(pixels);
    let contrast = |colour: &[f32; 3]| (0..3).map(|c| (colour[c] - under[c]).abs()).sum::<f32>();
    let mut colour = Canvas::random_colour(rng);
    for _ in 0..20 {
        if contrast(&colour) >= MIN_CONTRAST {
            break;
        }
        colour = Canvas::random_colour(rng);
    }
    pixels.iter().for_each(|&i| canvas.rgb[i] = colour);
}

/// The split's index in the random stream, so train and val images never share one.
fn split_stream(split: &str) -> u64 {
    if split == "train" {
        0
    } else {
        1
    }
}

/// Writes the dataset described by `config`: `images/{train,val}/NNNNNN.png`,
/// `labels/{train,val}/NNNNNN.txt` and `data.yaml` under `config.out`, which must not
/// already hold `images/`, `labels/` or `data.yaml`.
pub fn generate(config: &SynthConfig) -> Result<SynthSummary, SynthError> {
    check_settings(config)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| SynthError::Io { path, error }
    };
    for existing in ["images", "labels", "data.yaml"].map(|name| config.out.join(name)) {
        if existing.exists() {
            return Err(SynthError::Exists { path: existing });
        }
    }
    std::fs::create_dir_all(&config.out).map_err(io(&config.out))?;
    let root = config.out.canonicalize().map_err(io(&config.out))?;
    let train_objects = write_split(config, &root, "train", config.n_train)?;
    let val_objects = write_split(config, &root, "val", config.n_val)?;
    let data_yaml = root.join("data.yaml");
    std::fs::write(&data_yaml, data_yaml_text(config, &root)).map_err(io(&data_yaml))?;
    Ok(SynthSummary {
        data_yaml,
        train_images: config.n_train,
        val_images: config.n_val,
        train_objects,
        val_objects,
    })
}

fn check_settings(config: &SynthConfig) -> Result<(), SynthError> {
    if config.classes.is_empty() {
        return Err(SynthError::Settings(format!(
            "no classes chosen; pick some of {}",
            supported_shapes()
        )));
    }
    if let Some(kind) = config
        .classes
        .iter()
        .enumerate()
        .find_map(|(i, kind)| config.classes[..i].contains(kind).then_some(kind))
    {
        return Err(SynthError::Settings(format!(
            "`{}` is listed twice in the classes",
            kind.name()
        )));
    }
    if !(32..=4096).contains(&config.imgsz) {
        return Err(SynthError::Settings(format!(
            "image size {} is outside 32..=4096 pixels",
            config.imgsz
        )));
    }
    if !(1..=1000).contains(&config.max_objects) {
        return Err(SynthError::Settings(format!(
            "max objects {} is outside 1..=1000",
            config.max_objects
        )));
    }
    Ok(())
}

/// Renders and writes one split in parallel; returns how many objects it labelled.
fn write_split(
    config: &SynthConfig,
    root: &Path,
    split: &str,
    n: usize,
) -> Result<usize, SynthError> {
    let (images, labels) = (
        root.join("images").join(split),
        root.join("labels").join(split),
    );
    for dir in [&images, &labels] {
        std::fs::create_dir_all(dir).map_err(|error| SynthError::Io {
            path: dir.clone(),
            error,
        })?;
    }
    let counts = (0..n).into_par_iter().map(|index| {
        let mut rng = stream_rng(config.seed, (split_stream(split) << 32) | index as u64);
        let rendered = render(config.imgsz, &config.classes, config.max_objects, &mut rng);
        let stem = format!("{index:06}");
        write_png(&rendered.image, &images.join(format!("{stem}.png")))?;
        let label_path = labels.join(format!("{stem}.txt"));
        std::fs::write(&label_path, rendered.label_text()).map_err(|error| SynthError::Io {
            path: label_path,
            error,
        })?;
        Ok(rendered
            .objects
            .iter()
            .filter(|o| o.visible_box.is_some())
            .count())
    });
    counts
        .collect::<Result<Vec<_>, SynthError>>()
        .map(|counts| counts.into_iter().sum())
}

/// PNG with fast compression: noisy images barely compress anyway, and speed matters here.
fn write_png(image: &RgbImage, path: &Path) -> Result<(), SynthError> {
    let file = std::fs::File::create(path).map_err(|error| SynthError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let encoder = PngEncoder::new_with_quality(
        std::io::BufWriter::new(file),
        CompressionType::Fast,
        FilterType::Sub,
    );
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(|error| SynthError::Encode {
            path: path.to_path_buf(),
            error,
        })
}

fn data_yaml_text(config: &SynthConfig, root: &Path) -> String {
    let names = config
        .classes
        .iter()
        .map(|kind| kind.name())
        .collect::<Vec<_>>()
        .join(", ");
    let classes = config
        .classes
        .iter()
        .map(|kind| kind.name())
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "# Synthetic shapes: actyolo data synth --n-train {} --n-val {} --imgsz {} --seed {} --classes {classes}\n\
         path: {}\ntrain: images/train\nval: images/val\nnc: {}\nnames: [{names}]\n",
        config.n_train,
        config.n_val,
        config.imgsz,
        config.seed,
        yaml_string(&root.display().to_string()),
        config.classes.len(),
    )
}

/// A YAML double-quoted scalar, so that any path survives (spaces, colons, `#`).
fn yaml_string(text: &str) -> String {
    serde_json::to_string(text)
        .unwrap_or_else(|_| unreachable!("a string always serialises to JSON"))
}
