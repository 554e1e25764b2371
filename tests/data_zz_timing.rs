use std::sync::Arc;
use std::time::Instant;
use actyolo::data::dataset::{DataConfig, Dataset, Split};
use actyolo::data::loader::{Loader, LoaderConfig};
use actyolo::train::hyp::Hyp;
#[test]
fn timing() {
    let config = DataConfig::load(std::path::Path::new("/tmp/synth_check/data.yaml")).unwrap();
    let train = Arc::new(Dataset::from_config(&config, Split::Train).unwrap());
    for workers in [1, 2] {
        let loader = Loader::train(train.clone(), &Hyp::default(), LoaderConfig { imgsz: 256, batch_size: 16, workers, seed: 0, prefetch: 2 }).unwrap();
        let start = Instant::now();
        let n: usize = loader.epoch(0).unwrap().take(40).map(|b| b.unwrap().paths.len()).sum();
        println!("workers {workers}: {n} images in {:.2} s", start.elapsed().as_secs_f64());
    }
}
