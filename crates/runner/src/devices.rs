//! `devices = [...]` / `--devices`: the devices of data-parallel training, as burn-train's
//! multi-device strategy runs it (see `coppice_train::DataParallel`).

use anyhow::{Result, anyhow};
use burn::prelude::Device;
use coppice_train::{DataParallel, OptimizerPlacement};
use serde::{Deserialize, Serialize};

use crate::backend::BackendName;

/// Where the optimizer runs with several devices (`parallel` in the config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParallelKind {
    /// On the first device, every gradient moved there: burn-train's `OptimMainDevice`.
    #[default]
    Main,
    /// Each parameter's update where its gradient is: burn-train's `OptimSharded`.
    Sharded,
}

/// `name` or `name:index`, e.g. `cuda:1`.
fn parse(spec: &str) -> Result<(BackendName, Option<usize>), String> {
    let (name, index) = match spec.split_once(':') {
        Some((name, index)) => {
            let index = index
                .parse::<usize>()
                .map_err(|_| format!("{spec:?}: the part after ':' must be a device number, e.g. cuda:1"))?;
            (name, Some(index))
        }
        None => (spec, None),
    };
    Ok((name.parse()?, index))
}

/// The config's `devices`: each `backend[:index]` on the run's `backend`, no more than a batch
/// of `batch_size` has images. Returns the field and the problem.
pub fn check(devices: &[String], backend: BackendName, batch_size: usize) -> Result<(), (String, String)> {
    for spec in devices {
        let (on, _) = parse(spec).map_err(|e| ("devices".to_string(), e))?;
        if on != backend {
            return Err((
                "devices".into(),
                format!(
                    "{spec:?} is not on the run's backend {backend}; fix: set backend = \"{on}\" (or --backend {on}) too"
                ),
            ));
        }
    }
    if devices.len() > batch_size {
        return Err((
            "devices".into(),
            format!(
                "{} devices share batches of {batch_size} images; fix: at least one image per device (raise train.batch_size)",
                devices.len()
            ),
        ));
    }
    Ok(())
}

/// The config's `devices` on its `backend`, opened: the main one (evaluation, the optimizer with
/// `parallel = "main"`), and the data-parallel setup when there are two or more.
pub fn open(
    devices: &[String],
    backend: BackendName,
    parallel: ParallelKind,
) -> Result<(Device, Option<DataParallel>)> {
    if devices.is_empty() {
        return Ok((backend.device()?, None));
    }
    let devices = devices
        .iter()
        .map(|spec| {
            let (backend, index) = parse(spec).map_err(|e| anyhow!("devices: {e}"))?;
            backend.device_at(index)
        })
        .collect::<Result<Vec<Device>>>()?;
    let main = devices[0].clone();
    if devices.len() == 1 {
        return Ok((main, None));
    }
    let optimizer = match parallel {
        ParallelKind::Main => OptimizerPlacement::Main,
        ParallelKind::Sharded => OptimizerPlacement::Sharded,
    };
    Ok((main, Some(DataParallel { devices, optimizer })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_with_and_without_a_number() {
        assert_eq!(parse("cuda:1"), Ok((BackendName::Cuda, Some(1))));
        assert_eq!(parse("flex"), Ok((BackendName::Flex, None)));
        assert!(parse("cuda:x").unwrap_err().contains("device number"));
        assert!(parse("tpu:0").unwrap_err().contains("unknown backend"));
    }
}
