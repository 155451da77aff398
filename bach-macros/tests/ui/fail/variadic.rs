use bach_runtime::offload;

#[offload]
pub unsafe extern "C" fn f(n: u64, _: ...) -> u64 {
    n
}

fn main() {}
