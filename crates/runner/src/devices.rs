//! `devices = [...]` / `--devices`: the devices of data-parallel training, as burn-train's
//! multi-device strategy runs it (see `coppice_train::DataParallel`).

use anyhow::{Result, anyhow};
use burn::prelude::Device;
use coppice_train::{DataParallel, OptimizerPlacement};
use serde::{Deserialize, Serialize};

use crate::backend::BackendName;
use crate::config::Config;

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

/// The config's `devices`: each `backend[:index]` on the run's backend, no more than a batch
/// has images. Returns the field and the problem.
pub fn check(config: &Config) -> Result<(), (String, String)> {
    for spec in &config.devices {
        let (backend, _) = parse(spec).map_err(|e| ("devices".to_string(), e))?;
        if backend != config.backend {
            return Err((
                "devices".into(),
                format!(
                    "{spec:?} is not on the run's backend {}; fix: set backend = \"{backend}\" (or --backend {backend}) too",
                    config.backend
                ),
            ));
        }
    }
    if config.devices.len() > config.train.batch_size {
        return Err((
            "devices".into(),
            format!(
                "{} devices share batches of {} images; fix: at least one image per device (raise train.batch_size)",
                config.devices.len(),
                config.train.batch_size
            ),
        ));
    }
    Ok(())
}

/// The run's devices, opened: the main one (evaluation, the optimizer with `parallel =
/// "main"`), and the data-parallel setup when there are two or more.
pub fn open(config: &Config) -> Result<(Device, Option<DataParallel>)> {
    if config.devices.is_empty() {
        return Ok((config.backend.device()?, None));
    }
    let devices = config
        .devices
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
    let optimizer = match config.parallel {
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
