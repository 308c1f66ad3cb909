//! Every instruction path this CPU has (`COPPICE_SIMD`'s avx512, avx2 and scalar) against the
//! reference pass and against each other: the kernels are compiled once per path, and without
//! this only the widest would ever run on a machine that has it. Also: NaN inputs propagate on
//! every path.

mod common;

use common::{Rng, every_kind, images, linear, max_difference, reference, strided_conv};
use coppice_sparse::{Encoding, Layer, Model, Simd};

/// Non-square kernels, strides and padding, two channels in, a pool padded on one side.
fn non_square() -> Model {
    let mut rng = Rng::new(21);
    let layers = vec![
        strided_conv(&mut rng, "conv1", [5, 2], [3, 1], [1, 1], [1, 0], 0.5, true),
        strided_conv(&mut rng, "conv2", [4, 5], [2, 5], [2, 1], [0, 2], 0.4, true),
        Layer::MaxPool { kernel: [3, 2], stride: [2, 1], padding: [1, 0] },
        linear(&mut rng, "fc1", 6, 4 * 3 * 11, 0.3, false),
    ];
    Model::new([2, 13, 12], None, layers).unwrap()
}

/// A linear layer with more than 65,536 inputs, whose column indices the file stores as u32.
fn wide_rows() -> Model {
    let mut rng = Rng::new(22);
    let layers = vec![linear(&mut rng, "fc1", 5, 70_000, 0.01, true), linear(&mut rng, "fc2", 3, 5, 1.0, false)];
    Model::new([1, 250, 280], None, layers).unwrap()
}

/// A convolution with enough work per batch that the engine spreads its tiles over the cores.
fn conv_over_threads() -> Model {
    let mut rng = Rng::new(23);
    let layers = vec![
        strided_conv(&mut rng, "conv1", [16, 3], [3, 3], [1, 1], [1, 1], 0.5, true),
        strided_conv(&mut rng, "conv2", [16, 16], [3, 3], [1, 1], [1, 1], 0.3, true),
        Layer::GlobalAvgPool,
        linear(&mut rng, "fc", 10, 16, 1.0, false),
    ];
    Model::new([3, 24, 24], None, layers).unwrap()
}

#[test]
fn every_simd_path_gives_the_reference_logits() {
    let paths = Simd::available();
    assert_eq!(paths[0], Simd::widest());
    assert_eq!(paths.last(), Some(&Simd::Scalar), "every CPU runs the scalar path");
    let models = [("every kind", every_kind(7, 0.3)), ("non-square", non_square()), ("u32 columns", wide_rows())];
    let file = safetensors::SafeTensors::deserialize(&models[2].1.to_bytes())
        .map(|f| f.tensor("fc1.columns").unwrap().dtype());
    assert_eq!(file.unwrap(), safetensors::Dtype::U32);
    let mut largest = vec![0.0f32; paths.len()];
    for (label, model) in &models {
        for batch in [1, 8, 75] {
            let x = images(batch as u64, model, batch);
            let expected = reference(model, &x, batch);
            for encoding in [Encoding::Csr, Encoding::Dense] {
                let model = model.with_encoding(encoding);
                let widest = model.forward_on(&x, batch, paths[0]).unwrap();
                for (p, &simd) in paths.iter().enumerate() {
                    let logits = model.forward_on(&x, batch, simd).unwrap();
                    let to_reference = max_difference(&logits, &expected);
                    assert!(to_reference < 1e-4, "{label}, {encoding:?}, {simd} at batch {batch}: {to_reference}");
                    let to_widest = max_difference(&logits, &widest);
                    assert!(to_widest <= 1e-5, "{label}, {encoding:?}, {simd} at batch {batch}: {to_widest}");
                    largest[p] = largest[p].max(to_widest);
                }
            }
        }
    }
    for (simd, difference) in paths.iter().zip(&largest) {
        // Shown with --nocapture: what the paths differ by here.
        println!("{simd}: logits within {difference:e} of {}", paths[0]);
    }
}

#[test]
fn a_conv_spread_over_threads_gives_the_same_logits_on_every_path() {
    let model = conv_over_threads();
    let x = images(5, &model, 70);
    let expected = reference(&model, &x, 70);
    let one = images(6, &model, 1);
    for simd in Simd::available() {
        let logits = model.forward_on(&x, 70, simd).unwrap();
        assert!(max_difference(&logits, &expected) < 1e-4, "{simd}");
        let single = model.forward_on(&one, 1, simd).unwrap();
        assert!(max_difference(&single, &reference(&model, &one, 1)) < 1e-4, "{simd} at batch 1");
    }
}

#[test]
fn a_path_this_cpu_lacks_is_refused() {
    let model = every_kind(3, 0.5);
    let x = images(1, &model, 1);
    for lacking in Simd::ALL.into_iter().filter(|s| !s.is_available()) {
        let error = model.forward_on(&x, 1, lacking).unwrap_err().to_string();
        assert!(error.contains(&format!("this CPU lacks {lacking}")), "{error}");
    }
    assert!(Simd::parse("avx1024").unwrap_err().contains("COPPICE_SIMD"));
}

/// Where a value is NaN.
fn nans(values: &[f32]) -> Vec<bool> {
    values.iter().map(|v| v.is_nan()).collect()
}

/// A NaN in the input comes out as NaN, on every path, as it does in burn (the flex kernels'
/// `a_nan_in_the_input_propagates_as_in_burn`): through ReLU and max-pool, which `f32::max`
/// would turn into plausible numbers, and through convolution and linear layers whose weights
/// read it.
#[test]
fn nan_propagates_through_relu_max_pool_conv_and_linear() {
    let input = [2, 6, 6];
    let mut x: Vec<f32> = (0..72).map(|i| (i as f32 * 0.37).sin()).collect();
    let at = 36 + 2 * 6 + 3;
    x[at] = f32::NAN;
    let model = |layers| Model::new(input, None, layers).unwrap();
    let mut rng = Rng::new(30);
    let relu = model(vec![Layer::Relu]);
    let pool = model(vec![Layer::MaxPool { kernel: [2, 2], stride: [2, 2], padding: [0, 0] }]);
    let conv = model(vec![strided_conv(&mut rng, "conv", [3, 2], [3, 3], [1, 1], [1, 1], 1.0, true)]);
    let fc = model(vec![linear(&mut rng, "fc", 4, 72, 1.0, true)]);
    for simd in Simd::available() {
        // The kernels see the image as one of a tile: batches of 1 and 8 take different code.
        for batch in [1, 8] {
            let images: Vec<f32> = x.iter().copied().cycle().take(72 * batch).collect();
            let first = |m: &Model| m.forward_on(&images, batch, simd).unwrap()[..m.classes()].to_vec();
            let expected: Vec<bool> = (0..72).map(|i| i == at).collect();
            assert_eq!(nans(&first(&relu)), expected, "{simd}, batch {batch}: ReLU");
            let pooled = nans(&first(&pool));
            assert_eq!(pooled.iter().filter(|&&n| n).count(), 1, "{simd}, batch {batch}: max-pool {pooled:?}");
            assert!(pooled[9 + 3 + 1], "{simd}, batch {batch}: the window at (1, 1) of channel 1");
            let convolved = nans(&first(&conv));
            assert_eq!(convolved.iter().filter(|&&n| n).count(), 3 * 9, "{simd}, batch {batch}: conv");
            assert!(nans(&first(&fc)).iter().all(|&n| n), "{simd}, batch {batch}: linear");
        }
    }
}
