use bach_runtime::offload;

#[offload]
pub fn first<const N: usize>(a: [u64; N]) -> u64 {
    a[0]
}

fn main() {}
