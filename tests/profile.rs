//! The stage profiler: a conv forward and backward records time in the conv stages only,
//! nested spans do not count twice, and nothing at all is recorded while profiling is off. No timing thresholds: only zero or not.
//! One test function, since the switch and the counters are global to the process.

use std::time::Instant;

use actyolo::ops::conv2d::{conv2d, Conv2dParams};
use actyolo::util::profile::{self, Stage};
use candle_core::{Device, Var};

fn conv_forward_backward() -> candle_core::Result<()> {
    let x = Var::rand(-1f32, 1f32, (2, 4, 16, 16), &Device::Cpu)?;
    let w = Var::rand(-1f32, 1f32, (8, 4, 3, 3), &Device::Cpu)?;
    let y = conv2d(
        &x,
        &w,
        Conv2dParams {
            stride: 1,
            padding: 1,
            dilation: 1,
            groups: 1,
        },
    )?;
    let grads = y.sum_all()?.backward()?;
    assert!(
        grads.get(&x).is_some() && grads.get(&w).is_some(),
        "both gradients were computed"
    );
    Ok(())
}

#[test]
fn profiler_records_conv_stages_only_when_enabled() -> candle_core::Result<()> {
    profile::set_enabled(true);
    profile::reset();
    conv_forward_backward()?;
    let on = profile::snapshot();
    for stage in [
        Stage::ConvForward,
        Stage::ConvBackwardInput,
        Stage::ConvBackwardWeight,
    ] {
        assert_eq!(on.calls(stage), 1, "{stage:?}");
        assert!(!on.time(stage).is_zero(), "{stage:?} recorded no time");
    }
    for stage in Stage::ALL.into_iter().filter(|s| {
        !matches!(
            s,
            Stage::ConvForward | Stage::ConvBackwardInput | Stage::ConvBackwardWeight
        )
    }) {
        assert_eq!(on.calls(stage), 0, "{stage:?}");
        assert!(on.time(stage).is_zero(), "{stage:?} recorded time");
    }
    assert_eq!(on.total(), Stage::ALL.into_iter().map(|s| on.time(s)).sum());

    // Nested spans: the outer stage keeps only what the inner ones did not claim, so the
    // stages never add up to more than the wall time around them.
    profile::reset();
    let started = Instant::now();
    {
        let _t = profile::span(Stage::Loss);
        conv_forward_backward()?;
    }
    let wall = started.elapsed();
    let nested = profile::snapshot();
    assert_eq!(nested.calls(Stage::Loss), 1);
    assert_eq!(nested.calls(Stage::ConvForward), 1);
    assert!(
        nested.total() <= wall,
        "{:?} recorded in {wall:?}",
        nested.total()
    );

    profile::set_enabled(false);
    profile::reset();
    conv_forward_backward()?;
    let off = profile::snapshot();
    assert!(off.total().is_zero());
    assert!(Stage::ALL.into_iter().all(|s| off.calls(s) == 0));
    Ok(())
}
