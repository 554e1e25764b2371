//! `actyolo info`: the layer table and totals of a model config.

use anyhow::Context;
use clap::Args;

use super::values::positive;
use actyolo::act::ActSpec;
use actyolo::model::build::Model;
use actyolo::model::config::ModelConfig;
use actyolo::model::summary::ModelSummary;
use actyolo::model::yaml_args::MAX_NC;

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct InfoArgs {
    /// Model config: a shipped name (yolov5n.yaml, yolov5s6, yolov7-tiny, ...) or a YAML path.
    #[arg(long, default_value = "yolov5n.yaml")]
    pub cfg: String,
    /// Activation for every Conv, overriding the YAML (e.g. "nn.LeakyReLU(0.1)").
    #[arg(long)]
    pub act: Option<String>,
    /// Number of classes, overriding the YAML.
    #[arg(long, value_parser = class_count)]
    pub nc: Option<usize>,
    /// Image size for the GFLOPs.
    #[arg(long, default_value_t = 640, value_parser = positive)]
    pub imgsz: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let mut cfg = ModelConfig::load(&args.cfg)?;
    if let Some(nc) = args.nc {
        cfg = cfg.with_nc(nc)?;
    }
    let act = args
        .act
        .as_deref()
        .map(ActSpec::parse)
        .transpose()
        .context("--act")?;
    let model = Model::new(&cfg, act.as_ref(), 0, None)?;
    let summary = ModelSummary::of(&model, args.imgsz);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render());
    }
    Ok(())
}

fn class_count(text: &str) -> Result<usize, String> {
    match positive(text)? {
        nc if nc <= MAX_NC => Ok(nc),
        nc => Err(format!(
            "{nc} is out of range: a model has 1 to {MAX_NC} classes"
        )),
    }
}
