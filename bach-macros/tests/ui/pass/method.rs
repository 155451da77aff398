//! Methods of a type one does not own: a free function takes the receiver as
//! its first parameter and wraps `Type::method`; an extension trait on
//! `Lazy<'a, Type>` gives lazy values the method syntax.
#![deny(warnings)]

use bach_runtime::{evaluate, offload, Broadcast, IntoArg, Lazy, NdArraySplit};
use ndarray::{array, Array1};

mod library {
    use ndarray::Array1;

    #[derive(Clone)]
    pub struct Model {
        pub weight: f64,
    }

    impl Model {
        pub fn predict(&self, x: &Array1<f64>) -> Array1<f64> {
            x * self.weight
        }
    }
}

use library::Model;

/// `Model::predict`, the model broadcast to every batch of `x`.
#[offload(split = NdArraySplit, split(this = Broadcast), wraps = Model::predict)]
pub fn predict(this: &Model, x: &Array1<f64>) -> Array1<f64>;

/// `model.predict(x)` on a lazy model.
pub trait LazyModel<'a> {
    /// See [`predict`].
    fn predict(&self, x: impl IntoArg<'a, Array1<f64>>) -> Lazy<'a, Array1<f64>>;
}

impl<'a> LazyModel<'a> for Lazy<'a, Model> {
    fn predict(&self, x: impl IntoArg<'a, Array1<f64>>) -> Lazy<'a, Array1<f64>> {
        predict(self, x)
    }
}

fn main() {
    let model = Model { weight: 2.0 };
    let x = array![1.0, 2.0];
    assert_eq!(evaluate(predict(&model, &x)).unwrap(), array![2.0, 4.0]);
    let lazy_model = Lazy::borrowed(&model);
    assert_eq!(evaluate(lazy_model.predict(&x)).unwrap(), array![2.0, 4.0]);
}
