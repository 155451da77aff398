//! The `#[offload]` attribute of Bach, re-exported as `bach_runtime::offload`.
//!
//! See [`macro@offload`].

mod attr;
mod expand;
mod fallback;
mod signature;
mod spec;
mod valid;

/// Turns a CPU function into a lazy stub that records a call in Bach's task graph.
///
/// The annotated function `f` keeps its name, documentation and visibility, but
/// takes its arguments as `impl IntoArg<T>` (a value, a reference or a `Lazy<T>`),
/// takes `&mut T` parameters as `&mut Lazy<T>`, and returns a `Lazy<R>` instead of
/// `R`. Nothing runs until the value is evaluated: then Bach splits the arguments
/// with their *split types*, runs the function on batches (on the CPU, or on the GPU
/// where a kernel is given) and merges the pieces of the result.
///
/// The original function stays callable as `f::cpu`.
///
/// # Options
///
/// `#[offload(option, option, ...)]`, each option at most once:
///
/// | Option | Meaning |
/// |---|---|
/// | `split = Path` | The default split type of reference (`&T`, `&mut T`) parameters and of the return value. |
/// | `split(a = Path, b = Path)` | The split type of parameter `a`, of `b`; overrides every default. |
/// | `ret = Path` | The split type of the return value (of `T` for a function returning `Result<T, E>`). |
/// | `gpu = "kernel"` | The CUDA kernel family implementing the function (an identifier). |
/// | `gpu_source = path` | The CUDA source holding the `gpu` kernel: a path to a `const` or `static` of type `bach_runtime::KernelSource`; needs `gpu`. Defaults to `BACH_KERNELS` (see below). |
/// | `gpu_fn = path` | A Rust function implementing it on device values; exclusive with `gpu`. |
/// | `alloc` | An allocation function (`zeros`, `ones`, `full`): its first parameter is a size, split with `::bach_runtime::SizeSplit` by default; the runtime allocates each piece where it is first used. |
/// | `unsplittable` | The function cannot run on batches (a pipeline break): it receives whole values. |
/// | `wraps = path` | Annotates a function you do not own: the item is a bodyless declaration such as `pub fn add<T: Float>(a: &Array1<T>, b: &Array1<T>) -> Array1<T>;` and the CPU implementation is `path(a, b)`, the arguments forwarded in order. |
/// | `cost = 2.5` | The estimated CPU cost of the function, in nanoseconds per element on one core (a positive number literal). Lets placement decide between the CPU and a GPU without calibration; without it, the runtime measures the function with a short micro-benchmark the first time it is planned. |
///
/// A `gpu` kernel is compiled from a `bach_runtime::KernelSource` (a name and the
/// CUDA C text). `gpu_source = path` names it; without it, the stub uses the
/// identifier `BACH_KERNELS`, resolved where the function is, so a library that
/// ships one CUDA file declares it once per module:
///
/// ```ignore
/// pub const BACH_KERNELS: bach_runtime::KernelSource = bach_runtime::KernelSource {
///     name: "numpy.cu",
///     code: include_str!("../kernels/numpy.cu"),
/// };
/// ```
///
/// (or imports it with `use`). A function with `gpu = "..."` and no such constant in
/// scope fails to compile with ``cannot find value `BACH_KERNELS` in this scope``,
/// pointing at `gpu`. Functions without `gpu` need no kernel source.
///
/// Split types are paths to types implementing `bach_runtime::SplitType<T>`, used as
/// written and resolved where the function is. When no option names one:
///
/// - a reference parameter `&T` or `&mut T` takes `split = ...`, and without it is an error;
/// - a by-value parameter `n: T` takes `::bach_runtime::Broadcast` (every batch gets a clone),
///   except the first parameter of an `alloc` function, which takes `::bach_runtime::SizeSplit`;
/// - the return value takes `ret = ...`, else `split = ...`, else `::bach_runtime::Broadcast`;
///   a function returning nothing returns a `Lazy<()>`, split with `ret = ...` or
///   `::bach_runtime::Broadcast`.
///
/// # Fallible functions
///
/// A function that returns `Result<T, E>` (written with two type arguments;
/// `std::result::Result<T, E>` too) is fallible: its stub returns a `Lazy<T>`,
/// and `split = ...`/`ret = ...` are split types of `T`. `E` must be a
/// `std::error::Error + Send + Sync + 'static`. When the function returns `Err`
/// for any batch, `evaluate` returns `bach_runtime::Error::Call { op, source }`:
/// `op` names the function and `source` is its error, which downcasts to `E`
/// (`source.downcast_ref::<E>()`, or through `std::error::Error::source`).
/// Nothing of that evaluation is returned; the graph stays usable, and
/// evaluating the same handle again runs the function again.
///
/// The macro reads the return type's syntax only: a `Result` alias that hides
/// the error type (`io::Result<T>`, `fmt::Result`) is a compile error, so write
/// `Result<T, io::Error>`. A kernel cannot report the error, so `gpu` is a
/// compile error on a fallible function; a `gpu_fn` can: it returns
/// `Err(bach_runtime::Error::Call { .. })` itself, or launches with the call's
/// host stand-in (`DeviceCall::host`), whose `Err` is the CPU function's.
///
/// ```
/// use bach_runtime::{evaluate, offload, Error, NdArraySplit};
/// use ndarray::{array, Array1};
///
/// #[derive(Debug)]
/// pub struct Negative(f64);
/// impl std::fmt::Display for Negative {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "negative element {}", self.0)
///     }
/// }
/// impl std::error::Error for Negative {}
///
/// /// The square roots, or the first negative element.
/// #[offload(split = NdArraySplit)]
/// pub fn checked_sqrt(a: &Array1<f64>) -> Result<Array1<f64>, Negative> {
///     match a.iter().find(|&&x| x < 0.0) {
///         Some(&x) => Err(Negative(x)),
///         None => Ok(a.mapv(f64::sqrt)),
///     }
/// }
///
/// # fn main() {
/// assert_eq!(evaluate(checked_sqrt(array![4.0, 9.0])).unwrap(), array![2.0, 3.0]);
/// let err = evaluate(checked_sqrt(array![4.0, -9.0])).unwrap_err();
/// assert_eq!(err.to_string(), "`checked_sqrt` failed: negative element -9");
/// let Error::Call { op, source } = &err else { unreachable!() };
/// assert_eq!(*op, "checked_sqrt");
/// assert_eq!(source.downcast_ref::<Negative>().unwrap().0, -9.0);
/// # }
/// ```
///
/// # Methods
///
/// `#[offload]` annotates free functions. To offload a method of a type, such
/// as `Model::transform(&self, x: &Array1<f64>)` of a library one does not own,
/// declare a free function whose first parameter is the receiver and wrap the
/// method; the receiver is usually broadcast to every batch. For method syntax
/// on lazy values, implement an extension trait on `Lazy<'a, Model>` that calls
/// the stub:
///
/// ```
/// use bach_runtime::{evaluate, offload, Broadcast, IntoArg, Lazy, NdArraySplit};
/// use ndarray::{array, Array1};
///
/// #[derive(Clone)]
/// pub struct Model { weight: f64 }
///
/// impl Model {
///     pub fn transform(&self, x: &Array1<f64>) -> Array1<f64> {
///         x * self.weight
///     }
/// }
///
/// /// `Model::transform`, the model broadcast to every batch of `x`.
/// #[offload(split = NdArraySplit, split(this = Broadcast), wraps = Model::transform)]
/// pub fn transform(this: &Model, x: &Array1<f64>) -> Array1<f64>;
///
/// /// `model.transform(x)` on a lazy model.
/// pub trait LazyModel<'a> {
///     fn transform(&self, x: impl IntoArg<'a, Array1<f64>>) -> Lazy<'a, Array1<f64>>;
/// }
///
/// impl<'a> LazyModel<'a> for Lazy<'a, Model> {
///     fn transform(&self, x: impl IntoArg<'a, Array1<f64>>) -> Lazy<'a, Array1<f64>> {
///         transform(self, x) // the stub
///     }
/// }
///
/// # fn main() {
/// let model = Model { weight: 2.0 };
/// let x = array![1.0, 2.0];
/// assert_eq!(evaluate(transform(&model, &x)).unwrap(), array![2.0, 4.0]);
/// let lazy_model = Lazy::borrowed(&model); // or the result of a lazy `fit`
/// assert_eq!(evaluate(lazy_model.transform(&x)).unwrap(), array![2.0, 4.0]);
/// # }
/// ```
///
/// # Restrictions
///
/// The function must be a free function: not `async`, `const`, `unsafe` or
/// `extern`, without `self` (see [Methods](#methods)), variadics, lifetime or
/// const generic parameters, explicit lifetimes or `impl Trait` in its
/// parameter types. Parameters are plain identifiers; references appear only at
/// the top of a parameter type and refer to sized types (take `&Vec<T>` or
/// `&Array1<T>`, not `&[T]`). It returns an owned value, nothing, or
/// `Result<T, E>` of an owned value (see [Fallible functions](#fallible-functions)).
/// Type parameters usually need `Send + Sync + 'static` bounds, as values cross
/// threads and live in the task graph.
///
/// # Generated items
///
/// For `pub fn add(...)`: the stub `pub fn add`, the hidden CPU implementation
/// `__bach_cpu_add`, and `pub mod add` re-exporting it as `add::cpu`. A module or
/// type named `add` in the same scope would clash with the module, and the
/// function must be an item of a module, not of a function body (where
/// `add::cpu` could not reach it).
///
/// # Example
///
/// ```
/// use bach_runtime::{evaluate, offload, KernelSource, Lazy, NdArraySplit, SumSplit};
/// use ndarray::{array, Array1};
///
/// /// The CUDA source of the `gpu` kernels below, usually `include_str!` of a `.cu` file.
/// const BACH_KERNELS: KernelSource = KernelSource { name: "example.cu", code: "" };
///
/// /// Element-wise sum.
/// #[offload(split = NdArraySplit, gpu = "add")]
/// pub fn add(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
///     a + b
/// }
///
/// /// Multiplies by a scalar, broadcast to every batch.
/// #[offload(split = NdArraySplit)]
/// pub fn scale(a: &Array1<f64>, s: f64) -> Array1<f64> {
///     a * s
/// }
///
/// /// The sum of the elements: the batches' partial sums are added up.
/// #[offload(split = NdArraySplit, ret = SumSplit)]
/// pub fn sum(a: &Array1<f64>) -> f64 {
///     a.sum()
/// }
///
/// /// `a += b`, in place.
/// #[offload(split = NdArraySplit)]
/// pub fn add_assign(a: &mut Array1<f64>, b: &Array1<f64>) {
///     *a += b;
/// }
///
/// /// `ndarray`'s own `Array1::zeros`: the size is split, and so is the result.
/// #[offload(alloc, split = NdArraySplit, wraps = Array1::zeros)]
/// pub fn zeros(n: usize) -> Array1<f64>;
///
/// # fn main() {
/// let x = array![1.0, 2.0, 3.0];
/// let y = array![4.0, 5.0, 6.0];
/// let s = add(&x, &y);                  // recorded; nothing runs yet
/// let t = scale(&s, 2.0);               // a lazy value is an argument too
/// let total = sum(&t);
/// let mut acc: Lazy<Array1<f64>> = zeros(3);
/// add_assign(&mut acc, &t);             // `acc` now names the updated value
/// let (t, total, acc) = evaluate((t, total, acc)).unwrap();
/// assert_eq!(t, array![10.0, 14.0, 18.0]);
/// assert_eq!(total, 42.0);
/// assert_eq!(acc, t);
/// assert_eq!(add::cpu(&x, &y), array![5.0, 7.0, 9.0]); // the eager CPU version
/// # }
/// ```
#[proc_macro_attribute]
pub fn offload(
    attr: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    expand::offload(attr.into(), item.into()).into()
}
