use bach_runtime::offload;

#[offload(cost = -1.0)]
pub fn negative(n: u64) -> u64 {
    n
}

#[offload(cost = "fast")]
pub fn not_a_number(n: u64) -> u64 {
    n
}

fn main() {}
