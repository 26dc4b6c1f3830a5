//! Device abstraction shared by every engine: CUDA when torch sees a GPU,
//! else the CPU; the sprint's compute dtype is f32 on the CPU and bf16 on
//! CUDA unless overridden (the precision test runs bf16 on the CPU).
//! Inference picks its own dtype ([`inference_kind`]): by default bf16 on
//! CUDA and f32 on the CPU, where `bf16` is an opt-in. In the worker one
//! [`crate::executor::EngineExecutor`] owns the resolved device.

use anyhow::{bail, Result};
use std::fmt;
use std::str::FromStr;
use tch::{Device, Kind};

/// What the user asked for (`--device cpu|cuda|cuda:N|auto`). `cuda` is
/// `cuda:0`; one worker process per GPU names its own (`cuda:1`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
    #[default]
    Auto,
}

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        Ok(match s.as_str() {
            "cpu" => DeviceChoice::Cpu,
            "cuda" | "gpu" => DeviceChoice::Cuda(0),
            "auto" => DeviceChoice::Auto,
            other => {
                let index = other
                    .strip_prefix("cuda:")
                    .or_else(|| other.strip_prefix("gpu:"))
                    .and_then(|i| i.parse::<usize>().ok());
                match index {
                    Some(i) => DeviceChoice::Cuda(i),
                    None => bail!(
                        "unknown device {other:?}: use cpu, cuda, cuda:N (N = 0, 1, …) or auto"
                    ),
                }
            }
        })
    }
}

/// Compute precision (`--precision f32|bf16|auto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    F32,
    Bf16,
    #[default]
    Auto,
}

impl FromStr for Precision {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "f32" | "float32" => Precision::F32,
            "bf16" | "bfloat16" => Precision::Bf16,
            "auto" => Precision::Auto,
            _ => bail!("unknown precision {s:?}: use f32, bf16 or auto"),
        })
    }
}

/// Whether this CPU has native bf16 dot-product instructions (x86
/// AVX512-BF16, which AMX CPUs also have), with which oneDNN runs bf16
/// matmuls ~2.5× faster than f32 (README, "Serving inference"); without them
/// torch emulates bf16 and it is slower than f32. `serve` says so at start.
pub fn cpu_has_native_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The dtype inference runs in on `device` for `precision`: `auto` is bf16
/// on CUDA and f32 on the CPU. On the CPU bf16 is opt-in even where it is
/// native: it serves ~1.8× faster at 8 concurrent requests here, but a
/// request's greedy output then depends on the batch it ran in (bf16's
/// rounding turns the batched kernels' different summation order into
/// different tokens), and f32 keeps "8 concurrent = one at a time".
pub fn inference_kind(device: Device, precision: Precision) -> Kind {
    match precision {
        Precision::F32 => Kind::Float,
        Precision::Bf16 => Kind::BFloat16,
        Precision::Auto if device.is_cuda() => Kind::BFloat16,
        Precision::Auto => Kind::Float,
    }
}

/// A resolved device and its compute dtype.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ComputeDevice {
    pub device: Device,
    pub kind: Kind,
}

impl ComputeDevice {
    /// Resolve the user's choice. `cuda` fails with a clear message when torch
    /// has no CUDA device.
    pub fn resolve(choice: DeviceChoice, precision: Precision) -> Result<Self> {
        let device = match choice {
            DeviceChoice::Cpu => Device::Cpu,
            DeviceChoice::Cuda(index) => {
                if !tch::Cuda::is_available() {
                    bail!("--device cuda:{index}: torch sees no CUDA device (is a CUDA build of torch installed?); use --device cpu or auto");
                }
                let count = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
                if index >= count {
                    bail!(
                        "--device cuda:{index}: torch sees {count} CUDA device(s), cuda:0 to cuda:{}; run one worker per GPU with its own --device cuda:N",
                        count.saturating_sub(1)
                    );
                }
                Device::Cuda(index)
            }
            DeviceChoice::Auto => {
                if tch::Cuda::is_available() {
                    Device::Cuda(0)
                } else {
                    Device::Cpu
                }
            }
        };
        let kind = match (precision, device) {
            (Precision::F32, _) => Kind::Float,
            (Precision::Bf16, _) => Kind::BFloat16,
            (Precision::Auto, Device::Cpu) => Kind::Float,
            (Precision::Auto, _) => Kind::BFloat16,
        };
        Ok(ComputeDevice { device, kind })
    }

    pub fn cpu_f32() -> Self {
        ComputeDevice {
            device: Device::Cpu,
            kind: Kind::Float,
        }
    }

    pub fn is_cuda(&self) -> bool {
        self.device.is_cuda()
    }
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = match self.device {
            Device::Cpu => "cpu".to_string(),
            Device::Cuda(i) => format!("cuda:{i}"),
            other => format!("{other:?}"),
        };
        let k = match self.kind {
            Kind::Float => "f32",
            Kind::BFloat16 => "bf16",
            Kind::Half => "f16",
            _ => "other",
        };
        write!(f, "{d}/{k}")
    }
}

/// Use all CPU cores for torch's intra-op pool (or `threads` when given).
pub fn configure_threads(threads: Option<usize>) -> usize {
    let n = threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    tch::set_num_threads(n as i32);
    n
}

/// Largest allocation glibc's heap will serve (`M_MMAP_THRESHOLD` is capped
/// at 32 MiB on 64-bit); see [`tune_allocator`].
pub const HEAP_ALLOC_LIMIT: usize = 32 << 20;

/// Keep libtorch's CPU tensors on the malloc heap instead of fresh `mmap`s.
///
/// Every forward pass allocates and frees the same large activation tensors.
/// glibc serves big blocks with `mmap` and returns them on free, so each pass
/// page-faults and zeroes tens of MB again (measured: ~500k minor faults and
/// ~15% system time per 8 s bench). Fixing the mmap threshold at its maximum
/// and never trimming the heap makes the allocations reuse warm memory
/// (~60k faults, ~2% system time, ~+30% nonces/s on the devnet preset).
/// Process-wide and idempotent; a no-op off glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| unsafe {
            // SAFETY: mallopt only changes allocator parameters.
            libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_ALLOC_LIMIT as libc::c_int);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX as libc::c_int);
            libc::mallopt(libc::M_TOP_PAD, (64 << 20) as libc::c_int);
        });
    }
}

#[cfg(test)]
mod choice_tests {
    use super::*;

    #[test]
    fn devices_parse_with_an_index() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!(
            "cuda".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(0)
        );
        assert_eq!(
            "cuda:3".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(3)
        );
        assert_eq!(
            "GPU:1".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(1)
        );
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        for bad in ["cuda:", "cuda:x", "cuda:-1", "tpu", ""] {
            let e = bad.parse::<DeviceChoice>().unwrap_err().to_string();
            assert!(e.contains("cuda:N"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_missing_gpu_is_a_clear_error() {
        if tch::Cuda::is_available() {
            let count = tch::Cuda::device_count() as usize;
            let e = ComputeDevice::resolve(DeviceChoice::Cuda(count), Precision::Auto)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("cuda:{count}")), "{e}");
        } else {
            let e = ComputeDevice::resolve(DeviceChoice::Cuda(1), Precision::Auto)
                .unwrap_err()
                .to_string();
            assert!(e.contains("no CUDA device"), "{e}");
        }
        assert_eq!(
            ComputeDevice::resolve(DeviceChoice::Cpu, Precision::Auto)
                .unwrap()
                .device,
            Device::Cpu
        );
    }
}
