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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            batch_size: None,
            threads: None,
            cache_bytes: l2_cache_bytes().unwrap_or(1 << 20),
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
    /// Defaults overridden by `BACH_BATCH_SIZE`, `BACH_THREADS` and `BACH_CACHE_BYTES`.
    pub fn from_env() -> Config {
        let mut c = Config::default();
        c.batch_size = env_usize("BACH_BATCH_SIZE");
        c.threads = env_usize("BACH_THREADS");
        if let Some(b) = env_usize("BACH_CACHE_BYTES") {
            c.cache_bytes = b;
        }
        c
    }

    /// The CPU batch size for a stage that keeps about `bytes_per_element`
    /// bytes live per element.
    pub(crate) fn cpu_batch(&self, bytes_per_element: usize) -> usize {
        self.batch_size
            .unwrap_or_else(|| (self.cache_bytes / bytes_per_element.max(1)).clamp(1024, 1 << 16))
    }
}
