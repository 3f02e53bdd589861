//! Device selection: `auto`, `cpu` or `cuda`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Where a model runs, as asked for by a user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The first CUDA device when libtorch sees one, the CPU otherwise.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The first CUDA device; an error when there is none.
    Cuda,
}

impl Device {
    /// Resolves to a libtorch device.
    ///
    /// Fails with [`ModelError::CudaUnavailable`] when `Cuda` is asked for
    /// and libtorch sees no GPU.
    pub fn resolve(self) -> Result<tch::Device> {
        match self {
            Device::Cpu => Ok(tch::Device::Cpu),
            Device::Auto => Ok(tch::Device::cuda_if_available()),
            Device::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            Device::Cuda => Err(ModelError::CudaUnavailable),
        }
    }

    /// The name this device parses from.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Auto => "auto",
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Device {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            _ => Err(ModelError::UnknownDevice(s.to_owned())),
        }
    }
}

/// A short human name of a resolved libtorch device (`cpu`, `cuda:0`).
pub fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cpu => "cpu".to_owned(),
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

/// Sets the number of CPU threads libtorch uses for intra-op parallelism.
pub fn set_cpu_threads(n: i32) {
    tch::set_num_threads(n.max(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("auto".parse::<Device>().unwrap(), Device::Auto);
        assert_eq!("CPU".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda);
        let err = "tpu".parse::<Device>().unwrap_err();
        assert!(err.to_string().contains("auto, cpu or cuda"));
        assert_eq!(Device::Cpu.resolve().unwrap(), tch::Device::Cpu);
        if !tch::Cuda::is_available() {
            let err = Device::Cuda.resolve().unwrap_err();
            assert!(err.to_string().contains("--device cpu"));
            assert_eq!(Device::Auto.resolve().unwrap(), tch::Device::Cpu);
        }
    }
}
