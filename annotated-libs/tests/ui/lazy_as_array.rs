// Passing a lazy array where an ndarray array is needed, before evaluate.
use annotated_libs::ndarray::LazyArray;

fn print_first(a: &ndarray::Array1<f64>) {
    println!("{}", a[0]);
}

fn main() {
    let a = ndarray::Array1::<f64>::zeros(3);
    let la = LazyArray::from(&a).sqrt();
    print_first(&la);
}
