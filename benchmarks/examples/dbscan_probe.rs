use annotated_libs::linfa::clustering::{self as cl, eager, DbscanParams};
use annotated_libs::ndarray::LazyArray;
use annotated_libs::workloads::{ndarray_bach, ndarray_cpu};
use std::time::Instant;
fn main() {
    let s: u32 = std::env::args().nth(1).unwrap().parse().unwrap();
    let which = std::env::args().nth(2).unwrap();
    let n = 1usize << s;
    let (x, _) = benchmarks::blobs::make_blobs(n, 256, 32, 1.0, (-2.0, 2.0), 42);
    let p = DbscanParams::new(16.0, ((n as f64 / 32.0) * 0.05).max(2.0).ceil() as usize).unwrap();
    if which == "parts" {
        probe_parts(&x, p);
        return;
    }
    for _ in 0..2 {
        let t = Instant::now();
        let labels = if which == "cpu" {
            let mut z = x.clone();
            ndarray_cpu::standardize(&mut z);
            let t1 = Instant::now();
            let l = eager::dbscan(&z, p).unwrap();
            eprintln!("  dbscan {:?}", t1.elapsed());
            l
        } else if which == "linear" {
            let mut z = x.clone();
            ndarray_cpu::standardize(&mut z);
            eager::dbscan_linear(&z, p).unwrap()
        } else {
            bach_runtime::evaluate({
                let mut l = LazyArray::from(&x);
                ndarray_bach::standardize(&mut l);
                cl::dbscan(&l, p)
            })
            .unwrap()
        };
        let clusters = labels.iter().max().unwrap() + 1;
        let noise = labels.iter().filter(|&&l| l == -1).count();
        println!(
            "{which} 2^{s} {:?} clusters={clusters} noise={noise}",
            t.elapsed()
        );
    }
}
#[allow(dead_code)]
fn probe_parts(x: &ndarray::Array2<f64>, p: DbscanParams) {
    let mut z = x.clone();
    ndarray_cpu::standardize(&mut z);
    let t = Instant::now();
    let nb = cl::upper_eps_neighbourhoods(&z, 0, &z, p).unwrap();
    eprintln!(
        "region queries (1 thread) {:?}, pairs {}",
        t.elapsed(),
        nb.pairs()
    );
    let t = Instant::now();
    let prod = z.dot(&z.t());
    eprintln!("gemm alone {:?} {}", t.elapsed(), prod[(0, 0)]);
    let t = Instant::now();
    let _ = cl::dbscan_labels::cpu(&z, &nb, p);
    eprintln!("linfa expansion {:?}", t.elapsed());
}
