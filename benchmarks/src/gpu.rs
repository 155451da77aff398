//! Hand-written GPU code for `gpu` mode, the way the paper's baselines use
//! PyTorch or CuPy: explicit transfers, one kernel launch per operation, every
//! intermediate a whole device array. It runs on any [`Device`]: the CUDA
//! device on a GPU machine, the simulated device in tests (each launch names
//! the CPU function that stands in for its kernel there).

use bach_runtime::{Device, DeviceBuffer, KernelArg, KernelSource, Launch, LaunchShape, Result};
use ndarray::Array1;

use annotated_libs::cpu::numpy as cpu;
use annotated_libs::numpy::BACH_KERNELS;

/// A device array of `f64`.
pub struct DArray {
    buf: DeviceBuffer,
    len: usize,
}

/// A device array of `bool` (one byte each, 0 or 1): a comparison's result.
pub struct DMask {
    buf: DeviceBuffer,
    len: usize,
}

/// Elements per partial of a [`Gpu::sum`] (one kernel block's share, about).
const SUM_PARTIAL_ELEMENTS: usize = 1 << 16;
/// Most partials one [`Gpu::sum`] launch writes.
const SUM_MAX_PARTIALS: usize = 1024;

/// The device and kernel source the hand-written workloads launch on.
pub struct Gpu<'d> {
    dev: &'d dyn Device,
    source: KernelSource,
}

fn to_bytes(a: &Array1<f64>) -> Vec<u8> {
    a.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

fn from_bytes(b: &[u8]) -> Array1<f64> {
    b.chunks_exact(8)
        .map(|c| f64::from_ne_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

impl<'d> Gpu<'d> {
    /// Launches on `dev` the kernels of the annotated NumPy module.
    pub fn new(dev: &'d dyn Device) -> Self {
        Gpu {
            dev,
            source: BACH_KERNELS,
        }
    }

    /// Launches on `dev` the kernels of `source` (e.g. the annotated polars
    /// module's, which adds total-order comparisons to the NumPy module's).
    pub fn with_source(dev: &'d dyn Device, source: KernelSource) -> Self {
        Gpu { dev, source }
    }

    /// The device itself, for workloads that launch their own kernels or
    /// device libraries (cuBLAS, cuSOLVER) rather than the NumPy module's kernels.
    pub fn device(&self) -> &'d dyn Device {
        self.dev
    }

    /// Copies `a` to the device (straight from its memory when contiguous).
    pub fn upload(&self, a: &Array1<f64>) -> Result<DArray> {
        let copied;
        let bytes: &[u8] = match a.as_slice() {
            // SAFETY: f64 has no padding; the view covers exactly the slice.
            Some(s) => unsafe {
                std::slice::from_raw_parts(s.as_ptr() as *const u8, std::mem::size_of_val(s))
            },
            None => {
                copied = to_bytes(a);
                &copied
            }
        };
        let buf = self.dev.alloc(bytes.len())?;
        self.dev.upload(bytes, &buf)?;
        Ok(DArray { buf, len: a.len() })
    }

    /// Copies `a` back to the host, straight into the result's memory.
    pub fn download(&self, a: &DArray) -> Result<Array1<f64>> {
        let mut out = vec![0f64; a.len];
        // SAFETY: any bytes are a valid f64; the view covers exactly the vector.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, a.len * 8) };
        self.dev.download(&a.buf, bytes)?;
        Ok(Array1::from_vec(out))
    }

    fn launch(
        &self,
        kernel: &str,
        n: usize,
        inputs: &[&DArray],
        scalar: Option<f64>,
        host: &(dyn Fn(&[Array1<f64>]) -> Array1<f64> + Sync),
    ) -> Result<DArray> {
        let out = self.dev.alloc(n * 8)?;
        let mut args: Vec<KernelArg<'_>> = inputs.iter().map(|a| KernelArg::In(&a.buf)).collect();
        args.extend(scalar.map(KernelArg::F64));
        args.push(KernelArg::Out(&out));
        let reference = |bufs: &[&[u8]]| -> Result<Vec<Vec<u8>>> {
            let arrays: Vec<Array1<f64>> = bufs.iter().map(|b| from_bytes(&b[..n * 8])).collect();
            Ok(vec![to_bytes(&host(&arrays))])
        };
        self.dev.launch(&Launch {
            source: self.source,
            kernel: format!("{kernel}_f64"),
            n,
            shape: LaunchShape::Elementwise,
            args,
            reference: &reference,
        })?;
        Ok(DArray { buf: out, len: n })
    }

    /// `op(a)` elementwise.
    pub fn unary(
        &self,
        op: &str,
        host: fn(&Array1<f64>) -> Array1<f64>,
        a: &DArray,
    ) -> Result<DArray> {
        self.launch(op, a.len, &[a], None, &|x| host(&x[0]))
    }

    /// `op(a, b)` elementwise.
    pub fn binary(
        &self,
        op: &str,
        host: fn(&Array1<f64>, &Array1<f64>) -> Array1<f64>,
        a: &DArray,
        b: &DArray,
    ) -> Result<DArray> {
        self.launch(op, a.len, &[a, b], None, &|x| host(&x[0], &x[1]))
    }

    /// `a op s` elementwise (kernel `{op}_scalar`).
    pub fn with_scalar(
        &self,
        op: &str,
        host: fn(&Array1<f64>, f64) -> Array1<f64>,
        a: &DArray,
        s: f64,
    ) -> Result<DArray> {
        self.launch(&format!("{op}_scalar"), a.len, &[a], Some(s), &|x| {
            host(&x[0], s)
        })
    }

    /// `s op a` elementwise (kernel `scalar_{op}`).
    pub fn scalar_first(
        &self,
        op: &str,
        host: fn(f64, &Array1<f64>) -> Array1<f64>,
        s: f64,
        a: &DArray,
    ) -> Result<DArray> {
        self.launch(&format!("scalar_{op}"), a.len, &[a], Some(s), &|x| {
            host(s, &x[0])
        })
    }

    /// `a cmp s` elementwise into a device mask (kernel `{op}_f64`, e.g.
    /// `tot_gt_scalar`); `host(x, s)` is what the kernel computes per element.
    pub fn compare_scalar(
        &self,
        op: &str,
        host: fn(f64, f64) -> bool,
        a: &DArray,
        s: f64,
    ) -> Result<DMask> {
        let n = a.len;
        let out = self.dev.alloc(n)?;
        let reference = |bufs: &[&[u8]]| -> Result<Vec<Vec<u8>>> {
            let x = from_bytes(&bufs[0][..n * 8]);
            Ok(vec![x.iter().map(|&x| u8::from(host(x, s))).collect()])
        };
        self.dev.launch(&Launch {
            source: self.source,
            kernel: format!("{op}_f64"),
            n,
            shape: LaunchShape::Elementwise,
            args: vec![
                KernelArg::In(&a.buf),
                KernelArg::F64(s),
                KernelArg::Out(&out),
            ],
            reference: &reference,
        })?;
        Ok(DMask { buf: out, len: n })
    }

    /// `value` where `cond` holds, `a` elsewhere (kernel `mask_f64`).
    pub fn mask(&self, a: &DArray, cond: &DMask, value: f64) -> Result<DArray> {
        let n = a.len;
        assert_eq!(n, cond.len, "mask: an array and a mask of one length");
        let out = self.dev.alloc(n * 8)?;
        let reference = |bufs: &[&[u8]]| -> Result<Vec<Vec<u8>>> {
            let x = from_bytes(&bufs[0][..n * 8]);
            let c: Array1<bool> = bufs[1][..n].iter().map(|&b| b != 0).collect();
            Ok(vec![to_bytes(&cpu::mask(&x, &c, value))])
        };
        self.dev.launch(&Launch {
            source: self.source,
            kernel: "mask_f64".into(),
            n,
            shape: LaunchShape::Elementwise,
            args: vec![
                KernelArg::In(&a.buf),
                KernelArg::In(&cond.buf),
                KernelArg::F64(value),
                KernelArg::Out(&out),
            ],
            reference: &reference,
        })?;
        Ok(DArray { buf: out, len: n })
    }

    /// The sum of `a`: one reduction launch (kernel `sum_f64`) writing a
    /// partial per block, the partials downloaded and added on the host in
    /// order. On the simulated device, partial `j` is the CPU sum of the
    /// `j`-th of `partials` equal shares of the elements, as the device
    /// executor's reductions.
    pub fn sum(&self, a: &DArray) -> Result<f64> {
        let n = a.len;
        let partials = n.div_ceil(SUM_PARTIAL_ELEMENTS).clamp(1, SUM_MAX_PARTIALS);
        let out = self.dev.alloc(partials * 8)?;
        let reference = |bufs: &[&[u8]]| -> Result<Vec<Vec<u8>>> {
            let x = from_bytes(&bufs[0][..n * 8]);
            let sums: Array1<f64> = (0..partials)
                .map(|j| {
                    let sub = (n * j / partials)..(n * (j + 1) / partials);
                    cpu::sum(&x.slice(ndarray::s![sub]).to_owned())
                })
                .collect();
            Ok(vec![to_bytes(&sums)])
        };
        self.dev.launch(&Launch {
            source: self.source,
            kernel: "sum_f64".into(),
            n,
            shape: LaunchShape::Reduction { partials },
            args: vec![KernelArg::In(&a.buf), KernelArg::Out(&out)],
            reference: &reference,
        })?;
        let partials = self.download(&DArray {
            buf: out,
            len: partials,
        })?;
        Ok(partials.iter().sum())
    }

    /// Waits for all launched work.
    pub fn synchronize(&self) -> Result<()> {
        self.dev.synchronize()
    }
}

/// Black-Scholes, one kernel per operation of `annotated_libs::workloads`.
pub fn blackscholes(g: &Gpu<'_>, x: &[Array1<f64>]) -> Result<Vec<Array1<f64>>> {
    let (c05, c10, invsqrt2) = (3.0, 1.5, 1.0 / 2f64.sqrt());
    let price = g.upload(&x[0])?;
    let strike = g.upload(&x[1])?;
    let t = g.upload(&x[2])?;
    let rate = g.upload(&x[3])?;
    let vol = g.upload(&x[4])?;

    let rsig = g.binary(
        "add",
        cpu::add,
        &g.with_scalar(
            "multiply",
            cpu::multiply_scalar,
            &g.binary("multiply", cpu::multiply, &vol, &vol)?,
            c05,
        )?,
        &rate,
    )?;
    let vol_sqrt = g.binary(
        "multiply",
        cpu::multiply,
        &g.unary("sqrt", cpu::sqrt, &t)?,
        &vol,
    )?;
    let d1 = g.binary(
        "divide",
        cpu::divide,
        &g.binary(
            "add",
            cpu::add,
            &g.unary(
                "log2",
                cpu::log2,
                &g.binary("divide", cpu::divide, &price, &strike)?,
            )?,
            &g.binary("multiply", cpu::multiply, &rsig, &t)?,
        )?,
        &vol_sqrt,
    )?;
    let d2 = g.binary("subtract", cpu::subtract, &d1, &vol_sqrt)?;
    let cdf = |d: &DArray| -> Result<DArray> {
        let e = g.unary(
            "erf",
            cpu::erf,
            &g.with_scalar("multiply", cpu::multiply_scalar, d, invsqrt2)?,
        )?;
        g.scalar_first(
            "add",
            cpu::scalar_add,
            c05,
            &g.scalar_first("multiply", cpu::scalar_multiply, c05, &e)?,
        )
    };
    let (d1, d2) = (cdf(&d1)?, cdf(&d2)?);
    let e_rt = g.unary(
        "exp",
        cpu::exp,
        &g.binary(
            "multiply",
            cpu::multiply,
            &g.unary("negative", cpu::negative, &rate)?,
            &t,
        )?,
    )?;
    let e_rt_strike = g.binary("multiply", cpu::multiply, &e_rt, &strike)?;
    let call = g.binary(
        "subtract",
        cpu::subtract,
        &g.binary("multiply", cpu::multiply, &price, &d1)?,
        &g.binary("multiply", cpu::multiply, &e_rt_strike, &d2)?,
    )?;
    let put = g.binary(
        "subtract",
        cpu::subtract,
        &g.binary(
            "multiply",
            cpu::multiply,
            &e_rt_strike,
            &g.scalar_first("subtract", cpu::scalar_subtract, c10, &d2)?,
        )?,
        &g.binary(
            "multiply",
            cpu::multiply,
            &price,
            &g.scalar_first("subtract", cpu::scalar_subtract, c10, &d1)?,
        )?,
    )?;
    let out = vec![g.download(&call)?, g.download(&put)?];
    g.synchronize()?;
    Ok(out)
}

/// Haversine, one kernel per operation of `annotated_libs::workloads`.
pub fn haversine(g: &Gpu<'_>, x: &[Array1<f64>]) -> Result<Vec<Array1<f64>>> {
    let (lat1, lon1, miles) = (0.70984286, 1.23892197, 3959.0);
    let lat2 = g.upload(&x[0])?;
    let lon2 = g.upload(&x[1])?;
    let half_sin_sq = |v: &DArray, c: f64| -> Result<DArray> {
        let d = g.with_scalar(
            "divide",
            cpu::divide_scalar,
            &g.with_scalar("subtract", cpu::subtract_scalar, v, c)?,
            2.0,
        )?;
        g.unary("square", cpu::square, &g.unary("sin", cpu::sin, &d)?)
    };
    let dlat = half_sin_sq(&lat2, lat1)?;
    let dlon = half_sin_sq(&lon2, lon1)?;
    let a = g.binary(
        "add",
        cpu::add,
        &dlat,
        &g.binary(
            "multiply",
            cpu::multiply,
            &g.with_scalar(
                "multiply",
                cpu::multiply_scalar,
                &g.unary("cos", cpu::cos, &lat2)?,
                f64::cos(lat1),
            )?,
            &dlon,
        )?,
    )?;
    let d = g.with_scalar(
        "multiply",
        cpu::multiply_scalar,
        &g.scalar_first(
            "multiply",
            cpu::scalar_multiply,
            2.0,
            &g.unary("arcsin", cpu::arcsin, &g.unary("sqrt", cpu::sqrt, &a)?)?,
        )?,
        miles,
    )?;
    let out = vec![g.download(&d)?];
    g.synchronize()?;
    Ok(out)
}
