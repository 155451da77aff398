//! Evaluation settings.

/// How a graph is evaluated. Read from the environment by [`Config::from_env`];
/// every field can be set in code with [`Graph::set_config`](crate::Graph::set_config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Elements per batch on the CPU (`BACH_BATCH_SIZE`). `None`: derived
    /// from the cache size and the number of values a stage keeps live.
    pub batch_size: Option<usize>,
    /// Worker threads (`BACH_THREADS`). `None`: rayon's global pool.
    pub threads: Option<usize>,
    /// Bytes of cache a batch should fit in (`BACH_CACHE_BYTES`; default: the
    /// per-core L2 size read from sysfs, else 1 MiB).
    pub cache_bytes: usize,
    /// Where stages may run (`BACH_DEVICE=auto|cpu|gpu`).
    pub device: DevicePolicy,
    /// Device memory Bach may use, in bytes (`BACH_GPU_MEMORY`, with an optional
    /// K/M/G suffix). Lets a large GPU behave like a small one. `None`: what the
    /// device reports free.
    pub device_memory: Option<usize>,
}

/// Where stages may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePolicy {
    /// On a GPU when one is available and the stage can run there; else the CPU.
    #[default]
    Auto,
    /// Always on the CPU.
    Cpu,
    /// On the device (`BACH_DEVICE=gpu`); evaluation fails when no device is
    /// available, and a device error is an error. Stages that no kernel
    /// implements still run on the CPU.
    Device,
}

impl std::str::FromStr for DevicePolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(DevicePolicy::Auto),
            "cpu" => Ok(DevicePolicy::Cpu),
            "gpu" | "cuda" | "device" => Ok(DevicePolicy::Device),
            other => Err(format!(
                "unknown device policy `{other}`: expected auto, cpu or gpu"
            )),
        }
    }
}

/// Parses a byte count with an optional K, M or G suffix (powers of 1024).
pub fn parse_bytes(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 1usize << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<usize>().ok()?.checked_mul(mult)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            batch_size: None,
            threads: None,
            cache_bytes: l2_cache_bytes().unwrap_or(1 << 20),
            device: DevicePolicy::Auto,
            device_memory: None,
        }
    }
}

fn env_usize(name: &str) -> Option<usize> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            tracing::warn!("ignoring {name}={v:?}: expected a positive integer");
            None
        }
    }
}

fn l2_cache_bytes() -> Option<usize> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index2/size").ok()?;
    let s = s.trim();
    let (num, mult) = match s.strip_suffix('K') {
        Some(n) => (n, 1024),
        None => match s.strip_suffix('M') {
            Some(n) => (n, 1 << 20),
            None => (s, 1),
        },
    };
    num.parse::<usize>().ok().map(|n| n * mult)
}

impl Config {
    /// Defaults overridden by `BACH_BATCH_SIZE`, `BACH_THREADS`, `BACH_CACHE_BYTES`,
    /// `BACH_DEVICE` and `BACH_GPU_MEMORY`.
    pub fn from_env() -> Config {
        let mut c = Config {
            batch_size: env_usize("BACH_BATCH_SIZE"),
            threads: env_usize("BACH_THREADS"),
            ..Config::default()
        };
        if let Some(b) = env_usize("BACH_CACHE_BYTES") {
            c.cache_bytes = b;
        }
        if let Ok(v) = std::env::var("BACH_DEVICE") {
            match v.parse() {
                Ok(p) => c.device = p,
                Err(e) => tracing::warn!("ignoring BACH_DEVICE: {e}"),
            }
        }
        if let Ok(v) = std::env::var("BACH_GPU_MEMORY") {
            c.device_memory = parse_bytes(&v);
            if c.device_memory.is_none() {
                tracing::warn!("ignoring BACH_GPU_MEMORY={v:?}: expected bytes, e.g. 2G");
            }
        }
        c
    }

    /// The CPU batch size for a stage that keeps about `bytes_per_element`
    /// bytes live per element, each element `numbers_per_element` numbers wide
    /// (a matrix's row).
    pub(crate) fn cpu_batch(&self, bytes_per_element: usize, numbers_per_element: usize) -> usize {
        // At least 1024 numbers (not elements) per batch, so that the per-batch
        // overhead stays small; at most 2^16 elements.
        let min = (1024 / numbers_per_element.max(1)).max(1);
        self.batch_size
            .unwrap_or_else(|| (self.cache_bytes / bytes_per_element.max(1)).clamp(min, 1 << 16))
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_and_policies_parse() {
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes("64m"), Some(64 << 20));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!("GPU".parse::<DevicePolicy>(), Ok(DevicePolicy::Device));
        assert!("tpu".parse::<DevicePolicy>().is_err());
    }
}
