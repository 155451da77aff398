use bach_runtime::offload;

#[offload]
pub const fn f(n: u64) -> u64 {
    n
}

fn main() {}
