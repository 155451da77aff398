use bach_runtime::offload;

#[offload]
pub fn f(a: Option<&u64>) -> u64 {
    a.copied().unwrap_or(0)
}

fn main() {}
