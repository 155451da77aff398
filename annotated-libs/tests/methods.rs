//! Offloading methods of a type one does not own (a fitted model's
//! `transform`, a series' `sum`): a free function takes the receiver as its
//! first parameter and `wraps = Type::method`; an extension trait on
//! `Lazy<'a, Type>` gives lazy values the method syntax.

use bach_runtime::{offload, Broadcast, Config, DevicePolicy, Graph, IntoArg, Lazy, NdArraySplit};
use ndarray::{array, Array1};

mod common;
use common::{bits, uniform};

/// A library that knows nothing of Bach: a model fitted on data, then
/// applied to other data.
mod library {
    use ndarray::Array1;

    /// Standardises values with the mean and deviation of the data it was fitted on.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Scaler {
        pub mean: f64,
        pub deviation: f64,
    }

    /// Fitting refused: too few values to have a deviation.
    #[derive(Debug, Clone, PartialEq)]
    pub struct TooFewValues(pub usize);

    impl std::fmt::Display for TooFewValues {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{} values cannot be standardised", self.0)
        }
    }

    impl std::error::Error for TooFewValues {}

    impl Scaler {
        pub fn fit(x: &Array1<f64>) -> Result<Scaler, TooFewValues> {
            if x.len() < 2 {
                return Err(TooFewValues(x.len()));
            }
            let mean = x.mean().expect("not empty");
            Ok(Scaler {
                mean,
                deviation: x.std(1.0),
            })
        }

        pub fn transform(&self, x: &Array1<f64>) -> Array1<f64> {
            x.mapv(|v| (v - self.mean) / self.deviation)
        }
    }
}

use library::{Scaler, TooFewValues};

/// `Scaler::fit`, an associated function: it reads the whole array.
#[offload(split(x = Broadcast), wraps = Scaler::fit)]
pub fn fit(x: &Array1<f64>) -> Result<Scaler, TooFewValues>;

/// `Scaler::transform`, a `&self` method: the receiver is the first
/// parameter, broadcast to every batch of `x`.
#[offload(split = NdArraySplit, split(this = Broadcast), wraps = Scaler::transform)]
pub fn transform(this: &Scaler, x: &Array1<f64>) -> Array1<f64>;

/// Method syntax on lazy models: `model.transform(&x)`.
pub trait LazyScaler<'a> {
    /// [`transform`] with this model.
    fn transform(&self, x: impl IntoArg<'a, Array1<f64>>) -> Lazy<'a, Array1<f64>>;
}

impl<'a> LazyScaler<'a> for Lazy<'a, Scaler> {
    fn transform(&self, x: impl IntoArg<'a, Array1<f64>>) -> Lazy<'a, Array1<f64>> {
        // The free function: a method is not in scope by its bare name.
        transform(self, x)
    }
}

fn graph() -> Graph {
    Graph::with_config(Config {
        device: DevicePolicy::Cpu,
        batch_size: Some(1000),
        ..Config::default()
    })
}

#[test]
fn a_method_wrapped_with_the_receiver_first_gives_the_eager_result() {
    let g = graph();
    let model = Scaler {
        mean: 2.0,
        deviation: 0.5,
    };
    let x = uniform(10_007, 0.0, 4.0, 1);
    let r = g.enter(|| g.evaluate(transform(&model, &x))).unwrap();
    assert_eq!(bits(&r), bits(&model.transform(&x)));
    assert_eq!(g.last_run().unwrap().stages[0].batch_size, Some(1000));
}

#[test]
fn a_lazy_model_has_the_method_through_an_extension_trait() {
    let g = graph();
    let train = uniform(5000, -1.0, 3.0, 2);
    let x = uniform(10_007, -1.0, 3.0, 3);
    // Fitted lazily, then applied: one evaluation.
    let r = g.enter(|| g.evaluate(fit(&train).transform(&x))).unwrap();
    let eager = Scaler::fit(&train).unwrap().transform(&x);
    assert_eq!(bits(&r), bits(&eager));
    // A model the caller already has, borrowed into the graph.
    let model = Scaler::fit(&train).unwrap();
    let r = g
        .enter(|| g.evaluate(Lazy::borrowed(&model).transform(&x)))
        .unwrap();
    assert_eq!(bits(&r), bits(&eager));
}

#[test]
fn a_failing_fit_fails_the_transform_that_reads_it() {
    let g = graph();
    let x = uniform(100, 0.0, 1.0, 4);
    let one = array![1.0];
    let err = g.enter(|| g.evaluate(fit(&one).transform(&x))).unwrap_err();
    let bach_runtime::Error::Call { op, source } = &err else {
        panic!("expected Error::Call, got {err:?}");
    };
    assert_eq!(*op, "fit");
    assert_eq!(
        source.downcast_ref::<TooFewValues>(),
        Some(&TooFewValues(1))
    );
}
