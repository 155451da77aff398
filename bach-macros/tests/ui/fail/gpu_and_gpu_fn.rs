use bach_runtime::offload;

fn on_device() {}

#[offload(gpu = "twice", gpu_fn = on_device)]
pub fn twice(n: u64) -> u64 {
    2 * n
}

fn main() {}
