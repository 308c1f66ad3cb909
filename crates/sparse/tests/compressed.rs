//! The compressed file (Deep Compression's coding): it round-trips exactly, and a damaged or
//! crafted file is an error that names the array, never a panic.

mod common;

use std::collections::HashMap;

use common::{Rng, every_kind, images, linear};
use coppice_sparse::{Error, Layer, Model, Weights};
use safetensors::tensor::TensorView;

/// Weights on a grid of eighths (at most 17 values a layer), as a quantized network's are; a
/// kept weight stays non-zero.
fn quantized(model: Model) -> Model {
    let grid = |w: &Weights| {
        let values: Vec<f32> = w
            .to_dense()
            .iter()
            .map(|&v| if v == 0.0 { 0.0 } else { ((v * 8.0).round() / 8.0).clamp(-1.0, 1.0) })
            .map(|v: f32| if v == 0.0 { 0.125 } else { v })
            .zip(w.to_dense())
            .map(|(q, v)| if v == 0.0 { 0.0 } else { q })
            .collect();
        Weights::from_dense(w.rows(), w.cols(), values, w.encoding())
    };
    let mut model = model;
    for node in &mut model.nodes {
        if let Layer::Linear { weights, .. } | Layer::Conv { weights, .. } = &mut node.layer {
            *weights = grid(weights);
        }
    }
    model
}

/// Every kind of node, and a layer sparse enough that some gaps need padding.
fn models() -> Vec<Model> {
    let mut rng = Rng::new(4);
    let sparse = Model::new(
        [1, 20, 20],
        None,
        vec![linear(&mut rng, "big", 30, 400, 0.01, true), linear(&mut rng, "out", 4, 30, 0.5, false)],
    )
    .unwrap();
    vec![quantized(every_kind(2, 0.3)), quantized(sparse)]
}

fn error_of(bytes: &[u8]) -> String {
    match Model::from_bytes(bytes) {
        Ok(_) => panic!("the damaged file loaded"),
        Err(e) => e.to_string(),
    }
}

/// The file with arrays replaced by `edit` (which may change their length) and its metadata by
/// `meta`.
fn rewrite(bytes: &[u8], edit: impl Fn(&str, &mut Vec<u8>), meta: impl Fn(&mut HashMap<String, String>)) -> Vec<u8> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let mut metadata = metadata.metadata().clone().unwrap();
    meta(&mut metadata);
    let arrays: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let mut data = view.data().to_vec();
            edit(&name, &mut data);
            let len = data.len() / view.dtype().bitsize().div_ceil(8);
            (name, view.dtype(), vec![len], data)
        })
        .collect();
    let views = arrays.iter().map(|(n, d, s, b)| (n.as_str(), TensorView::new(*d, s.clone(), b).unwrap()));
    safetensors::serialize(views, Some(metadata)).unwrap()
}

fn compressed() -> Vec<u8> {
    models().pop().unwrap().to_compressed_bytes().unwrap().0
}

#[test]
fn a_compressed_model_decodes_to_exactly_its_weights_and_runs_alike() {
    for model in models() {
        let (bytes, sizes) = model.to_compressed_bytes().unwrap();
        let loaded = Model::from_bytes(&bytes).unwrap();
        for (a, b) in model.layers().zip(loaded.layers()) {
            if let (
                Layer::Linear { weights: wa, .. } | Layer::Conv { weights: wa, .. },
                Layer::Linear { weights: wb, .. } | Layer::Conv { weights: wb, .. },
            ) = (a, b)
            {
                assert_eq!(wa, wb, "{}", a.name());
            }
        }
        let x = images(1, &model, 3);
        assert_eq!(model.forward(&x, 3).unwrap(), loaded.forward(&x, 3).unwrap());
        for size in &sizes {
            assert!(size.coded_bytes < size.sparse_bytes, "{}: coding shrinks the layer: {size:?}", size.name);
        }
    }
    let sizes = models().pop().unwrap().to_compressed_bytes().unwrap().1;
    assert!(
        sizes[0].padding > 0 || sizes[0].gap_bits >= 9,
        "a 1 % layer pads, or codes gaps of 9 bits: {:?}",
        sizes[0]
    );
}

#[test]
fn a_network_that_was_not_quantized_is_refused_with_the_fix() {
    let mut rng = Rng::new(9);
    let model = Model::new([1, 300, 1], None, vec![linear(&mut rng, "wide", 300, 300, 1.0, false)]).unwrap();
    let error = model.to_compressed_bytes().unwrap_err();
    assert!(matches!(error, Error::NotQuantized { .. }));
    let message = error.to_string();
    assert!(message.contains("wide") && message.contains("[quantize]"), "{message}");
}

#[test]
fn a_truncated_file_is_an_error() {
    let bytes = compressed();
    for cut in [0, 9, bytes.len() / 2, bytes.len() - 1] {
        assert!(error_of(&bytes[..cut]).starts_with("not a coppice sparse model"), "cut at {cut}");
    }
}

#[test]
fn an_index_past_the_codebook_is_an_error() {
    let bad = rewrite(
        &compressed(),
        |name, data| {
            if name == "big.codebook" {
                data.truncate(4)
            }
        },
        |_| {},
    );
    // The index table holds a length for each shared value, so a codebook too short for it is
    // refused before any index is read.
    let error = error_of(&bad);
    assert!(error.starts_with("big.index_lengths") && error.contains("past the codebook"), "{error}");
}

#[test]
fn gaps_that_run_past_the_layer_are_an_error() {
    // Every gap the largest: the entries step past the 30 x 400 weights.
    let bytes = compressed();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let coding: serde_json::Value = serde_json::from_str(&metadata.metadata().as_ref().unwrap()["coding"]).unwrap();
    let entries = coding["big"]["entries"].as_u64().unwrap() as usize;
    let bad = rewrite(
        &bytes,
        |name, data| match name {
            "big.gap_lengths" => {
                data.fill(0);
                *data.last_mut().unwrap() = 1;
            }
            "big.gaps" => *data = vec![0; entries.div_ceil(8)],
            _ => {}
        },
        |_| {},
    );
    let error = error_of(&bad);
    assert!(error.starts_with("big.gaps") && error.contains("past the layer"), "{error}");
}

#[test]
fn a_codebook_of_nan_is_an_error() {
    let bad = rewrite(
        &compressed(),
        |name, data| {
            if name == "big.codebook" {
                data.chunks_mut(4).for_each(|v| v.copy_from_slice(&f32::NAN.to_le_bytes()));
            }
        },
        |_| {},
    );
    let error = error_of(&bad);
    assert!(error.starts_with("big.codebook") && error.contains("NaN"), "{error}");
}

#[test]
fn a_bit_width_of_0_or_33_is_an_error() {
    for (field, width) in [("bits", 0), ("gap_bits", 33), ("bits", 33)] {
        let bad = rewrite(
            &compressed(),
            |_, _| {},
            |m| {
                let mut coding: serde_json::Value = serde_json::from_str(&m["coding"]).unwrap();
                coding["big"][field] = width.into();
                m.insert("coding".into(), coding.to_string());
            },
        );
        let error = error_of(&bad);
        assert!(error.contains("coding") && error.contains("big") && error.contains("outside 1..=16"), "{error}");
    }
}

#[test]
fn an_entropy_stream_that_decodes_to_too_many_symbols_is_an_error() {
    let bad = rewrite(
        &compressed(),
        |name, data| {
            if name == "big.indices" {
                data.extend([0, 0])
            }
        },
        |_| {},
    );
    let error = error_of(&bad);
    assert!(error.starts_with("big.indices") && error.contains("more than"), "{error}");
}

/// The dtype of each array of a file, by name.
fn dtypes(bytes: &[u8]) -> HashMap<String, safetensors::Dtype> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    file.tensors().into_iter().map(|(name, view)| (name, view.dtype())).collect()
}

#[test]
fn codebooks_and_biases_in_half_precision_are_stored_in_two_bytes_and_read_back_exactly() {
    use safetensors::Dtype;
    // The grid of eighths is half precision; the random biases are not, until rounded.
    let model = models().pop().unwrap();
    let f32_bytes = model.to_compressed_bytes().unwrap().0;
    let types = dtypes(&f32_bytes);
    assert_eq!((types["big.codebook"], types["big.bias"]), (Dtype::F16, Dtype::F32));
    let mut halved = model;
    for node in &mut halved.nodes {
        if let Layer::Linear { bias, .. } | Layer::Conv { bias, .. } = &mut node.layer {
            bias.iter_mut().for_each(|b| *b = half::f16::from_f32(*b).to_f32());
        }
    }
    let bytes = halved.to_compressed_bytes().unwrap().0;
    assert_eq!(dtypes(&bytes)["big.bias"], Dtype::F16);
    // Two bytes less for each of the 34 bias values; the header's offsets may take a digit less.
    let saved = f32_bytes.len() - bytes.len();
    assert!((2 * 34 - 8..=2 * 34 + 8).contains(&saved), "{saved} bytes saved");
    let loaded = Model::from_bytes(&bytes).unwrap();
    let x = images(2, &halved, 5);
    assert_eq!(halved.forward(&x, 5).unwrap(), loaded.forward(&x, 5).unwrap());
}

#[test]
fn version_1_files_still_load_and_a_newer_version_is_refused() {
    let with_version = |v: &str| rewrite(&compressed(), |_, _| {}, |m| drop(m.insert("version".into(), v.into())));
    Model::from_bytes(&with_version("1")).unwrap();
    let error = error_of(&with_version("3"));
    assert!(error.contains('3') && error.contains('2'), "{error}");
}
