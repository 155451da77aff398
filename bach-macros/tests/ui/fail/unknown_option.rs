use bach_runtime::offload;

#[offload(speed = 3)]
pub fn f(n: u64) -> u64 {
    n
}

fn main() {}
