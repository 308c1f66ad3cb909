use std::fmt;
use std::str::FromStr;

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

/// The CPU backends compiled into every build. Flex is burn 0.22's pure-Rust CPU backend;
/// NdArray is kept for comparison although burn 0.22 deprecates it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    #[default]
    Flex,
    Ndarray,
}

pub const BACKEND_NAMES: &str = "flex, ndarray";

impl BackendName {
    pub fn device(self) -> Device {
        match self {
            BackendName::Flex => Device::flex(),
            #[allow(deprecated)]
            BackendName::Ndarray => Device::ndarray(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BackendName::Flex => "flex",
            BackendName::Ndarray => "ndarray",
        }
    }
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
            _ => Err(format!("unknown backend {name:?}; fix: use one of {BACKEND_NAMES}")),
        }
    }
}
