use bach_runtime::offload;

#[offload]
pub fn f(n: u64) -> Option<&'static mut u64> {
    let _ = n;
    None
}

fn main() {}
