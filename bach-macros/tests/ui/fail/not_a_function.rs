use bach_runtime::offload;

#[offload]
pub struct Matrix;

fn main() {
    let _ = Matrix;
}
