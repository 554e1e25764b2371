//! The device a command computes on, named as ultralytics names it (`--device cpu`, `0`,
//! `cuda:0`). The CPU runs the kernels of this folder; a CUDA GPU runs candle's CUDA
//! backend, through the same ops (see [`super::portable`]).

use candle_core::Device;

/// Why `--device` names no device this build can open.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device {0:?} is unknown: give cpu, a GPU index such as 0, or cuda:0")]
    Unknown(String),
    #[error("device {0:?}: several GPUs at once are not supported; give one, e.g. --device 0")]
    Several(String),
    #[error("device {0:?}: Apple GPUs are not supported; use --device cpu or a CUDA GPU")]
    Mps(String),
    #[error("device {0:?} is a GPU, but this actyolo was built without CUDA; build it with `cargo build --release --features cuda` (README, section GPU), or use --device cpu")]
    NotBuilt(String),
    #[error("device {spec:?}: CUDA GPU {ordinal} could not be opened; check `nvidia-smi` and that the CUDA 13 libraries are on LD_LIBRARY_PATH, or use --device cpu")]
    Open {
        spec: String,
        ordinal: usize,
        #[source]
        source: candle_core::Error,
    },
}

/// What `--device` asks for, before any device is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    /// Parses ultralytics' spellings: `cpu`, `0`, `cuda`, `cuda:0` (case and spaces
    /// ignored); `0,1` and `mps` are refused with the reason.
    pub fn parse(spec: &str) -> Result<DeviceSpec, DeviceError> {
        let s = spec.trim().to_ascii_lowercase();
        if s.is_empty() || s == "cpu" {
            return Ok(DeviceSpec::Cpu);
        }
        if s == "mps" {
            return Err(DeviceError::Mps(spec.into()));
        }
        if s.contains(',') {
            return Err(DeviceError::Several(spec.into()));
        }
        let index = match s.strip_prefix("cuda") {
            Some("") => "0",
            Some(rest) => rest
                .strip_prefix(':')
                .ok_or_else(|| DeviceError::Unknown(spec.into()))?,
            None => s.as_str(),
        };
        index
            .parse::<usize>()
            .map(DeviceSpec::Cuda)
            .map_err(|_| DeviceError::Unknown(spec.into()))
    }

    /// Opens the device: the CPU always; a GPU only in a CUDA build.
    pub fn open(self, spec: &str) -> Result<Device, DeviceError> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(_) if !candle_core::utils::cuda_is_available() => {
                Err(DeviceError::NotBuilt(spec.into()))
            }
            DeviceSpec::Cuda(ordinal) => {
                Device::new_cuda(ordinal).map_err(|source| DeviceError::Open {
                    spec: spec.into(),
                    ordinal,
                    source,
                })
            }
        }
    }
}

/// `--device` parsed and opened.
pub fn select(spec: &str) -> Result<Device, DeviceError> {
    DeviceSpec::parse(spec)?.open(spec)
}

/// How a device is named in logs and reports: `cpu` or `cuda:0`.
pub fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ultralytics_spellings() {
        for (spec, want) in [
            ("cpu", DeviceSpec::Cpu),
            ("CPU", DeviceSpec::Cpu),
            ("", DeviceSpec::Cpu),
            ("0", DeviceSpec::Cuda(0)),
            ("1", DeviceSpec::Cuda(1)),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:0", DeviceSpec::Cuda(0)),
            (" cuda:2 ", DeviceSpec::Cuda(2)),
        ] {
            assert_eq!(DeviceSpec::parse(spec).unwrap(), want, "{spec:?}");
        }
        assert!(matches!(
            DeviceSpec::parse("0,1"),
            Err(DeviceError::Several(_))
        ));
        assert!(matches!(DeviceSpec::parse("mps"), Err(DeviceError::Mps(_))));
        for bad in ["gpu", "cuda0", "cuda:x", "-1"] {
            assert!(
                matches!(DeviceSpec::parse(bad), Err(DeviceError::Unknown(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_gpu_in_a_build_without_cuda_says_how_to_build() {
        if candle_core::utils::cuda_is_available() {
            return;
        }
        let err = select("0").unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
        assert_eq!(name(&select("cpu").unwrap()), "cpu");
    }
}
