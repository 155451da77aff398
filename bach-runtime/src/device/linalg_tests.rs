//! The simulated device's matrix product and eigensolver, and the checks every device runs.

use super::*;
use crate::device::{Device, Queue, SimulatedDevice, SimulatedDeviceConfig};

fn device() -> SimulatedDevice {
    SimulatedDevice::with_capacity(1 << 20)
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

fn upload(dev: &SimulatedDevice, bytes: &[u8]) -> DeviceBuffer {
    let buf = dev.alloc(bytes.len()).unwrap();
    dev.upload(bytes, &buf).unwrap();
    buf
}

fn download_f64(dev: &SimulatedDevice, buf: &DeviceBuffer) -> Vec<f64> {
    let mut bytes = vec![0u8; buf.len()];
    dev.download(buf, &mut bytes).unwrap();
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

/// Small integers, so every product and sum is exact in any order.
fn values(len: usize, seed: u64) -> Vec<f64> {
    (0..len as u64)
        .map(|i| ((i * 7 + seed * 13) % 11) as f64 - 5.0)
        .collect()
}

/// `C = alpha op(A) op(B) + beta C` by the definition, over row-major slices.
#[allow(clippy::too_many_arguments)]
fn naive(
    (m, n, k): (usize, usize, usize),
    alpha: f64,
    a: &[f64],
    lda: usize,
    ta: bool,
    b: &[f64],
    ldb: usize,
    tb: bool,
    beta: f64,
    c: &mut [f64],
    ldc: usize,
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0;
            for p in 0..k {
                let x = if ta { a[p * lda + i] } else { a[i * lda + p] };
                let y = if tb { b[j * ldb + p] } else { b[p * ldb + j] };
                acc += x * y;
            }
            c[i * ldc + j] = alpha * acc + beta * c[i * ldc + j];
        }
    }
}

#[test]
fn every_transpose_combination_with_offsets_and_padding() {
    let dev = device();
    let (m, n, k) = (5, 3, 4);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        // Stored shapes, with one spare column (ld = cols + 1) and a few leading elements.
        let (ar, ac) = if ta { (k, m) } else { (m, k) };
        let (br, bc) = if tb { (n, k) } else { (k, n) };
        let (lda, ldb, ldc) = (ac + 1, bc + 1, n + 2);
        let (a_lead, b_lead, c_lead) = (3, 1, 2);
        let a = values(a_lead + ar * lda, 1);
        let b = values(b_lead + br * ldb, 2);
        let c0 = values(c_lead + m * ldc, 3);
        let (abuf, bbuf, cbuf) = (
            upload(&dev, &f64_bytes(&a)),
            upload(&dev, &f64_bytes(&b)),
            upload(&dev, &f64_bytes(&c0)),
        );
        let g = Gemm {
            dtype: DType::F64,
            m,
            n,
            k,
            alpha: 2.0,
            a: MatrixRef::new(&abuf, lda).at(a_lead * 8),
            transpose_a: ta,
            b: MatrixRef::new(&bbuf, ldb).at(b_lead * 8),
            transpose_b: tb,
            beta: -1.0,
            c: MatrixRef::new(&cbuf, ldc).at(c_lead * 8),
        };
        dev.gemm_on(Queue::Compute, &g).unwrap();
        let mut want = c0.clone();
        naive(
            (m, n, k),
            2.0,
            &a[a_lead..],
            lda,
            ta,
            &b[b_lead..],
            ldb,
            tb,
            -1.0,
            &mut want[c_lead..],
            ldc,
        );
        // Padding and leading elements of C are untouched.
        assert_eq!(download_f64(&dev, &cbuf), want, "transposes {ta} {tb}");
    }
    assert_eq!(dev.stats().launches, 4);
}

#[test]
fn the_gram_matrix_of_rows_inside_a_bigger_buffer_is_x_t_dot_x_bit_for_bit() {
    let dev = device();
    let (rows, d) = (37, 6);
    let x: Vec<f64> = (0..(rows + 5) * d)
        .map(|i| ((i as f64) * 0.37).sin())
        .collect();
    let xbuf = upload(&dev, &f64_bytes(&x));
    let gbuf = dev.alloc(d * d * 8).unwrap();
    // Rows 5.. of the buffer.
    let block = MatrixRef::new(&xbuf, d).at(5 * d * 8);
    dev.gemm_on(
        Queue::Compute,
        &Gemm {
            dtype: DType::F64,
            m: d,
            n: d,
            k: rows,
            alpha: 1.0,
            a: block,
            transpose_a: true,
            b: block,
            transpose_b: false,
            beta: 0.0,
            c: MatrixRef::new(&gbuf, d),
        },
    )
    .unwrap();
    let xm = ndarray::Array2::from_shape_vec((rows, d), x[5 * d..].to_vec()).unwrap();
    let want = xm.t().dot(&xm);
    assert_eq!(
        download_f64(&dev, &gbuf),
        want.iter().copied().collect::<Vec<_>>()
    );
}

#[test]
fn beta_zero_ignores_nan_in_c_and_k_zero_scales_c() {
    let dev = device();
    let a = upload(&dev, &f64_bytes(&[1.0, 2.0]));
    let b = upload(&dev, &f64_bytes(&[3.0, 4.0]));
    let c = upload(&dev, &f64_bytes(&[f64::NAN]));
    let g = Gemm {
        dtype: DType::F64,
        m: 1,
        n: 1,
        k: 2,
        alpha: 1.0,
        a: MatrixRef::new(&a, 2),
        transpose_a: false,
        b: MatrixRef::new(&b, 1),
        transpose_b: false,
        beta: 0.0,
        c: MatrixRef::new(&c, 1),
    };
    dev.gemm_on(Queue::Compute, &g).unwrap();
    assert_eq!(download_f64(&dev, &c), [11.0]);
    dev.gemm_on(
        Queue::Compute,
        &Gemm {
            k: 0,
            beta: 3.0,
            ..g
        },
    )
    .unwrap();
    assert_eq!(download_f64(&dev, &c), [33.0]);
    dev.gemm_on(
        Queue::Compute,
        &Gemm {
            k: 0,
            beta: 0.0,
            ..g
        },
    )
    .unwrap();
    assert_eq!(download_f64(&dev, &c), [0.0]);
}

#[test]
fn f32_products() {
    let dev = device();
    let a = upload(&dev, &f32_bytes(&[1.0, 2.0, 3.0, 4.0]));
    let b = upload(&dev, &f32_bytes(&[5.0, 6.0, 7.0, 8.0]));
    let c = dev.alloc(16).unwrap();
    dev.gemm_on(
        Queue::Compute,
        &Gemm {
            dtype: DType::F32,
            m: 2,
            n: 2,
            k: 2,
            alpha: 1.0,
            a: MatrixRef::new(&a, 2),
            transpose_a: false,
            b: MatrixRef::new(&b, 2),
            transpose_b: true,
            beta: 0.0,
            c: MatrixRef::new(&c, 2),
        },
    )
    .unwrap();
    let mut bytes = [0u8; 16];
    dev.download(&c, &mut bytes).unwrap();
    let got: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    // [[1, 2], [3, 4]] . [[5, 7], [6, 8]]
    assert_eq!(got, [17.0, 23.0, 39.0, 53.0]);
}

#[test]
fn bad_products_are_device_errors_and_enqueue_nothing() {
    let dev = device();
    let a = dev.alloc(6 * 8).unwrap();
    let b = dev.alloc(6 * 8).unwrap();
    let c = dev.alloc(4 * 8).unwrap();
    let good = Gemm {
        dtype: DType::F64,
        m: 2,
        n: 2,
        k: 3,
        alpha: 1.0,
        a: MatrixRef::new(&a, 3),
        transpose_a: false,
        b: MatrixRef::new(&b, 2),
        transpose_b: false,
        beta: 0.0,
        c: MatrixRef::new(&c, 2),
    };
    dev.gemm_on(Queue::Compute, &good).unwrap();
    let bad = |g: Gemm<'_>, says: &str| {
        let e = dev.gemm_on(Queue::Compute, &g).unwrap_err();
        assert!(matches!(e, Error::Device(_)), "{e:?}");
        assert!(e.to_string().contains(says), "{e} (expected `{says}`)");
    };
    bad(
        Gemm { k: 4, ..good },
        "leading dimension 3 is less than its 4 columns",
    );
    bad(Gemm { m: 3, ..good }, "overrun");
    bad(
        Gemm {
            a: MatrixRef::new(&a, 2),
            ..good
        },
        "leading dimension 2 is less than its 3 columns",
    );
    bad(
        Gemm {
            a: MatrixRef::new(&a, 3).at(4),
            ..good
        },
        "not a multiple",
    );
    bad(
        Gemm {
            a: MatrixRef::new(&a, 3).at(8),
            ..good
        },
        "overrun",
    );
    bad(
        Gemm {
            transpose_b: true,
            ..good
        },
        "leading dimension 2 is less than its 3 columns",
    );
    bad(
        Gemm {
            dtype: DType::Bool,
            ..good
        },
        "only f32 and f64",
    );
    bad(Gemm { m: 1 << 31, ..good }, "32-bit");
    bad(
        Gemm {
            c: MatrixRef::new(&a, 2),
            ..good
        },
        "overlaps",
    );
    bad(
        Gemm {
            m: usize::MAX / 2,
            n: usize::MAX / 2,
            ..good
        },
        "32-bit",
    );
    // A foreign buffer.
    let other = device();
    let foreign = other.alloc(64).unwrap();
    assert!(dev
        .gemm_on(
            Queue::Compute,
            &Gemm {
                c: MatrixRef::new(&foreign, 2),
                ..good
            }
        )
        .is_err());
    assert_eq!(dev.stats().launches, 1, "only the good product ran");
}

#[test]
fn a_product_reading_an_upload_it_did_not_wait_for_is_a_race() {
    let dev = device();
    let a = dev.alloc_on(Queue::Upload, 8).unwrap();
    dev.upload_on(Queue::Upload, &f64_bytes(&[2.0]), &a)
        .unwrap();
    let c = dev.alloc(8).unwrap();
    let g = Gemm {
        dtype: DType::F64,
        m: 1,
        n: 1,
        k: 1,
        alpha: 1.0,
        a: MatrixRef::new(&a, 1),
        transpose_a: false,
        b: MatrixRef::new(&a, 1),
        transpose_b: false,
        beta: 0.0,
        c: MatrixRef::new(&c, 1),
    };
    let e = dev.gemm_on(Queue::Compute, &g).unwrap_err();
    assert!(e.to_string().contains("data race"), "{e}");
    dev.wait(Queue::Compute, &dev.record(Queue::Upload).unwrap())
        .unwrap();
    dev.gemm_on(Queue::Compute, &g).unwrap();
    assert_eq!(download_f64(&dev, &c), [4.0]);
}

#[test]
fn products_are_modelled_as_kernels_over_m_n_k_and_can_fail_on_purpose() {
    let costs = crate::device::DeviceCosts {
        link_bytes_per_s: 1e9,
        link_latency_s: 0.0,
        launch_s: 0.0,
        elements_per_s: 1e9,
    };
    let dev = SimulatedDevice::new(SimulatedDeviceConfig {
        capacity: 1 << 20,
        costs,
        fail_kernel: Some("syevd_f64".into()),
        ..Default::default()
    });
    let a = dev.alloc(100 * 100 * 8).unwrap();
    let c = dev.alloc(100 * 100 * 8).unwrap();
    let before = dev.stats().serial_ns;
    dev.gemm_on(
        Queue::Compute,
        &Gemm {
            dtype: DType::F64,
            m: 100,
            n: 100,
            k: 100,
            alpha: 1.0,
            a: MatrixRef::new(&a, 100),
            transpose_a: false,
            b: MatrixRef::new(&a, 100),
            transpose_b: false,
            beta: 0.0,
            c: MatrixRef::new(&c, 100),
        },
    )
    .unwrap();
    // 10^6 multiply-adds at 10^9 per second: a millisecond (up to the float's rounding).
    assert!((dev.stats().serial_ns - before).abs_diff(1_000_000) <= 1);
    let v = dev.alloc(100 * 8).unwrap();
    let e = dev
        .symmetric_eigen_on(
            Queue::Compute,
            &SymmetricEigen {
                dtype: DType::F64,
                n: 100,
                matrix: &a,
                matrix_offset: 0,
                values: &v,
                values_offset: 0,
                vectors: &c,
                vectors_offset: 0,
                largest: 1,
                reference: &|_| unreachable!("an injected failure runs nothing"),
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("injected failure"), "{e}");
}

/// The eigenpairs of a 2 x 2 symmetric matrix `[[p, q], [q, r]]`, ascending, by formula.
fn eigen_2x2(input: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
    let m: Vec<f64> = input[0]
        .chunks_exact(8)
        .map(|c| f64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    let (p, q, r) = (m[0], m[1], m[3]);
    let mid = (p + r) / 2.0;
    let rad = (((p - r) / 2.0).powi(2) + q * q).sqrt();
    let (l0, l1) = (mid - rad, mid + rad);
    let vector = |l: f64| {
        let (x, y) = if q != 0.0 {
            (q, l - p)
        } else if l == p {
            (1.0, 0.0)
        } else {
            (0.0, 1.0)
        };
        let norm = (x * x + y * y).sqrt();
        [x / norm, y / norm]
    };
    let (v0, v1) = (vector(l0), vector(l1));
    Ok(vec![
        f64_bytes(&[l0, l1]),
        f64_bytes(&[v0[0], v0[1], v1[0], v1[1]]),
    ])
}

#[test]
fn the_eigensolver_runs_its_reference_at_the_offsets() {
    let dev = device();
    // The matrix after two leading elements; the outputs after one.
    let m = upload(&dev, &f64_bytes(&[9.0, 9.0, 2.0, 1.0, 1.0, 2.0]));
    let values = dev.alloc(3 * 8).unwrap();
    let vectors = dev.alloc(5 * 8).unwrap();
    let solve = SymmetricEigen {
        dtype: DType::F64,
        n: 2,
        matrix: &m,
        matrix_offset: 16,
        values: &values,
        values_offset: 8,
        vectors: &vectors,
        vectors_offset: 8,
        largest: 2,
        reference: &eigen_2x2,
    };
    dev.symmetric_eigen_on(Queue::Compute, &solve).unwrap();
    let got = download_f64(&dev, &values);
    assert_eq!(got, [0.0, 1.0, 3.0]);
    let v = download_f64(&dev, &vectors);
    let h = std::f64::consts::FRAC_1_SQRT_2;
    for (g, w) in v[1..].iter().zip([h, -h, h, h]) {
        assert!((g.abs() - w.abs()).abs() < 1e-15, "{v:?}");
    }
    assert_eq!(dev.stats().launches, 1);

    // Checked before anything runs.
    let bad = |e: SymmetricEigen<'_>, says: &str| {
        let err = dev.symmetric_eigen_on(Queue::Compute, &e).unwrap_err();
        assert!(err.to_string().contains(says), "{err} (expected `{says}`)");
    };
    let never: &HostFn<'_> = &|_| unreachable!("a rejected solve runs nothing");
    bad(
        SymmetricEigen {
            n: 3,
            reference: never,
            ..solve
        },
        "overrun",
    );
    bad(
        SymmetricEigen {
            largest: 0,
            reference: never,
            ..solve
        },
        "0 largest eigenpairs",
    );
    bad(
        SymmetricEigen {
            largest: 3,
            reference: never,
            ..solve
        },
        "3 largest eigenpairs",
    );
    bad(
        SymmetricEigen {
            vectors: &m,
            vectors_offset: 0,
            reference: never,
            ..solve
        },
        "must not overlap",
    );
    bad(
        SymmetricEigen {
            matrix_offset: 4,
            reference: never,
            ..solve
        },
        "not a multiple",
    );
    // A reference that writes the wrong amount is an error, not a partial result.
    let short: &HostFn<'_> = &|_| Ok(vec![vec![0u8; 8], vec![0u8; 32]]);
    bad(
        SymmetricEigen {
            reference: short,
            ..solve
        },
        "reference produced 8 and 32 bytes",
    );
    assert_eq!(dev.stats().launches, 1);
}
