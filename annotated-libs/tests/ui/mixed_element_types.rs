// Adding a lazy f32 array to a lazy f64 array: the element types must agree.
use annotated_libs::ndarray::LazyArray;

fn main() {
    let a = ndarray::Array1::<f32>::zeros(3);
    let b = ndarray::Array1::<f64>::zeros(3);
    let (la, lb) = (LazyArray::from(&a), LazyArray::from(&b));
    let _ = &la + &lb;
}
