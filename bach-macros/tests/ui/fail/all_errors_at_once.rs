use bach_runtime::offload;

// Every problem is reported, and the function is still emitted: its uses in
// `main` type-check against the original signature.
#[offload(split(c = Foo), speed = 1, gpu = "")]
pub async fn f<'a>(a: &'a [f64], (x, y): (u64, u64)) -> &'a f64 {
    let _ = (x, y);
    &a[0]
}

fn main() {
    let _ = f(&[1.0], (1, 2));
}
