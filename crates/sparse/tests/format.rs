//! Damaged or foreign files are errors that say what is wrong, never a panic.

mod common;

use std::collections::HashMap;

use common::every_kind;
use coppice_sparse::{Error, Model};
use safetensors::{Dtype, tensor::TensorView};

fn error_of(bytes: &[u8]) -> String {
    match Model::from_bytes(bytes) {
        Ok(_) => panic!("the damaged file loaded"),
        Err(e) => e.to_string(),
    }
}

/// The model's file with its tensors edited by `edit` and its metadata by `meta`.
fn rewritten(edit: impl Fn(&str, &mut Vec<u8>), meta: impl Fn(&mut HashMap<String, String>)) -> Vec<u8> {
    let bytes = every_kind(2, 0.2).to_bytes();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
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
