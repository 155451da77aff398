// Reading an element of a lazy array before evaluating it.
use annotated_libs::ndarray::LazyArray;

fn main() {
    let a = ndarray::Array1::<f64>::zeros(3);
    let la = LazyArray::from(&a).sqrt();
    let _first: f64 = la[0];
}
