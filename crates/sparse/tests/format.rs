//! Damaged or foreign files are errors that say what is wrong, never a panic.

mod common;

use std::collections::HashMap;

use common::every_kind;
use coppice_sparse::{Encoding, Error, Layer, Model, Normalization, Weights};
use safetensors::{Dtype, tensor::TensorView};

fn error_of(bytes: &[u8]) -> String {
    match Model::from_bytes(bytes) {
        Ok(_) => panic!("the damaged file loaded"),
        Err(e) => e.to_string(),
    }
}

/// The model's file with its tensors edited by `edit` and its metadata by `meta`.
fn rewritten(edit: impl Fn(&str, &mut Vec<u8>), meta: impl Fn(&mut HashMap<String, String>)) -> Vec<u8> {
    rewrite(&every_kind(2, 0.2).to_bytes(), edit, meta)
}

fn rewrite(bytes: &[u8], edit: impl Fn(&str, &mut Vec<u8>), meta: impl Fn(&mut HashMap<String, String>)) -> Vec<u8> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let mut metadata = metadata.metadata().clone().unwrap();
    meta(&mut metadata);
    let tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let mut data = view.data().to_vec();
            edit(&name, &mut data);
            (name, view.dtype(), view.shape().to_vec(), data)
        })
        .collect();
    let views = tensors.iter().map(|(n, d, s, b)| (n.as_str(), TensorView::new(*d, s.clone(), b).unwrap()));
    safetensors::serialize(views, Some(metadata)).unwrap()
}

#[test]
fn a_truncated_file_is_an_error() {
    let bytes = every_kind(2, 0.2).to_bytes();
    for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        let error = error_of(&bytes[..cut]);
        assert!(error.starts_with("not a coppice sparse model"), "cut at {cut}: {error}");
    }
}

#[test]
fn wrong_magic_is_an_error() {
    assert!(error_of(b"PK\x03\x04 definitely a zip file").starts_with("not a coppice sparse model"));
    let foreign = rewritten(
        |_, _| {},
        |m| {
            m.insert("format".into(), "pt".into());
        },
    );
    let error = error_of(&foreign);
    assert!(error.contains("lacks format = coppice-sparse"), "{error}");
    let future = rewritten(
        |_, _| {},
        |m| {
            m.insert("version".into(), "9".into());
        },
    );
    assert!(matches!(Model::from_bytes(&future), Err(Error::Version { .. })));
}

#[test]
fn an_index_out_of_range_is_an_error() {
    let bad = rewritten(
        |name, data| {
            if name == "fc1.columns" {
                data[0..2].copy_from_slice(&999u16.to_le_bytes());
            }
        },
        |_| {},
    );
    let error = error_of(&bad);
    assert!(error.starts_with("fc1.columns: holds column 999, but the layer has 10 inputs"), "{error}");
    let backwards = rewritten(
        |name, data| {
            if name == "fc2.row_offsets" {
                data[4..8].copy_from_slice(&1000u32.to_le_bytes());
            }
        },
        |_| {},
    );
    assert!(error_of(&backwards).starts_with("fc2.row_offsets: must start at 0 and never decrease"));
}

#[test]
fn sizes_that_disagree_with_the_header_are_errors() {
    let shrunk = rewritten(
        |_, _| {},
        |m| {
            let model = m["model"].replace("\"shape\":[7,10]", "\"shape\":[7,11]");
            m.insert("model".into(), model);
        },
    );
    let error = error_of(&shrunk);
    assert!(error.starts_with("fc1.row_offsets") || error.starts_with("fc1:"), "{error}");
    let unknown = rewritten(
        |_, _| {},
        |m| {
            let model = m["model"].replace("\"relu\":false", "\"relu\":false,\"dropout\":0.5");
            m.insert("model".into(), model);
        },
    );
    assert!(error_of(&unknown).contains("unknown field `dropout`"));
    let nan = rewritten(
        |name, data| {
            if name == "fc2.bias" {
                data[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
            }
        },
        |_| {},
    );
    assert!(error_of(&nan).starts_with("fc2.bias: holds NaN"));
}

#[test]
fn a_missing_file_names_its_path() {
    let error = Model::load("no/such/model.sparse.safetensors").unwrap_err().to_string();
    assert!(error.starts_with("no/such/model.sparse.safetensors: cannot read"), "{error}");
}

/// The file's `model` header replaced by `header`.
fn with_header(model: &Model, header: &str) -> Result<Model, Error> {
    Model::from_bytes(&rewrite(
        &model.to_bytes(),
        |_, _| {},
        |m| {
            m.insert("model".into(), header.into());
        },
    ))
}

#[test]
fn a_version_1_file_still_loads() {
    // The header and logits are what the version 1 engine wrote and computed for this model.
    let header = r#"{"input":[1,4,4],"normalization":null,"layers":[{"op":"conv","name":"conv1","encoding":"dense","shape":[2,1,3,3],"padding":[1,1],"relu":true},{"op":"max_pool","kernel":[2,2],"stride":[2,2]},{"op":"linear","name":"fc1","encoding":"csr","shape":[3,8],"relu":false}]}"#;
    let weights = Weights::from_dense(2, 9, (0..18).map(|i| i as f32 / 10.0).collect(), Encoding::Dense);
    let conv = Layer::Conv {
        name: "conv1".into(),
        weights,
        bias: vec![0.5, -0.5],
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        relu: true,
    };
    let values = (0..24).map(|i| if i % 3 == 0 { i as f32 / 7.0 } else { 0.0 }).collect();
    let weights = Weights::from_dense(3, 8, values, Encoding::Csr);
    let fc = Layer::Linear { name: "fc1".into(), weights, bias: vec![0.1, 0.2, 0.3], relu: false };
    let pool = Layer::MaxPool { kernel: [2, 2], stride: [2, 2], padding: [0, 0] };
    let model = Model::new([1, 4, 4], None, vec![conv, pool, fc]).unwrap();
    let v1 = rewrite(
        &model.to_bytes(),
        |_, _| {},
        |m| {
            m.insert("version".into(), "1".into());
            m.insert("model".into(), header.into());
        },
    );
    let loaded = Model::from_bytes(&v1).unwrap();
    assert_eq!(loaded, model);
    let logits = loaded.forward(&(0..16).map(|i| i as f32 / 16.0).collect::<Vec<_>>(), 1).unwrap();
    let diff = common::max_difference(&logits, &[7.1178575, 25.094643, 21.171429]);
    assert!(diff < 1e-5, "{logits:?}");
}

#[test]
fn a_chain_is_written_without_edges_and_a_graph_with_them() {
    let bytes = every_kind(3, 0.5).to_bytes();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = metadata.metadata().clone().unwrap();
    assert_eq!(metadata["version"], "2");
    assert!(!metadata["model"].contains("from"), "{}", metadata["model"]);
    assert!(metadata["model"].contains(r#"{"op":"max_pool","kernel":[2,2],"stride":[2,2],"padding":[0,0]}"#));
    assert!(metadata["model"].contains(r#""stride":[1,1],"padding":[1,1],"relu":true}"#));
    let model = every_kind(3, 0.5);
    let header = metadata["model"].replacen(r#""op":"max_pool","#, r#""from":[1],"op":"max_pool","#, 1);
    let graph = with_header(&model, &header).unwrap();
    assert_eq!(graph.nodes[1].from, vec![1]);
    let x = common::images(1, &model, 3);
    assert_eq!(graph.forward(&x, 3).unwrap(), model.forward(&x, 3).unwrap());
}

#[test]
fn headers_that_describe_impossible_graphs_are_errors() {
    let model = every_kind(3, 0.5);
    let bytes = model.to_bytes();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let header = metadata.metadata().clone().unwrap()["model"].clone();
    let error = |header: String| with_header(&model, &header).map(|_| ()).unwrap_err().to_string();

    let forward = header.replacen(r#""op":"max_pool","#, r#""from":[3],"op":"max_pool","#, 1);
    assert!(error(forward).starts_with("node 1 (max-pool 2x2): reads value 3, but only values 0 to 1"));
    let negative = header.replacen(r#""op":"max_pool","#, r#""from":[-1],"op":"max_pool","#, 1);
    assert!(error(negative).starts_with("metadata `model`: layer 1: from: invalid value"));
    let unknown = header.replacen(r#""op":"max_pool""#, r#""op":"lstm""#, 1);
    assert!(error(unknown).contains("layer 1: unknown variant `lstm`"));
    let extra = header.replacen(r#"{"op":"max_pool","#, r#"{"op":"global_avg_pool","size":2},{"op":"max_pool","#, 1);
    assert!(error(extra).contains("unknown field `size`"));
    let huge = usize::MAX / 2 + 1; // doubled, it wraps to 0
    let wide = header.replace(r#""padding":[1,1]"#, &format!(r#""padding":[{huge},{huge}]"#));
    let message = error(wide);
    assert!(message.starts_with("conv1: padding") && message.contains("overflows"), "{message}");
    let wide = header.replace(r#""padding":[1,1]"#, &format!(r#""padding":[{},1]"#, huge / 2));
    let message = error(wide);
    assert!(message.starts_with("conv1: a 2x11x13 input padded by") && message.contains("2^32"), "{message}");
    let vast = header.replace(r#""input":[2,11,13]"#, &format!(r#""input":[{huge},11,13]"#));
    let message = error(vast);
    assert!(message.starts_with("input: makes a value of"), "{message}");
    let rows = header.replace(r#""shape":[7,10]"#, &format!(r#""shape":[{},10]"#, usize::MAX));
    let message = error(rows);
    assert!(message.starts_with("fc1: 18446744073709551615 x 10 weights overflow"), "{message}");
    // channels x kh x kw, with the real numbers in the message rather than a wrapped product.
    let channels = header.replace(r#""shape":[4,2,3,3]"#, &format!(r#""shape":[4,{huge},3,3]"#));
    let message = error(channels);
    assert!(message.starts_with(&format!("conv1: shape [4, {huge}, 3, 3] overflows")), "{message}");
    let stride = header.replacen(r#""stride":[1,1]"#, r#""stride":[0,1]"#, 1);
    assert!(error(stride).contains("stride [0, 1] must be positive"));
    let kernel = header.replacen(r#""op":"max_pool","kernel":[2,2]"#, r#""op":"max_pool","kernel":[99,2]"#, 1);
    let message = error(kernel);
    assert!(
        message.contains("a [99, 2] window does not fit a 4x11x13 input") || message.contains("window"),
        "{message}"
    );
}

#[test]
fn the_residual_block_in_the_format_docs_loads() {
    let docs: String = include_str!("../src/format.rs")
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    let header = docs.split("```json\n").nth(1).and_then(|rest| rest.split("```").next()).unwrap();
    let mut rng = common::Rng::new(8);
    let mut conv = |name: &str, shape, kernel, stride, padding, encoding, relu| {
        let layer = common::strided_conv(&mut rng, name, shape, [kernel; 2], [stride; 2], [padding; 2], 0.3, relu);
        let Layer::Conv { name, weights, bias, kernel, stride, padding, relu } = layer else { unreachable!() };
        let weights = weights.with_encoding(encoding);
        Layer::Conv { name, weights, bias, kernel, stride, padding, relu }
    };
    let node = |layer, from: &[usize]| coppice_sparse::Node { layer, from: from.to_vec() };
    let fc = Layer::Linear {
        name: "fc".into(),
        weights: Weights::from_dense(10, 16, vec![0.5; 160], Encoding::Dense),
        bias: vec![0.0; 10],
        relu: false,
    };
    let nodes = vec![
        node(conv("conv1", [16, 3], 3, 2, 1, Encoding::Csr, true), &[]),
        node(conv("conv2", [16, 16], 3, 1, 1, Encoding::Csr, false), &[]),
        node(conv("shortcut", [16, 3], 1, 2, 0, Encoding::Dense, false), &[0]),
        node(Layer::Add { relu: true }, &[2, 3]),
        node(Layer::GlobalAvgPool, &[]),
        node(fc, &[]),
    ];
    let model = Model::graph([3, 32, 32], None, nodes).unwrap();
    let loaded = with_header(&model, header).unwrap();
    assert_eq!(loaded, model);
    assert_eq!(loaded.classes(), 10);
}

#[test]
fn per_channel_normalization_and_class_names_round_trip() {
    let plain = every_kind(3, 0.3);
    let metadata = |bytes: &[u8]| safetensors::SafeTensors::read_metadata(bytes).unwrap().1.metadata().clone().unwrap();
    // One value: written as the plain numbers of version 2, which older readers read.
    let one = Normalization { mean: vec![0.5], std: vec![0.25] };
    let model = Model::new(plain.input, Some(one), plain.layers().cloned().collect()).unwrap();
    let bytes = model.to_bytes();
    assert_eq!(metadata(&bytes)["version"], "2");
    assert!(metadata(&bytes)["model"].contains(r#""normalization":{"mean":0.5,"std":0.25}"#));
    assert_eq!(Model::from_bytes(&bytes).unwrap(), model);

    let two = Normalization { mean: vec![0.5, 0.0], std: vec![0.25, 2.0] };
    let names: Vec<String> = ["a", "b", "c"].map(String::from).into();
    let model = Model::new(plain.input, Some(two), plain.layers().cloned().collect())
        .unwrap()
        .with_classes(names.clone())
        .unwrap();
    let bytes = model.to_bytes();
    assert_eq!(metadata(&bytes)["version"], "3");
    let loaded = Model::from_bytes(&bytes).unwrap();
    assert_eq!((loaded.classes.clone(), loaded), (names, model.clone()));
    let mut pixels = vec![1.0; 2 * 11 * 13];
    model.normalize(&mut pixels);
    assert_eq!((pixels[0], pixels[11 * 13]), (2.0, 0.5), "each channel by its own mean and std");

    let three = Normalization { mean: vec![0.5; 3], std: vec![1.0] };
    let err = Model::new(plain.input, Some(three), plain.layers().cloned().collect()).unwrap_err();
    assert!(err.to_string().contains("one per channel (2)"), "{err}");
    assert!(model.with_classes(vec!["a".into()]).is_err(), "one name per output");
}
