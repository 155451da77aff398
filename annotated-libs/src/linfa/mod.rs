//! linfa 0.8, annotated: fitted models are values in the task graph, fits
//! read their data whole, and transforms and predictions split their data
//! by rows with the model broadcast to every batch; DBSCAN's region queries
//! split by rows too.
//!
//! linfa itself is unchanged: each model here is a small adapter over the
//! linfa type (its builder and trait API as plain methods, input checks
//! that turn linfa's panics into [`error::LinfaError`] values), and each
//! method is annotated with `wraps = Type::method`. The extension traits
//! (`LazyPca`, ...) give lazy models method syntax.
//!
//! [`device`] has the same steps on a device (Gram matrices, the top
//! eigenpairs, the fits, the transforms and the nearest-neighbour vote over
//! device buffers), for hand-written GPU code and `gpu_fn`s.

pub mod clustering;
pub mod device;
pub mod error;
pub mod nn;
pub mod preprocessing;
pub mod reduction;
pub mod top_eigen;

/// Lets the linfa models (and the Gram matrices of row batches) move to
/// devices, so that stages of transforms and predictions can run there
/// (see [`device::gpu_fns`]). The lazy methods (`LazyPca::transform`, ...)
/// call it; call it yourself before using the annotated functions directly
/// (`pca_transform`, ...) on a device. Idempotent.
pub fn register_device_codecs() {
    device::gpu_fns::register_codecs();
}
