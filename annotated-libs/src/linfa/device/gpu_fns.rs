//! The linfa annotations' device functions (`gpu_fn`): what the runtime calls
//! when it places a stage of Gram matrices, transforms or predictions on a
//! device, and the device codecs of the models they read.
//!
//! A fitted model goes to the device with its parameters: the runtime uploads
//! its codec's bytes once per stage (layouts below), and each batch's device
//! function copies the parts it needs into their own buffers on the device
//! (a few small device-to-device copies) and runs the kernels and matrix
//! products of [`super`] on them. The model's dimensions and class labels,
//! which size the launches, are read from its host value
//! ([`DeviceInput::host_value`]).
//!
//! | model | codec | bytes on the device |
//! |---|---|---|
//! | [`StandardScaler`] | upload only | means (`f` f64), scales (`f` f64) |
//! | [`Pca`] | upload only | mean (`f` f64), components (`k x f` f64) |
//! | [`TruncatedSvd`] | both ways | `k`, `f` (as f64), singular values (`k`), components (`k x f`) |
//! | [`KNeighborsClassifier`] | upload only | training points (`m x f` f64), class of each (`m` i32, padded to 8 bytes), the distinct labels (`c` u64, increasing) |
//! | [`Gram`] | both ways | rows (as f64), `X^T X` (`f x f`) |
//!
//! (linfa offers no constructor of its `Pca` or `LinearScaler` from their
//! parameters, so those models only go up; their fits stay on the CPU.)
//!
//! **Bad input.** The CPU models refuse NaN and infinities
//! (`LinfaError::NotFinite`) and data of another feature count. A device
//! function checks its rows on the device (`nonfinite_flag_f64`) and the
//! feature count from the widths; when either fails it copies its inputs to
//! the host and returns the CPU function's own error (`Error::Call`), so
//! every plan reports what the CPU reports.

use std::borrow::Cow;

use bach_runtime::{
    DType, Device, DeviceBuffer, DeviceCall, DeviceInput, DeviceOutput, DeviceValue, Error,
    KernelArg, Queue, UploadCodec,
};

use super::{
    f64_bytes, f64s, gram_on, i32_bytes, launch, transform_on, DeviceKnn, DeviceLinfaError,
    DeviceMatrix, DevicePca, DeviceStandardScaler, DeviceTruncatedSvd, MatrixView, Transform,
};
use crate::linfa::nn::KNeighborsClassifier;
use crate::linfa::preprocessing::StandardScaler;
use crate::linfa::reduction::{Gram, Pca, TruncatedSvd};

/// Registers the codecs of the linfa models (idempotent; the annotated
/// functions' stubs call it).
pub fn register_codecs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        bach_runtime::register_upload_codec::<ModelCodec, StandardScaler>();
        bach_runtime::register_upload_codec::<ModelCodec, Pca>();
        bach_runtime::register_upload_codec::<ModelCodec, KNeighborsClassifier>();
        bach_runtime::register_device_value::<TruncatedSvd>();
        bach_runtime::register_device_value::<Gram>();
    });
}

/// The upload codecs of the models linfa cannot rebuild from parameters.
pub struct ModelCodec;

impl UploadCodec<StandardScaler> for ModelCodec {
    const DTYPE: DType = DType::F64;
    fn to_device_bytes(s: &StandardScaler) -> Cow<'_, [u8]> {
        Cow::Owned(f64_bytes(
            &(s.means().iter().chain(s.scales()).copied()).collect::<Vec<_>>(),
        ))
    }
}

impl UploadCodec<Pca> for ModelCodec {
    const DTYPE: DType = DType::F64;
    fn to_device_bytes(p: &Pca) -> Cow<'_, [u8]> {
        let numbers = p.mean().iter().chain(p.components().iter()).copied();
        Cow::Owned(f64_bytes(&numbers.collect::<Vec<_>>()))
    }
}

impl UploadCodec<KNeighborsClassifier> for ModelCodec {
    const DTYPE: DType = DType::F64;
    fn to_device_bytes(m: &KNeighborsClassifier) -> Cow<'_, [u8]> {
        let points = m.points().as_standard_layout();
        let mut bytes = f64_bytes(points.as_slice().expect("standard layout"));
        bytes.extend(i32_bytes(&class_indices(m)));
        // Padding to 8 bytes, then the distinct labels.
        bytes.resize(bytes.len().next_multiple_of(8), 0);
        bytes.extend(m.classes().iter().flat_map(|&l| (l as u64).to_ne_bytes()));
        Cow::Owned(bytes)
    }
}

/// The class index of every training point (its label's rank among the
/// distinct labels, what the vote kernel counts), as the kernel reads it.
fn class_indices(m: &KNeighborsClassifier) -> Vec<i32> {
    m.class_of().iter().map(|&c| c as i32).collect()
}

impl DeviceValue for TruncatedSvd {
    const DTYPE: DType = DType::F64;
    fn to_device_bytes(&self) -> Cow<'_, [u8]> {
        let (k, f) = self.components().dim();
        let numbers = [k as f64, f as f64]
            .into_iter()
            .chain(self.singular_values().iter().copied())
            .chain(self.components().iter().copied());
        Cow::Owned(f64_bytes(&numbers.collect::<Vec<_>>()))
    }
    fn from_device_bytes(bytes: &[u8]) -> Self {
        let x = f64s(bytes);
        let (k, f) = (x[0] as usize, x[1] as usize);
        TruncatedSvd::from_parts(
            ndarray::Array2::from_shape_vec((k, f), x[2 + k..2 + k + k * f].to_vec())
                .expect("k x f components"),
            ndarray::Array1::from(x[2..2 + k].to_vec()),
        )
    }
}

impl DeviceValue for Gram {
    const DTYPE: DType = DType::F64;
    fn to_device_bytes(&self) -> Cow<'_, [u8]> {
        let xtx = self.xtx.as_standard_layout();
        let numbers = std::iter::once(self.rows as f64).chain(xtx.iter().copied());
        Cow::Owned(f64_bytes(&numbers.collect::<Vec<_>>()))
    }
    fn from_device_bytes(bytes: &[u8]) -> Self {
        let x = f64s(bytes);
        let f = ((x.len().saturating_sub(1)) as f64).sqrt().round() as usize;
        Gram {
            rows: x.first().map_or(0, |&r| r as usize),
            xtx: ndarray::Array2::from_shape_vec((f, f), x[1..].to_vec())
                .expect("a square Gram matrix"),
        }
    }
}

/// The error a device function reports: the CPU function's own, from host
/// copies of its inputs, when it has one (bad input); else the device's.
fn cpu_error_or(call: &DeviceCall<'_>, e: DeviceLinfaError) -> Error {
    let copies: bach_runtime::Result<Vec<Vec<u8>>> = (call.inputs.iter())
        .map(|i| {
            let mut bytes = vec![0u8; i.buf.len()];
            if !bytes.is_empty() {
                call.device.download(i.buf, &mut bytes)?;
            }
            Ok(bytes)
        })
        .collect();
    let copies = match copies {
        Ok(c) => c,
        Err(download) => return download,
    };
    let views: Vec<&[u8]> = copies.iter().map(Vec::as_slice).collect();
    match (call.host)(&views) {
        Err(cpu) => cpu,
        Ok(_) => match e {
            DeviceLinfaError::Device(d) => d,
            other => Error::Device(other.to_string()),
        },
    }
}

/// True when one of the rows' numbers is NaN or infinite (one kernel and a
/// 4-byte download).
fn any_nonfinite(dev: &dyn Device, x: MatrixView<'_>) -> bach_runtime::Result<bool> {
    let n = x.rows * x.cols;
    if n == 0 {
        return Ok(false);
    }
    let flag = dev.alloc(4)?;
    dev.upload(&0i32.to_ne_bytes(), &flag)?;
    let reference = |b: &[&[u8]]| -> bach_runtime::Result<Vec<Vec<u8>>> {
        let bad = f64s(x.bytes(b[0])).iter().any(|v| !v.is_finite());
        Ok(vec![(bad as i32).to_ne_bytes().to_vec()])
    };
    launch(
        dev,
        "nonfinite_flag_f64",
        n,
        vec![KernelArg::In(x.buffer), KernelArg::Out(&flag)],
        &reference,
    )?;
    let mut bytes = [0u8; 4];
    dev.download(&flag, &mut bytes)?;
    Ok(i32::from_ne_bytes(bytes) != 0)
}

/// The batch's rows of split argument `k` as a matrix view, once checked as
/// the CPU models check them: `features` columns (when the model says how
/// many) and every number finite. A refused batch is an error that
/// [`cpu_error_or`] replaces with the CPU function's own.
fn checked_rows<'b>(
    call: &DeviceCall<'b>,
    k: usize,
    features: Option<usize>,
) -> Result<MatrixView<'b>, DeviceLinfaError> {
    let input = &call.inputs[k];
    let x = MatrixView {
        buffer: input.buf,
        offset: 0,
        rows: input.buf.len() / (input.width.max(1) * 8),
        cols: input.width,
    };
    if features.is_some_and(|f| f != x.cols) || any_nonfinite(call.device, x)? {
        return Err(DeviceLinfaError::Device(Error::Device(
            "input refused".into(),
        )));
    }
    Ok(x)
}

/// The model passed whole as argument `k`, as its host value.
fn model<'b, T: 'static>(call: &DeviceCall<'b>, k: usize) -> bach_runtime::Result<&'b T> {
    call.inputs
        .get(k)
        .and_then(DeviceInput::host_value::<T>)
        .ok_or_else(|| {
            Error::Device(format!(
                "a device function of `{}` without its model on the host",
                std::any::type_name::<T>()
            ))
        })
}

/// `bytes` bytes of `buf` from byte `offset`, in a buffer of their own (on
/// the compute queue).
fn part(
    dev: &dyn Device,
    buf: &DeviceBuffer,
    offset: usize,
    bytes: usize,
) -> bach_runtime::Result<DeviceBuffer> {
    let out = dev.alloc(bytes.max(1))?;
    if bytes > 0 {
        dev.copy_on(Queue::Compute, buf, offset, &out, 0, bytes)?;
    }
    Ok(out)
}

/// A `rows x cols` part of `buf` from byte `offset`, as a matrix of its own.
fn matrix_part(
    dev: &dyn Device,
    buf: &DeviceBuffer,
    offset: usize,
    rows: usize,
    cols: usize,
) -> bach_runtime::Result<DeviceMatrix> {
    let m = DeviceMatrix::alloc(dev, rows, cols)?;
    if rows * cols > 0 {
        dev.copy_on(Queue::Compute, buf, offset, &m.buffer, 0, rows * cols * 8)?;
    }
    Ok(m)
}

/// The rows' check, then a transform by the model of argument 0 into a new
/// matrix (its width: the model's output columns).
fn transform_rows(
    call: &DeviceCall<'_>,
    t: Transform<'_>,
) -> Result<DeviceOutput, DeviceLinfaError> {
    let x = checked_rows(call, 1, Some(t.features()))?;
    let out = DeviceMatrix::alloc(call.device, x.rows, t.output_cols())?;
    transform_on(call.device, t, x, &out)?;
    let width = out.cols;
    Ok(DeviceOutput {
        buf: out.buffer,
        width,
    })
}

/// [`StandardScaler::transform`] on a device.
pub fn standard_scaler_transform(call: &DeviceCall<'_>) -> bach_runtime::Result<DeviceOutput> {
    let scaler = model::<StandardScaler>(call, 0)?;
    let f = scaler.means().len();
    let buf = call.inputs[0].buf;
    let on_device = DeviceStandardScaler {
        means: scaler.means().clone(),
        scales: scaler.scales().clone(),
        means_on: part(call.device, buf, 0, f * 8)?,
        scales_on: part(call.device, buf, f * 8, f * 8)?,
    };
    transform_rows(call, Transform::StandardScaler(&on_device)).map_err(|e| cpu_error_or(call, e))
}

/// [`Pca::transform`] on a device.
pub fn pca_transform(call: &DeviceCall<'_>) -> bach_runtime::Result<DeviceOutput> {
    let pca = model::<Pca>(call, 0)?;
    let (k, f) = pca.components().dim();
    let buf = call.inputs[0].buf;
    let on_device = DevicePca {
        mean: pca.mean().clone(),
        components: pca.components().clone(),
        singular_values: pca.singular_values().clone(),
        explained_variance_ratio: pca.explained_variance_ratio().clone(),
        mean_on: part(call.device, buf, 0, f * 8)?,
        components_on: matrix_part(call.device, buf, f * 8, k, f)?,
    };
    transform_rows(call, Transform::Pca(&on_device)).map_err(|e| cpu_error_or(call, e))
}

/// [`TruncatedSvd::transform`] on a device.
pub fn truncated_svd_transform(call: &DeviceCall<'_>) -> bach_runtime::Result<DeviceOutput> {
    let svd = model::<TruncatedSvd>(call, 0)?;
    let (k, f) = svd.components().dim();
    let on_device = DeviceTruncatedSvd {
        components: svd.components().clone(),
        singular_values: svd.singular_values().clone(),
        components_on: matrix_part(call.device, call.inputs[0].buf, (2 + k) * 8, k, f)?,
    };
    transform_rows(call, Transform::TruncatedSvd(&on_device)).map_err(|e| cpu_error_or(call, e))
}

/// [`Gram::of`] of a batch of rows on a device: its partial, rows then
/// `X^T X`, summed over batches on the host ([`GramSum`](crate::linfa::reduction::GramSum)).
pub fn gram(call: &DeviceCall<'_>) -> bach_runtime::Result<DeviceOutput> {
    let run = || -> Result<DeviceOutput, DeviceLinfaError> {
        let x = checked_rows(call, 0, None)?;
        let f = x.cols;
        let xtx = DeviceMatrix::alloc(call.device, f, f)?;
        gram_on(call.device, x, &xtx, false)?;
        let out = call.device.alloc(8 + f * f * 8)?;
        call.device.upload(&(x.rows as f64).to_ne_bytes(), &out)?;
        if f > 0 {
            call.device
                .copy_on(Queue::Compute, &xtx.buffer, 0, &out, 8, f * f * 8)?;
        }
        Ok(DeviceOutput { buf: out, width: f })
    };
    run().map_err(|e| cpu_error_or(call, e))
}

/// [`KNeighborsClassifier::predict`] on a device: the vote kernel gives each
/// row's class index, and `class_labels_u64` turns it into its label, with
/// the model's labels from its device copy.
pub fn knn_predict(call: &DeviceCall<'_>) -> bach_runtime::Result<DeviceOutput> {
    let knn = model::<KNeighborsClassifier>(call, 0)?;
    let run = || -> Result<DeviceOutput, DeviceLinfaError> {
        let (m, f) = knn.points().dim();
        let labels = knn.classes().to_vec();
        let buf = call.inputs[0].buf;
        let points = matrix_part(call.device, buf, 0, m, f)?;
        let class_of = part(call.device, buf, m * f * 8, m * 4)?;
        let labels_at = (m * f * 8 + m * 4).next_multiple_of(8);
        let labels_on = part(call.device, buf, labels_at, labels.len() * 8)?;
        let on_device = DeviceKnn {
            points,
            class_of,
            classes_host: class_indices(knn),
            classes: labels.clone(),
            k: knn.k(),
        };
        let x = checked_rows(call, 1, Some(f))?;
        let out = call.device.alloc(x.rows * 8)?;
        let Some(classes) = super::knn_classes_on(call.device, &on_device, x)? else {
            return Ok(DeviceOutput { buf: out, width: 1 });
        };
        let reference = |b: &[&[u8]]| -> bach_runtime::Result<Vec<Vec<u8>>> {
            let classes = super::i32s(&b[0][..x.rows * 4]);
            let table: Vec<u64> = (b[1].chunks_exact(8).take(labels.len()))
                .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
                .collect();
            let out: Vec<u8> = (classes.iter())
                .flat_map(|&c| table[c as usize].to_ne_bytes())
                .collect();
            Ok(vec![out])
        };
        launch(
            call.device,
            "class_labels_u64",
            x.rows,
            vec![
                KernelArg::In(&classes),
                KernelArg::In(&labels_on),
                KernelArg::Out(&out),
            ],
            &reference,
        )?;
        Ok(DeviceOutput { buf: out, width: 1 })
    };
    run().map_err(|e| cpu_error_or(call, e))
}
