//! Functions returning `Result<T, E>`: the stub returns `Lazy<T>`, the split
//! types apply to `T`, and an `Err` fails the evaluation with `Error::Call`.
#![deny(warnings)]

use bach_runtime::{evaluate, offload, Error, Lazy, NdArraySplit, SumSplit};
use ndarray::{array, Array1};

#[derive(Debug)]
pub struct Negative(f64);

impl std::fmt::Display for Negative {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "negative element {}", self.0)
    }
}

impl std::error::Error for Negative {}

mod library {
    use ndarray::Array1;

    pub fn checked_sqrt(a: &Array1<f64>) -> Result<Array1<f64>, super::Negative> {
        match a.iter().find(|&&x| x < 0.0) {
            Some(&x) => Err(super::Negative(x)),
            None => Ok(a.mapv(f64::sqrt)),
        }
    }
}

/// A wrapped function; the lazy value is the `Ok` type.
#[offload(split = NdArraySplit, wraps = library::checked_sqrt)]
pub fn checked_sqrt(a: &Array1<f64>) -> Result<Array1<f64>, Negative>;

/// The full path, a reduction of the `Ok` type, and a standard error type.
#[offload(split = NdArraySplit, ret = SumSplit)]
pub fn parse_sum(a: &Array1<f64>, text: String) -> std::result::Result<f64, std::num::ParseFloatError> {
    let offset: f64 = text.parse()?;
    Ok(a.sum() + offset)
}

/// Nothing to return but an error.
#[offload(split = NdArraySplit)]
pub fn check_positive(a: &Array1<f64>) -> Result<(), Negative> {
    a.iter().try_for_each(|&x| if x < 0.0 { Err(Negative(x)) } else { Ok(()) })
}

/// A generic error type.
#[offload(split = NdArraySplit)]
pub fn first_error<E: std::error::Error + Clone + Send + Sync + 'static>(
    a: &Array1<f64>,
    error: Option<E>,
) -> Result<Array1<f64>, E> {
    match error {
        Some(e) => Err(e),
        None => Ok(a.clone()),
    }
}

fn main() {
    let x = array![1.0, 4.0, 9.0];
    let root: Lazy<Array1<f64>> = checked_sqrt(&x);
    let total: Lazy<f64> = parse_sum(&root, "0.5".to_string());
    let checked: Lazy<()> = check_positive(&root);
    let (root, total, ()) = evaluate((root, total, checked)).unwrap();
    assert_eq!(root, array![1.0, 2.0, 3.0]);
    assert_eq!(total, 6.5);
    assert_eq!(checked_sqrt::cpu(&x).unwrap(), root);

    let err = evaluate(checked_sqrt(array![1.0, -4.0])).unwrap_err();
    assert!(matches!(&err, Error::Call { op: "checked_sqrt", source } if source.is::<Negative>()));
    let err = evaluate(parse_sum(&x, "x".to_string())).unwrap_err();
    assert_eq!(err.to_string(), "`parse_sum` failed: invalid float literal");
    let none: Option<std::fmt::Error> = None;
    assert_eq!(evaluate(first_error(&x, none)).unwrap(), x);
}
