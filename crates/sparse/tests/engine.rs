//! The engine's logits against a plain reference pass, for CSR and dense weights and every tile
//! width (one image, narrow tiles, wide tiles split across threads with a partial last tile).

mod common;

use common::{Rng, every_kind, images, linear, max_difference, reference};
use coppice_sparse::{Encoding, Layer, Model, Weights};

const BATCHES: [usize; 5] = [1, 3, 8, 32, 75];

fn assert_matches_reference(model: &Model) {
    for batch in BATCHES {
        let x = images(batch as u64, model, batch);
        let expected = reference(model, &x, batch);
        for encoding in [Encoding::Csr, Encoding::Dense] {
            let logits = model.with_encoding(encoding).forward(&x, batch).unwrap();
            let diff = max_difference(&logits, &expected);
            assert!(diff < 1e-5, "{encoding:?} at batch {batch}: logits differ by {diff}");
            let (profiled, times) = model.with_encoding(encoding).forward_profiled(&x, batch).unwrap();
            assert_eq!(profiled, logits, "one thread or several, the same tiles give the same logits");
            assert_eq!(times.len(), model.nodes.len());
        }
    }
}

#[test]
fn every_layer_kind_matches_the_reference_sparse_and_dense() {
    for keep in [0.05, 0.3, 1.0] {
        assert_matches_reference(&every_kind(7, keep));
    }
}

#[test]
fn one_image_rows_wider_than_a_vector_match_the_reference() {
    // Output rows of 18 and 9 pixels: runs of 16 and 8 that overlap at the row's end.
    let mut rng = Rng::new(9);
    let layers = vec![
        common::conv(&mut rng, "conv1", 3, 1, 3, 0, 0.6),
        common::conv(&mut rng, "conv2", 2, 3, 2, 1, 0.6),
        Layer::MaxPool { kernel: [2, 2], stride: [2, 2], padding: [0, 0] },
        linear(&mut rng, "fc1", 4, 2 * 2 * 9, 0.5, false),
    ];
    assert_matches_reference(&Model::new([1, 5, 20], None, layers).unwrap());
}

#[test]
fn a_fully_pruned_layer_passes_its_bias_on() {
    let mut rng = Rng::new(3);
    let empty = Weights::from_dense(4, 6, vec![0.0; 24], Encoding::Csr);
    assert_eq!(empty.nonzero(), 0);
    let layers = vec![
        Layer::Linear { name: "fc1".into(), weights: empty, bias: vec![0.5, -0.5, 0.25, 1.0], relu: true },
        linear(&mut rng, "fc2", 3, 4, 0.5, false),
    ];
    let model = Model::new([1, 2, 3], None, layers).unwrap();
    assert_matches_reference(&model);
    let logits = model.forward(&images(1, &model, 1), 1).unwrap();
    let logits_of_zeros = model.forward(&[0.0; 6], 1).unwrap();
    assert_eq!(logits, logits_of_zeros, "the input cannot reach past a layer with no weights");
}

#[test]
fn the_file_round_trips_and_stores_columns_in_two_bytes() {
    let model = every_kind(11, 0.1);
    let bytes = model.to_bytes();
    let back = Model::from_bytes(&bytes).unwrap();
    assert_eq!(back, model);
    let dense = model.with_encoding(Encoding::Dense);
    assert_eq!(Model::from_bytes(&dense.to_bytes()).unwrap(), dense);
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("fc1.columns").unwrap().dtype(), safetensors::Dtype::U16);
}

#[test]
fn wrong_input_sizes_are_errors() {
    let model = every_kind(5, 0.5);
    let error = model.forward(&[0.0; 10], 1).unwrap_err().to_string();
    assert!(error.contains("10 values for 1 images"), "{error}");
    assert!(model.forward(&[], 0).unwrap().is_empty());
}

#[test]
fn layers_that_do_not_chain_are_refused() {
    let mut rng = Rng::new(1);
    let layers = vec![linear(&mut rng, "fc1", 4, 5, 1.0, true), linear(&mut rng, "fc2", 3, 5, 1.0, false)];
    let error = Model::new([1, 1, 5], None, layers).unwrap_err().to_string();
    assert!(error.starts_with("fc2: reads 5 inputs, but gets 4x1x1 = 4"), "{error}");
}

#[test]
fn a_batch_spread_over_threads_gives_the_logits_of_one_thread() {
    // 256 x 1024 kept weights x 70 images is above the threshold for using every core.
    let mut rng = Rng::new(4);
    let layers = vec![linear(&mut rng, "fc1", 256, 1024, 1.0, true), linear(&mut rng, "fc2", 10, 256, 0.5, false)];
    let model = Model::new([1, 32, 32], None, layers).unwrap();
    let x = images(2, &model, 70);
    let (one_thread, _) = model.forward_profiled(&x, 70).unwrap();
    assert_eq!(model.forward(&x, 70).unwrap(), one_thread);
    let diff = max_difference(&one_thread, &reference(&model, &x, 70));
    assert!(diff < 1e-3, "logits of a 1024-input layer differ from the reference by {diff}");
}

#[test]
fn a_hand_built_matrix_that_does_not_fit_is_refused_before_it_runs() {
    let csr = |columns: Vec<u32>, row_offsets: Vec<u32>| {
        let values = vec![1.0; columns.len()];
        Weights::Csr(coppice_sparse::Csr { rows: 2, cols: 3, row_offsets, columns, values })
    };
    let model = |weights| {
        let layer = Layer::Linear { name: "fc1".into(), weights, bias: vec![0.0; 2], relu: false };
        Model::new([1, 1, 3], None, vec![layer]).map(|_| ()).unwrap_err().to_string()
    };
    assert!(model(csr(vec![0, 3], vec![0, 1, 2])).starts_with("fc1.columns: holds column 3"));
    assert!(model(csr(vec![0, 1], vec![0, 2, 1])).starts_with("fc1.row_offsets: must start at 0"));
    assert!(model(csr(vec![0, 1], vec![0, 1])).starts_with("fc1.row_offsets: has 2 values"));
    assert!(model(csr(vec![0, 1], vec![0, 1, 3])).starts_with("fc1.values: 2 values and 2 columns"));
}
