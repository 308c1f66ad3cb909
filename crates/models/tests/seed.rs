//! Alone in its own test binary: the Flex RNG is one global for the process, so any test running
//! in parallel that initializes parameters would draw from it between the seed and the build.

use burn::prelude::*;
use coppice_models::*;

#[test]
fn initial_weights_depend_on_the_seed_alone() {
    let build = |touch_shapes_first: bool| {
        let device = Device::flex();
        device.seed(11);
        let net = presets::mlp(InputShape { channels: 1, height: 28, width: 28 }, &[8], 10).init(&device).unwrap();
        if touch_shapes_first {
            // A shape query used to force lazy initialization out of module order.
            let _ = net.prunable_layers();
        }
        float_params(&net).into_iter().map(|p| p.values.into_data().try_to_vec::<f32>().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(build(false), build(true));
}
