//! Every activation, forward and backward, against PyTorch's values in
//! tests/fixtures/activations.* (made by tools/gen_act_fixtures.py), with the tolerance
//! stated in act_support.

mod act_support;

use act_support::fixtures;
use actyolo::act::ActSpec;
use candle_core::Device;

#[test]
fn every_activation_matches_pytorch_forward_and_backward() {
    act_support::assert_every_case_matches(&Device::Cpu);
}

#[test]
fn fixtures_cover_every_activation_kind() {
    let (manifest, _) = fixtures();
    let covered: std::collections::HashSet<&str> = manifest
        .cases
        .iter()
        .map(|c| ActSpec::parse(&c.spec).unwrap().def().name)
        .collect();
    let missing: Vec<_> = actyolo::act::zoo::ACTIVATIONS
        .iter()
        .map(|d| d.name)
        .filter(|name| !covered.contains(name))
        .collect();
    assert!(missing.is_empty(), "no golden case for {missing:?}");
}
