//! How values cross between host and device: the element types a kernel
//! understands and the byte views of the host values that carry them.

use std::any::{Any, TypeId};

use ndarray::{Array, Array1, Array2, Dimension};

use crate::value::Piece;

/// Element types of device arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `bool`, one byte (0 or 1).
    Bool,
    /// `i32`: scalar parameters only (`powi`'s exponent).
    I32,
    /// `u64` (and `usize` on 64-bit hosts): labels and indices.
    U64,
}

impl DType {
    /// Kernel-name suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::Bool => "bool",
            DType::I32 => "i32",
            DType::U64 => "u64",
        }
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
            DType::Bool => 1,
            DType::I32 => 4,
            DType::U64 => 8,
        }
    }
}

/// What the device executor knows about one host value type.
///
/// On a device every value is a row-major block of `dtype` numbers: a 1-D
/// array is rows of one number, a matrix rows of `width` numbers (its
/// columns), and a value passed whole (a fitted model) is its bytes, laid out
/// as its codec says.
#[derive(Clone, Copy)]
pub(crate) enum Codec {
    /// An array of `dtype` elements (or a value made of them), moved as bytes.
    Array {
        dtype: DType,
        /// Numbers per element along the split axis (a matrix's columns);
        /// `None`: always one (1-D arrays, columns).
        width: Option<fn(&dyn Any) -> usize>,
        /// The value's bytes, row-major (a contiguous copy when the array is not).
        to_bytes: fn(&dyn Any) -> Vec<u8>,
        /// A value rebuilt from bytes holding rows of `width` numbers
        /// (`None`: the value only goes to devices, see [`UploadCodec`]).
        from_bytes: Option<fn(&[u8], usize) -> Piece>,
        /// The bytes of rows `range` of a contiguous array, without copying
        /// (`None` for other layouts).
        range_bytes: for<'v> fn(&'v dyn Any, std::ops::Range<usize>) -> Option<&'v [u8]>,
    },
    /// A scalar passed by value (or a partial result of a reduction).
    Scalar {
        dtype: DType,
        /// The scalar's bytes.
        to_bytes: fn(&dyn Any) -> Vec<u8>,
        /// A scalar rebuilt from its bytes.
        from_bytes: fn(&[u8]) -> Piece,
    },
}

fn array_bytes<T: Copy + 'static, D: Dimension + 'static>(v: &dyn Any) -> Vec<u8> {
    let a = v
        .downcast_ref::<Array<T, D>>()
        .expect("codec applied to its own type");
    let n = a.len() * std::mem::size_of::<T>();
    let mut out = Vec::with_capacity(n);
    match a.as_slice() {
        // SAFETY: T is a plain numeric type (f32, f64, bool) with no padding.
        Some(s) => {
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u8, n) })
        }
        None => {
            for x in a.iter() {
                // SAFETY: as above, one element at a time.
                out.extend_from_slice(unsafe {
                    std::slice::from_raw_parts(x as *const T as *const u8, std::mem::size_of::<T>())
                });
            }
        }
    }
    out
}

fn array_range_bytes<T: Copy + 'static, D: Dimension + 'static>(
    v: &dyn Any,
    rows: std::ops::Range<usize>,
) -> Option<&[u8]> {
    let a = v.downcast_ref::<Array<T, D>>()?;
    let width: usize = a.shape().iter().skip(1).product();
    let s = (a.as_slice()?).get(rows.start * width..rows.end * width)?;
    // SAFETY: T is f32, f64 or bool: no padding, every byte initialised.
    Some(unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u8, std::mem::size_of_val(s)) })
}

fn array_from<T: Copy + Send + Sync + 'static>(b: &[u8], conv: fn(&[u8]) -> T) -> Piece {
    let size = std::mem::size_of::<T>();
    Box::new(Array1::from_iter(b.chunks_exact(size).map(conv)))
}

/// Columns of a matrix.
fn matrix_width<T: 'static>(v: &dyn Any) -> usize {
    v.downcast_ref::<Array2<T>>().map_or(1, |a| a.ncols())
}

/// A matrix of rows of `width` numbers rebuilt from bytes.
fn matrix_from<T: Copy + Send + Sync + 'static>(
    b: &[u8],
    width: usize,
    conv: fn(&[u8]) -> T,
) -> Piece {
    let size = std::mem::size_of::<T>();
    let numbers: Vec<T> = b.chunks_exact(size).map(conv).collect();
    let rows = numbers.len().checked_div(width).unwrap_or(0);
    Box::new(
        Array2::from_shape_vec((rows, width), numbers).expect("a device matrix holds whole rows"),
    )
}

/// A value type that can live on a device as a flat array of numbers: the
/// offload side of a split type's value. Built in for `Array1<f32|f64|bool>`;
/// implement it for your own types and call [`register_device_value`], and
/// stages over them can run on a device (their split type still cuts them
/// into pieces on the host).
pub trait DeviceValue: crate::value::Value {
    /// The element type on the device (selects the `_f32`/`_f64`/`_bool` kernel).
    const DTYPE: DType;
    /// The value's elements, in order, as bytes.
    fn to_device_bytes(&self) -> std::borrow::Cow<'_, [u8]>;
    /// The value rebuilt from the bytes of its elements.
    fn from_device_bytes(bytes: &[u8]) -> Self;
    /// Numbers per element along the split axis (a matrix's columns): 1 by
    /// default. A value passed whole (a fitted model) keeps 1; its kernels
    /// read its bytes as its codec lays them out.
    fn device_width(&self) -> usize {
        1
    }
    /// The value rebuilt from bytes holding rows of `width` numbers (what a
    /// device call produced). By default [`from_device_bytes`](Self::from_device_bytes).
    fn from_device_rows(bytes: &[u8], width: usize) -> Self {
        let _ = width;
        Self::from_device_bytes(bytes)
    }
}

fn registry() -> &'static std::sync::RwLock<Vec<(TypeId, Codec)>> {
    static REGISTRY: std::sync::OnceLock<std::sync::RwLock<Vec<(TypeId, Codec)>>> =
        std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// How values of a type one does not own move to a device and back: the
/// orphan rule forbids implementing [`DeviceValue`] for a foreign type (a
/// polars column, say) outside its crate, so implement `UploadCodec<Foreign>`
/// and `DeviceCodec<Foreign>` for a local marker type instead and call
/// [`register_device_codec`]. The contract is [`DeviceValue`]'s.
pub trait DeviceCodec<T: crate::value::Value>: UploadCodec<T> {
    /// The value rebuilt from the bytes of its elements.
    fn from_device_bytes(bytes: &[u8]) -> T;
    /// Numbers per element along the split axis: 1 by default (see
    /// [`DeviceValue::device_width`]).
    fn device_width(value: &T) -> usize {
        let _ = value;
        1
    }
    /// The value rebuilt from rows of `width` numbers; by default
    /// [`from_device_bytes`](Self::from_device_bytes).
    fn from_device_rows(bytes: &[u8], width: usize) -> T {
        let _ = width;
        Self::from_device_bytes(bytes)
    }
}

/// The codec of a type that implements [`DeviceValue`] itself.
struct OwnCodec;

impl<T: DeviceValue> UploadCodec<T> for OwnCodec {
    const DTYPE: DType = T::DTYPE;
    fn to_device_bytes(value: &T) -> std::borrow::Cow<'_, [u8]> {
        value.to_device_bytes()
    }
}

impl<T: DeviceValue> DeviceCodec<T> for OwnCodec {
    fn from_device_bytes(bytes: &[u8]) -> T {
        T::from_device_bytes(bytes)
    }
    fn device_width(value: &T) -> usize {
        value.device_width()
    }
    fn from_device_rows(bytes: &[u8], width: usize) -> T {
        T::from_device_rows(bytes, width)
    }
}

/// Lets values of type `T` move to devices (see [`DeviceValue`]). Idempotent.
pub fn register_device_value<T: DeviceValue>() {
    register_device_codec::<OwnCodec, T>();
}

/// Lets values of type `T` move to devices and back through the codec `C`
/// (see [`DeviceCodec`]). Idempotent: the first codec registered for `T` stays.
pub fn register_device_codec<C: DeviceCodec<T>, T: crate::value::Value>() {
    fn from_bytes<C: DeviceCodec<T>, T: crate::value::Value>(b: &[u8], width: usize) -> Piece {
        Box::new(C::from_device_rows(b, width))
    }
    fn width<C: DeviceCodec<T>, T: crate::value::Value>(v: &dyn Any) -> usize {
        C::device_width(
            v.downcast_ref::<T>()
                .expect("codec applied to its own type"),
        )
    }
    register::<C, T>(Some(width::<C, T>), Some(from_bytes::<C, T>));
}

/// Adds `T`'s codec through `C` to the registry, unless `T` has one.
fn register<C: UploadCodec<T>, T: crate::value::Value>(
    width: Option<fn(&dyn Any) -> usize>,
    from_bytes: Option<fn(&[u8], usize) -> Piece>,
) {
    fn to_bytes<C: UploadCodec<T>, T: crate::value::Value>(v: &dyn Any) -> Vec<u8> {
        C::to_device_bytes(
            v.downcast_ref::<T>()
                .expect("codec applied to its own type"),
        )
        .into_owned()
    }
    // Registered values are laid out as their codec says: no row ranges in place.
    fn no_range(_: &dyn Any, _: std::ops::Range<usize>) -> Option<&[u8]> {
        None
    }
    let mut r = registry().write().unwrap_or_else(|e| e.into_inner());
    if r.iter().all(|(id, _)| *id != TypeId::of::<T>()) {
        r.push((
            TypeId::of::<T>(),
            Codec::Array {
                dtype: C::DTYPE,
                width,
                to_bytes: to_bytes::<C, T>,
                from_bytes,
                range_bytes: no_range,
            },
        ));
    }
}

/// How values of a type go to a device: their bytes there. Alone (with
/// [`register_upload_codec`]), for a value that only goes up: a fitted model
/// whose library offers no way to build it from its parameters, read by
/// device functions as its bytes; a call returning such a value stays on
/// the CPU. With [`DeviceCodec`], for values that also come back.
pub trait UploadCodec<T: crate::value::Value>: 'static {
    /// The element type of its numbers on the device (selects the
    /// `_f32`/`_f64`/`_bool` kernel).
    const DTYPE: DType;
    /// The value's bytes on a device (its elements in order, or the layout
    /// its device functions read).
    fn to_device_bytes(value: &T) -> std::borrow::Cow<'_, [u8]>;
}

/// Lets values of type `T` go to devices through `C` (see [`UploadCodec`]).
/// Idempotent: the first codec registered for `T` stays.
pub fn register_upload_codec<C: UploadCodec<T>, T: crate::value::Value>() {
    register::<C, T>(None, None);
}

/// True when a device can produce values of type `id` (its codec rebuilds
/// them from bytes).
pub(crate) fn device_can_produce(id: TypeId) -> bool {
    match codec(id) {
        Some(Codec::Array { from_bytes, .. }) => from_bytes.is_some(),
        Some(Codec::Scalar { .. }) => true,
        None => false,
    }
}

/// The element type of values of type `id` on a device (arrays and scalars).
pub(crate) fn value_dtype(id: TypeId) -> Option<DType> {
    match codec(id) {
        Some(Codec::Array { dtype, .. }) | Some(Codec::Scalar { dtype, .. }) => Some(dtype),
        None => None,
    }
}

/// Numbers per element along the split axis of `value`, a value of type `id`
/// (1 for 1-D arrays, scalars and values without a codec).
pub(crate) fn value_width(id: TypeId, value: &dyn Any) -> usize {
    match codec(id) {
        Some(Codec::Array {
            width: Some(width), ..
        }) => width(value),
        _ => 1,
    }
}

/// The element type of values of type `id` when they are device arrays.
pub(crate) fn array_dtype(id: TypeId) -> Option<DType> {
    match codec(id) {
        Some(Codec::Array { dtype, .. }) => Some(dtype),
        _ => None,
    }
}

/// The codec of values of type `id`, if they can live on a device.
pub(crate) fn codec(id: TypeId) -> Option<Codec> {
    builtin_codec(id).or_else(|| {
        let r = registry().read().unwrap_or_else(|e| e.into_inner());
        r.iter().find(|(t, _)| *t == id).map(|(_, c)| *c)
    })
}

/// Numbers a kernel takes by value, as their native-endian bytes.
trait ScalarBytes: Copy + Send + Sync + 'static {
    const DTYPE: DType;
    fn to_ne(self) -> Vec<u8>;
    fn from_ne(bytes: &[u8]) -> Self;
}

macro_rules! scalar_bytes {
    ($($t:ty => $dtype:ident),*) => {$(
        impl ScalarBytes for $t {
            const DTYPE: DType = DType::$dtype;
            fn to_ne(self) -> Vec<u8> {
                self.to_ne_bytes().to_vec()
            }
            fn from_ne(bytes: &[u8]) -> Self {
                let size = std::mem::size_of::<$t>();
                <$t>::from_ne_bytes(bytes[..size].try_into().expect("a scalar's bytes"))
            }
        }
    )*};
}
scalar_bytes!(f64 => F64, f32 => F32, i32 => I32, u64 => U64);

#[cfg(target_pointer_width = "64")]
impl ScalarBytes for usize {
    const DTYPE: DType = DType::U64;
    fn to_ne(self) -> Vec<u8> {
        (self as u64).to_ne()
    }
    fn from_ne(bytes: &[u8]) -> Self {
        u64::from_ne(bytes) as usize
    }
}

fn scalar_codec<T: ScalarBytes>() -> Codec {
    Codec::Scalar {
        dtype: T::DTYPE,
        to_bytes: |v| {
            v.downcast_ref::<T>()
                .expect("codec applied to its own type")
                .to_ne()
        },
        from_bytes: |b| Box::new(T::from_ne(b)),
    }
}

/// Element types of arrays a device holds, read back from native-endian bytes.
trait Element: Copy + Send + Sync + 'static {
    const DTYPE: DType;
    fn read(bytes: &[u8]) -> Self;
}

macro_rules! element {
    ($($t:ty => $dtype:ident),*) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$dtype;
            fn read(bytes: &[u8]) -> Self {
                <$t>::from_ne_bytes(bytes.try_into().expect("one element's bytes"))
            }
        }
    )*};
}
element!(f64 => F64, f32 => F32, u64 => U64);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    /// Kernels write 0 or 1; any other byte is read as true rather than
    /// materialising an invalid bool.
    fn read(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
}

#[cfg(target_pointer_width = "64")]
impl Element for usize {
    const DTYPE: DType = DType::U64;
    fn read(bytes: &[u8]) -> Self {
        u64::read(bytes) as usize
    }
}

/// The codec of 1-D arrays of `T`: rows of one number.
fn vector_codec<T: Element>() -> Codec {
    Codec::Array {
        dtype: T::DTYPE,
        width: None,
        to_bytes: array_bytes::<T, ndarray::Ix1>,
        range_bytes: array_range_bytes::<T, ndarray::Ix1>,
        from_bytes: Some(|b, _| array_from::<T>(b, T::read)),
    }
}

/// The codec of matrices of `T`: rows of their columns' numbers.
fn matrix_codec<T: Element>() -> Codec {
    Codec::Array {
        dtype: T::DTYPE,
        width: Some(matrix_width::<T>),
        to_bytes: array_bytes::<T, ndarray::Ix2>,
        range_bytes: array_range_bytes::<T, ndarray::Ix2>,
        from_bytes: Some(|b, w| matrix_from::<T>(b, w, T::read)),
    }
}

fn builtin_codec(id: TypeId) -> Option<Codec> {
    #[cfg(target_pointer_width = "64")]
    if id == TypeId::of::<Array1<usize>>() {
        return Some(vector_codec::<usize>());
    } else if id == TypeId::of::<usize>() {
        return Some(scalar_codec::<usize>());
    }
    if id == TypeId::of::<Array1<f64>>() {
        Some(vector_codec::<f64>())
    } else if id == TypeId::of::<Array1<f32>>() {
        Some(vector_codec::<f32>())
    } else if id == TypeId::of::<Array1<bool>>() {
        Some(vector_codec::<bool>())
    } else if id == TypeId::of::<Array1<u64>>() {
        Some(vector_codec::<u64>())
    } else if id == TypeId::of::<Array2<f64>>() {
        Some(matrix_codec::<f64>())
    } else if id == TypeId::of::<Array2<f32>>() {
        Some(matrix_codec::<f32>())
    } else if id == TypeId::of::<f64>() {
        Some(scalar_codec::<f64>())
    } else if id == TypeId::of::<f32>() {
        Some(scalar_codec::<f32>())
    } else if id == TypeId::of::<i32>() {
        Some(scalar_codec::<i32>())
    } else if id == TypeId::of::<u64>() {
        Some(scalar_codec::<u64>())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn arrays_roundtrip_through_bytes() {
        let a = array![1.5f64, -2.0, f64::NAN];
        let Some(Codec::Array {
            to_bytes,
            from_bytes,
            ..
        }) = codec(TypeId::of::<Array1<f64>>())
        else {
            panic!("f64 arrays have a codec")
        };
        let b = to_bytes(&a);
        assert_eq!(b.len(), 24);
        let back = from_bytes.unwrap()(&b, 1)
            .downcast::<Array1<f64>>()
            .unwrap();
        assert_eq!(back[0], 1.5);
        assert!(back[2].is_nan());
        let m = array![true, false, true];
        let Some(Codec::Array {
            to_bytes,
            from_bytes,
            ..
        }) = codec(TypeId::of::<Array1<bool>>())
        else {
            panic!("masks have a codec")
        };
        assert_eq!(
            *from_bytes.unwrap()(&to_bytes(&m), 1)
                .downcast::<Array1<bool>>()
                .unwrap(),
            m
        );
        // Non-contiguous arrays are copied in logical order.
        let strided = array![1.0f32, 2.0, 3.0, 4.0];
        let view = strided.slice(ndarray::s![..;2]).to_owned();
        let Some(Codec::Array { to_bytes, .. }) = codec(TypeId::of::<Array1<f32>>()) else {
            panic!()
        };
        assert_eq!(to_bytes(&view).len(), 8);
    }

    #[test]
    fn matrices_move_as_rows_of_their_width() {
        let m = ndarray::Array2::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f64);
        let id = TypeId::of::<ndarray::Array2<f64>>();
        let Some(Codec::Array {
            width: Some(width),
            to_bytes,
            from_bytes,
            range_bytes,
            ..
        }) = codec(id)
        else {
            panic!("f64 matrices have a codec with a width")
        };
        let from_bytes = from_bytes.expect("matrices come back from devices");
        assert_eq!(width(&m), 3);
        assert_eq!(value_width(id, &m), 3);
        let bytes = to_bytes(&m);
        assert_eq!(bytes.len(), 4 * 3 * 8);
        let back = from_bytes(&bytes, 3)
            .downcast::<ndarray::Array2<f64>>()
            .unwrap();
        assert_eq!(*back, m);
        // Rows 1..3 are bytes 24..72, read in place.
        assert_eq!(range_bytes(&m, 1..3), Some(&bytes[24..72]));
        // A transposed (non-contiguous) matrix is copied in logical order,
        // and has no in-place row range.
        let t = m.t().to_owned();
        let strided = m.t();
        assert_eq!(to_bytes(&strided.to_owned()), to_bytes(&t));
        let reversed = m.slice(ndarray::s![..;-1, ..]).to_owned();
        assert_eq!(
            from_bytes(&to_bytes(&reversed), 3)
                .downcast::<ndarray::Array2<f64>>()
                .unwrap()
                .row(0),
            m.row(3)
        );
        // Zero rows keep their width.
        let empty = from_bytes(&[], 3)
            .downcast::<ndarray::Array2<f64>>()
            .unwrap();
        assert_eq!(empty.dim(), (0, 3));
        // Labels (usize) move as u64.
        assert_eq!(array_dtype(TypeId::of::<Array1<usize>>()), Some(DType::U64));
    }
}
