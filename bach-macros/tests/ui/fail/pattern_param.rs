use bach_runtime::offload;

#[offload]
pub fn sum((a, b): (u64, u64)) -> u64 {
    a + b
}

fn main() {}
