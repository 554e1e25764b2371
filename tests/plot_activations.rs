//! `acts plot`: one PNG and one SVG per activation plus the overview, checked as files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use actyolo::act::curves::{
    default_plot_specs, plot_activations, CurveError as PlotError, PlotOptions,
};
use actyolo::act::zoo::ACTIVATIONS;
use actyolo::act::ActSpec;

fn parse(s: &str) -> ActSpec {
    ActSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A folder under the system's temp dir that no other run or test uses.
fn fresh_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!("actyolo-{name}-{}-{nanos}", std::process::id()))
}

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() > 1000,
        "{}: only {} bytes",
        path.display(),
        bytes.len()
    );
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{}: not a PNG",
        path.display()
    );
    assert_eq!(&bytes[12..16], b"IHDR", "{}: no IHDR first", path.display());
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

fn read_svg(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.contains("<svg"), "{}: not an SVG", path.display());
    text
}

#[test]
fn writes_a_png_and_an_svg_per_activation_and_an_overview() {
    let specs = ["silu", "nn.Hardtanh(-2, 2)", "nn.LeakyReLU(0.1)"].map(parse);
    let out = fresh_dir("plot");
    let written = plot_activations(
        &specs,
        &PlotOptions {
            range: (-4.0, 4.0),
            out: out.clone(),
        },
    )
    .unwrap();

    assert_eq!(written.len(), 2 * specs.len() + 2, "{written:?}");
    let names: HashSet<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), written.len(), "file names repeat: {written:?}");
    for name in &names {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)),
            "{name}: not a safe file name"
        );
    }

    // One PNG and one SVG per spec, in order, each titled with the canonical spec.
    for (spec, files) in specs.iter().zip(written.chunks(2)) {
        let [png, svg] = files else { unreachable!() };
        assert!(
            png.starts_with(&out) && png.extension().unwrap() == "png",
            "{}",
            png.display()
        );
        assert_eq!(png.with_extension("svg"), *svg);
        assert_eq!(png_size(png), (800, 600), "{}", png.display());
        let title = spec.to_string();
        assert!(
            read_svg(svg).contains(&title),
            "{}: no title {title}",
            svg.display()
        );
    }

    let overview = out.join("overview.png");
    assert!(written.contains(&overview) && written.contains(&out.join("overview.svg")));
    let (width, height) = png_size(&overview);
    assert!(
        width >= 600 && height >= 200,
        "overview is {width}x{height}"
    );
    let overview_svg = read_svg(&out.join("overview.svg"));
    for short in ["SiLU", "Hardtanh", "LeakyReLU"] {
        assert!(
            overview_svg.contains(short),
            "overview.svg has no panel {short}"
        );
    }

    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn refuses_activations_that_are_not_curves() {
    let out = fresh_dir("plot-softmax");
    let opts = PlotOptions {
        range: (-6.0, 6.0),
        out: out.clone(),
    };
    let err = plot_activations(&[parse("silu"), parse("nn.Softmax()")], &opts).unwrap_err();
    assert!(matches!(err, PlotError::NotPointwise { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("nn.Softmax(dim=1)") && message.contains("pointwise"),
        "{message}"
    );
    assert!(!out.exists(), "nothing is written when a spec is refused");
}

#[test]
fn refuses_an_empty_range() {
    let opts = PlotOptions {
        range: (1.0, 1.0),
        out: fresh_dir("plot-range"),
    };
    let err = plot_activations(&[parse("relu")], &opts).unwrap_err();
    assert!(matches!(err, PlotError::BadRange { .. }), "{err:?}");
}

#[test]
fn default_specs_are_the_pointwise_kinds_with_tanh_gelu_after_gelu() {
    let specs = default_plot_specs();
    let pointwise = ACTIVATIONS.iter().filter(|d| d.pointwise).count();
    assert_eq!(specs.len(), pointwise + 1);
    assert!(specs.iter().all(|s| s.def().pointwise));
    let gelu = specs.iter().position(|s| *s == parse("nn.GELU()")).unwrap();
    assert_eq!(specs[gelu + 1], parse("nn.GELU(approximate='tanh')"));
}
