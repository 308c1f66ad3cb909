//! Whether a run can work at all, checked before it allocates a network or creates a directory:
//! a batch the data cannot fill, or a network and batch larger than the machine's memory, would
//! otherwise abort the process deep inside training ("memory allocation failed").

use coppice_models::Size;

use crate::config::Config;
use crate::data::Data;

/// Bytes per value: coppice trains in f32.
const VALUE: u128 = 4;
/// Values per parameter in training: weights, gradients, and the optimizer's state (two for
/// Adam, one for SGD with momentum).
const TRAINING_COPIES: u128 = 4;
/// Values per activation in training: the output a layer keeps for the backward pass, its
/// gradient, and the kernels' scratch.
const ACTIVATION_COPIES: u128 = 3;

/// A problem in the config: the field, and what is wrong with it and how to fix it.
pub type Problem = (String, String);

/// The batch sizes against the data, and what training and evaluation would need against
/// `available` bytes of memory (unchecked when unknown).
pub fn check(config: &Config, size: Size, data: &Data, available: Option<u128>) -> Result<(), Problem> {
    let train = &config.train;
    if train.batch_size > data.train.len() {
        return Err((
            "train.batch_size".into(),
            format!(
                "{} is more than the {} training samples; fix: train.batch_size = {} or less, or more training data",
                train.batch_size,
                data.train.len(),
                data.train.len()
            ),
        ));
    }
    let Some(available) = available else { return Ok(()) };
    let model = size.parameters.saturating_mul(TRAINING_COPIES * VALUE);
    let per_sample = size.activations_per_sample.saturating_mul(ACTIVATION_COPIES * VALUE);
    if model > available {
        return Err((
            "model".into(),
            format!(
                "{} parameters need about {} with their gradients and optimizer state, and {} of memory are available; fix: smaller layers",
                size.parameters,
                bytes(model),
                bytes(available)
            ),
        ));
    }
    // Evaluation batches never hold more than their split.
    let largest_split = data.valid.len().max(data.test.len());
    let batches = [
        ("train.batch_size", train.batch_size, train.batch_size),
        ("train.eval_batch_size", train.eval_batch_size, train.eval_batch_size.min(largest_split)),
    ];
    for (field, asked, samples) in batches {
        let needed = model.saturating_add(per_sample.saturating_mul(samples as u128));
        if needed > available {
            let fits = (available - model) / per_sample.max(1);
            return Err((
                field.into(),
                format!(
                    "batches of {asked} need about {} of memory (the network {}, each sample {}), and {} are available; fix: at most {fits}",
                    bytes(needed),
                    bytes(model),
                    bytes(per_sample),
                    bytes(available)
                ),
            ));
        }
    }
    Ok(())
}

/// A saved network (`architecture.json`) against its weights file and the memory, before it is
/// built: an edited or foreign file with a huge layer would otherwise abort the process in the
/// allocator. burnpack stores every parameter as an f32, so the file holds at least 4 bytes per
/// parameter.
pub fn check_saved(size: Size, weights_bytes: u128, available: Option<u128>) -> Result<(), String> {
    let weights = size.parameters.saturating_mul(VALUE);
    if weights > weights_bytes {
        return Err(format!(
            "describes {} parameters ({}), more than the {} of model.bpk",
            size.parameters,
            bytes(weights),
            bytes(weights_bytes)
        ));
    }
    let Some(available) = available else { return Ok(()) };
    let needed = weights.saturating_add(size.activations_per_sample.saturating_mul(ACTIVATION_COPIES * VALUE));
    if needed > available {
        return Err(format!(
            "needs about {} for its weights and one sample's activations, and {} of memory are available",
            bytes(needed),
            bytes(available)
        ));
    }
    Ok(())
}

/// `bytes` for people: 12.6 TB, 20.1 GB, 512 MB.
fn bytes(bytes: u128) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", units[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_network_larger_than_its_weights_or_the_memory_is_refused() {
        let size = |parameters, activations_per_sample| Size { parameters, activations_per_sample };
        assert!(check_saved(size(100, 1000), 400, Some(1 << 20)).is_ok());
        let error = check_saved(size(2_000_000_000, 1000), 400, None).unwrap_err();
        assert!(error.contains("2000000000 parameters") && error.contains("400 B"), "{error}");
        let error = check_saved(size(100, u128::MAX / 2), 400, Some(1 << 30)).unwrap_err();
        assert!(error.contains("1.1 GB of memory are available"), "{error}");
    }

    #[test]
    fn byte_counts_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(20_100_000_000), "20.1 GB");
        assert_eq!(bytes(u128::MAX).split(' ').nth(1), Some("EB"));
    }
}
