use bach_runtime::offload;

#[offload(gpu = "")]
pub fn empty(n: u64) -> u64 {
    n
}

#[offload(gpu = "add-f64")]
pub fn dashed(n: u64) -> u64 {
    n
}

fn main() {}
