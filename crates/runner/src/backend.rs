use std::fmt;
use std::str::FromStr;

use anyhow::Result;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
use anyhow::anyhow;
use burn::prelude::Device;
use serde::{Deserialize, Serialize};

/// Every backend coppice knows. Flex (burn 0.22's pure-Rust CPU backend) and NdArray (kept for
/// comparison although burn 0.22 deprecates it) are in every build; wgpu and cuda only in builds
/// with the cargo features of the same names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    #[default]
    Flex,
    Ndarray,
    Wgpu,
    Cuda,
}

pub const BACKEND_NAMES: &str = "flex, ndarray, wgpu, cuda";

impl BackendName {
    /// The backend's device, opened: a GPU backend that is not compiled in, or whose device
    /// cannot be opened, is an error saying what to do, never a panic later in training.
    pub fn device(self) -> Result<Device> {
        self.device_at(None)
    }

    /// The backend's device number `index` (`cuda:1`), or its default device. The CPU backends
    /// have one device: an index there names another handle on it, a replica for data-parallel
    /// training on one machine.
    pub fn device_at(self, index: Option<usize>) -> Result<Device> {
        match self {
            BackendName::Flex => Ok(Device::flex()),
            #[allow(deprecated)]
            BackendName::Ndarray => Ok(Device::ndarray()),
            BackendName::Wgpu => wgpu_device(index),
            BackendName::Cuda => cuda_device(index.unwrap_or(0)),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BackendName::Flex => "flex",
            BackendName::Ndarray => "ndarray",
            BackendName::Wgpu => "wgpu",
            BackendName::Cuda => "cuda",
        }
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(_index: Option<usize>) -> Result<Device> {
    Err(not_compiled_in("wgpu"))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: usize) -> Result<Device> {
    Err(not_compiled_in("cuda"))
}

#[cfg(not(all(feature = "wgpu", feature = "cuda")))]
fn not_compiled_in(name: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "backend {name} is not compiled into this coppice; fix: build with `cargo build --release --features {name}` (or pick flex or ndarray)"
    )
}

/// wgpu picks its default adapter once per process (a discrete GPU first; Mesa's llvmpipe on a
/// machine without one), and `wgpu:N` the N-th discrete GPU; later calls share them.
#[cfg(feature = "wgpu")]
fn wgpu_device(index: Option<usize>) -> Result<Device> {
    use burn::tensor::DeviceKind;
    use std::sync::Mutex;
    static DEVICES: Mutex<Vec<(Option<usize>, Result<Device, String>)>> = Mutex::new(Vec::new());
    let mut devices = DEVICES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let opened = match devices.iter().find(|(i, _)| *i == index) {
        Some((_, opened)) => opened.clone(),
        None => {
            let options = Device::wgpu_options();
            let options = match index {
                Some(i) => options.device_kind(DeviceKind::DiscreteGpu(i)),
                None => options,
            };
            let opened = options.init().map_err(|e| e.to_string());
            devices.push((index, opened.clone()));
            opened
        }
    };
    opened.map_err(|e| {
            anyhow!(
                "backend wgpu: cannot open a device: {e}; fix: install a Vulkan driver (on Debian, `apt-get install mesa-vulkan-drivers libvulkan1` gives the CPU driver llvmpipe), check CUBECL_WGPU_DEFAULT_DEVICE, or pick flex"
            )
        })
}

/// burn opens CUDA lazily and panics when it cannot (no driver, no GPU): open it here with a
/// first tensor, and turn such a panic into an error.
#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Result<Device> {
    use burn::prelude::Tensor;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| {
        let device = Device::cuda(index);
        let probe = Tensor::<1>::ones([1], &device).into_data();
        drop(probe);
        device
    });
    std::panic::set_hook(hook);
    opened.map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        anyhow!(
            "backend cuda: cannot open device {index}: {}; fix: check the NVIDIA driver (`nvidia-smi`) and CUDA_VISIBLE_DEVICES, or pick flex",
            message.replace('\n', " ")
        )
    })
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendName {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name.to_ascii_lowercase().as_str() {
            "flex" => Ok(BackendName::Flex),
            "ndarray" => Ok(BackendName::Ndarray),
            "wgpu" => Ok(BackendName::Wgpu),
            "cuda" => Ok(BackendName::Cuda),
            _ => Err(format!("unknown backend {name:?}; fix: use one of {BACKEND_NAMES}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_list_the_choices() {
        for name in ["flex", "ndarray", "wgpu", "cuda"] {
            assert_eq!(name.parse::<BackendName>().unwrap().as_str(), name);
        }
        let err = "tpu".parse::<BackendName>().unwrap_err();
        assert!(err.contains("tpu") && err.contains(BACKEND_NAMES), "{err}");
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn a_backend_not_compiled_in_says_which_feature_to_build_with() {
        let err = BackendName::Wgpu.device().unwrap_err().to_string();
        assert!(err.contains("not compiled") && err.contains("--features wgpu"), "{err}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_not_compiled_in_says_which_feature_to_build_with() {
        let err = BackendName::Cuda.device().unwrap_err().to_string();
        assert!(err.contains("not compiled") && err.contains("--features cuda"), "{err}");
    }
}
