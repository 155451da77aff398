use annotated_libs::workloads::bach;
use ndarray::Array1;
fn main() {
    let x: Vec<Array1<f64>> = (0..5)
        .map(|i| Array1::from_elem(16, 1.0 + i as f64))
        .collect();
    let n: usize = std::env::args()
        .nth(1)
        .map_or(20000, |s| s.parse().unwrap());
    let t = std::time::Instant::now();
    for _ in 0..n {
        let (call, put) = bach::blackscholes(&x[0], &x[1], &x[2], &x[3], &x[4]);
        std::hint::black_box(bach_runtime::evaluate((call, put)).unwrap());
    }
    eprintln!("{:.2} us/eval", t.elapsed().as_secs_f64() * 1e6 / n as f64);
}
