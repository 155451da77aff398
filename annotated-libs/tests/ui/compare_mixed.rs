// Comparing a lazy f64 array with a lazy f32 array.
use annotated_libs::ndarray::LazyArray;

fn main() {
    let a = ndarray::Array1::<f64>::zeros(3);
    let b = ndarray::Array1::<f32>::zeros(3);
    let (la, lb) = (LazyArray::from(&a), LazyArray::from(&b));
    let _ = la.greater(&lb);
}
