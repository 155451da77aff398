use bach_runtime::offload;

#[offload]
pub async fn f(n: u64) -> u64 {
    n
}

fn main() {}
