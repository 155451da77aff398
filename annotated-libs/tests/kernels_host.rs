//! Checks the arithmetic of the CUDA kernels in `annotated-libs/kernels/numpy.cu` without a
//! GPU: the file is compiled as host C++ with g++ and `kernels/host_emulation.h`, loaded
//! with `libloading`, and every kernel (f32 and f64) is run through the emulated grid
//! (`bach_host_launch`) and compared with `annotated_libs::cpu::numpy` on inputs that mix
//! random values with edge values (±0, ±1, NaN, ±inf, denormals, huge values).
//!
//! Agreement expected: bit-exact (NaN matching any NaN) for arithmetic, negative, abs,
//! sqrt, square, minimum/maximum, comparisons, logical ops, where and mask; within 2 ulp
//! for transcendentals (exp, log*, trig, erf, power). Reductions: min/max exact up to the
//! sign of a zero result; sums within a rounding bound (the summation order differs).
//!
//! Ops without a `cpu::numpy` counterpart (`scalar_power`, `not_equal_scalar`) are checked
//! against a reference written here.
//!
//! Needs a C++ compiler: `$CXX`, else `g++`. Without one the tests print why and pass,
//! unless `BACH_REQUIRE_GXX=1`.

// The op tables below list `fn` pointer types inline; that is clearer than aliases.
#![allow(clippy::type_complexity)]

use std::ffi::c_void;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use annotated_libs::cpu::numpy as np;
use ndarray::Array1;

const KERNELS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/kernels");

/// Elementwise launches use this (grid, block): several blocks of several threads.
const SHAPE: (u32, u32) = (3, 5);

// ---- loading the kernels ---------------------------------------------------------------

type Launch = unsafe extern "C" fn(u32, u32, extern "C" fn(*mut c_void), *mut c_void);

struct Kernels {
    lib: libloading::Library,
    launch: Launch,
}

impl Kernels {
    /// The kernel `name` as a function pointer of type `F`.
    fn get<F: Copy>(&self, name: &str) -> F {
        let symbol = format!("{name}\0");
        // SAFETY: the callers name `F` after the kernel's signature in numpy.cu.
        unsafe {
            *self
                .lib
                .get::<F>(symbol.as_bytes())
                .unwrap_or_else(|e| panic!("kernel {name}: {e}"))
        }
    }

    /// Runs `body` once per thread of a `grid` x `block` launch.
    fn launch<F: Fn() + Sync>(&self, (grid, block): (u32, u32), body: F) {
        extern "C" fn trampoline<F: Fn() + Sync>(ctx: *mut c_void) {
            // SAFETY: `ctx` is the `&F` passed below, alive for the whole launch.
            let body = unsafe { &*(ctx as *const F) };
            body();
        }
        // SAFETY: `bach_host_launch` calls `trampoline::<F>(ctx)` and returns after all
        // threads have finished.
        unsafe {
            (self.launch)(
                grid,
                block,
                trampoline::<F>,
                &body as *const F as *mut c_void,
            )
        }
    }
}

/// numpy.cu's kernels compiled as a host library, or `None` (with a message) without a
/// compiler.
fn kernels() -> Option<&'static Kernels> {
    static KERNELS: OnceLock<Option<Kernels>> = OnceLock::new();
    KERNELS
        .get_or_init(|| {
            build_kernels(
                "numpy",
                &[format!("{KERNELS_DIR}/common.cuh")],
                PathBuf::from(format!("{KERNELS_DIR}/numpy.cu")),
            )
        })
        .as_ref()
}

/// The ndarray module's generated kernel source (`BACH_KERNELS`, which starts with
/// `common.cuh`) compiled as a host library.
fn ndarray_kernels() -> Option<&'static Kernels> {
    static KERNELS: OnceLock<Option<Kernels>> = OnceLock::new();
    KERNELS
        .get_or_init(|| {
            let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            let source = out_dir.join(format!("ndarray-{}-{}.cu", std::process::id(), unique()));
            std::fs::write(&source, annotated_libs::ndarray::BACH_KERNELS.code)
                .expect("write the generated source");
            let kernels = build_kernels("ndarray", &[], source.clone());
            let _ = std::fs::remove_file(&source);
            kernels
        })
        .as_ref()
}

fn build_kernels(name: &str, includes: &[String], source: PathBuf) -> Option<Kernels> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".to_string());
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let lib_path = out_dir.join(format!("lib{name}-{}-{}.so", std::process::id(), unique()));
    let mut command = Command::new(&cxx);
    command
        .args(["-O2", "-shared", "-fPIC", "-pthread", "-Wall", "-include"])
        .arg(format!("{KERNELS_DIR}/host_emulation.h"));
    for include in includes {
        command.arg("-include").arg(include);
    }
    let output = command
        .args(["-x", "c++"])
        .arg(&source)
        .arg("-o")
        .arg(&lib_path)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            let reason = format!("cannot run the C++ compiler `{cxx}`: {e}");
            if std::env::var("BACH_REQUIRE_GXX").as_deref() == Ok("1") {
                panic!("BACH_REQUIRE_GXX=1 but {reason}");
            }
            eprintln!("skipping the host kernel tests: {reason}");
            return None;
        }
    };
    assert!(
        output.status.success(),
        "{cxx} failed to compile {name} kernels as host C++:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // SAFETY: the library we just built; its initialisers only set up thread-locals.
    let lib = unsafe { libloading::Library::new(&lib_path) }.expect("load libkernels.so");
    let _ = std::fs::remove_file(&lib_path); // stays mapped
                                             // SAFETY: signature of `bach_host_launch` in host_emulation.h.
    let launch = unsafe {
        *lib.get::<Launch>(b"bach_host_launch\0")
            .expect("bach_host_launch")
    };
    Some(Kernels { lib, launch })
}

// ---- floating-point types --------------------------------------------------------------

/// What the tests need of `f32` / `f64`.
trait TestFloat: np::Float + std::fmt::LowerExp {
    /// Bits widened to u64.
    fn bits(self) -> u64;
    /// Bits mapped to a monotonic integer line (so ulp distance is a difference).
    fn ordered(self) -> i64;
    fn from_f64(x: f64) -> Self;
    fn from_bits64(bits: u64) -> Self;
    fn epsilon_f64() -> f64;
    /// Values at the edges: zeros, denormals, extremes, infinities, NaNs.
    fn edges() -> Vec<Self>;
}

impl TestFloat for f32 {
    fn bits(self) -> u64 {
        self.to_bits() as u64
    }
    fn ordered(self) -> i64 {
        let b = self.to_bits() as i32;
        (if b < 0 { i32::MIN - b } else { b }) as i64
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn from_bits64(bits: u64) -> Self {
        f32::from_bits(bits as u32)
    }
    fn epsilon_f64() -> f64 {
        f32::EPSILON as f64
    }
    fn edges() -> Vec<Self> {
        let mut v = vec![
            f32::MIN_POSITIVE,
            f32::MIN_POSITIVE / 2.0,
            f32::from_bits(1),
            f32::MAX,
            1e30,
            1e-30,
            f32::from_bits(0x7fc0_0001), // a NaN with a payload
        ];
        v.extend(common_edges::<f32>());
        v
    }
}

impl TestFloat for f64 {
    fn bits(self) -> u64 {
        self.to_bits()
    }
    fn ordered(self) -> i64 {
        let b = self.to_bits() as i64;
        if b < 0 {
            i64::MIN - b
        } else {
            b
        }
    }
    fn from_f64(x: f64) -> Self {
        x
    }
    fn from_bits64(bits: u64) -> Self {
        f64::from_bits(bits)
    }
    fn epsilon_f64() -> f64 {
        f64::EPSILON
    }
    fn edges() -> Vec<Self> {
        let mut v = vec![
            f64::MIN_POSITIVE,
            f64::MIN_POSITIVE / 2.0,
            f64::from_bits(1),
            f64::MAX,
            1e300,
            1e-300,
            f64::from_bits(0x7ff8_0000_0000_0001), // a NaN with a payload
        ];
        v.extend(common_edges::<f64>());
        v
    }
}

fn common_edges<T: TestFloat>() -> Vec<T> {
    let mut v: Vec<T> = [
        0.0,
        1.0,
        0.5,
        2.0,
        3.0,
        10.0,
        100.0,
        1e-3,
        0.7,
        1.5,
        88.0,
        710.0,
        1e5,
        std::f64::consts::PI,
        std::f64::consts::E,
    ]
    .iter()
    .map(|&x| T::from_f64(x))
    .collect();
    v.extend([T::infinity(), T::nan()]);
    let negated: Vec<T> = v.iter().map(|&x| -x).collect();
    v.extend(negated);
    v.extend(
        v.clone()
            .iter()
            .map(|&x| x * T::from_f64(0.9))
            .filter(|x| x.is_finite()),
    );
    v
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }
    /// A mix: uniform in [-10, 10], log-uniform magnitudes, raw bit patterns, edges.
    fn float<T: TestFloat>(&mut self, edges: &[T]) -> T {
        match self.next() % 8 {
            0..=3 => T::from_f64(self.unit() * 20.0 - 10.0),
            4 | 5 => {
                let mag = 10f64.powf(self.unit() * 80.0 - 40.0);
                T::from_f64(if self.bool() { mag } else { -mag })
            }
            6 => T::from_bits64(self.next()),
            _ => edges[(self.next() % edges.len() as u64) as usize],
        }
    }
}

/// Inputs for binary ops: every pair of edge values, then random pairs.
fn pairs<T: TestFloat>(rng: &mut Rng) -> (Vec<T>, Vec<T>) {
    let edges = T::edges();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for &x in &edges {
        for &y in &edges {
            a.push(x);
            b.push(y);
        }
    }
    for _ in 0..2000 {
        a.push(rng.float(&edges));
        b.push(rng.float(&edges));
    }
    (a, b)
}

/// Inputs for unary ops: the edge values, then random values (including the domain
/// boundaries of arcsin/arccos/log).
fn singles<T: TestFloat>(rng: &mut Rng) -> Vec<T> {
    let edges = T::edges();
    let mut a = edges.clone();
    a.extend((0..4000).map(|_| rng.float(&edges)));
    a.extend((0..500).map(|_| T::from_f64(rng.unit() * 2.2 - 1.1)));
    a
}

// ---- comparing -------------------------------------------------------------------------

/// Collects mismatches and fails once at the end with the first few.
#[derive(Default)]
struct Report {
    failures: Vec<String>,
    checked: usize,
}

impl Report {
    /// `input` describes the inputs; only called on a mismatch.
    fn check<T: TestFloat>(
        &mut self,
        kernel: &str,
        input: impl FnOnce() -> String,
        got: T,
        want: T,
        max_ulps: u64,
    ) {
        self.checked += 1;
        let ok = (got.is_nan() && want.is_nan())
            || got.bits() == want.bits()
            || (max_ulps > 0
                && got.is_finite()
                && want.is_finite()
                && got.ordered().abs_diff(want.ordered()) <= max_ulps);
        if !ok {
            self.failures.push(format!(
                "{kernel}({}): got {got:e} ({:#x}), want {want:e} ({:#x})",
                input(),
                got.bits(),
                want.bits()
            ));
        }
    }

    fn check_bool(&mut self, kernel: &str, input: impl FnOnce() -> String, got: u8, want: bool) {
        self.checked += 1;
        if got > 1 || (got == 1) != want {
            self.failures
                .push(format!("{kernel}({}): got {got}, want {want}", input()));
        }
    }

    fn finish(self, what: &str) {
        eprintln!("{what}: {} values checked", self.checked);
        if !self.failures.is_empty() {
            let shown: Vec<&String> = self.failures.iter().take(25).collect();
            panic!(
                "{what}: {} mismatches, first ones:\n{}",
                self.failures.len(),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

/// An output buffer pre-filled with a value no kernel produces from these inputs, so that
/// unwritten elements show up.
fn out_buffer<T: TestFloat>(n: usize) -> Vec<T> {
    vec![T::from_f64(-12345.6789); n]
}

fn arr<T: Copy>(v: &[T]) -> Array1<T> {
    Array1::from(v.to_vec())
}

// ---- kernel signatures and runners -----------------------------------------------------

type Unary<T> = unsafe extern "C" fn(u64, *const T, *mut T);
type Binary<T, O> = unsafe extern "C" fn(u64, *const T, *const T, *mut O);
type WithScalar<T, O> = unsafe extern "C" fn(u64, *const T, T, *mut O);
type Where<T> = unsafe extern "C" fn(u64, *const bool, *const T, *const T, *mut T);
type WhereScalar<T> = unsafe extern "C" fn(u64, *const bool, *const T, T, *mut T);
type WhereScalars<T> = unsafe extern "C" fn(u64, *const bool, T, T, *mut T);
type MaskKernel<T> = unsafe extern "C" fn(u64, *const T, *const bool, T, *mut T);
type Reduce<T> = unsafe extern "C" fn(u64, *const T, *mut T);

// Pointers cross into the emulated threads as addresses (raw pointers are not Sync).

fn run_unary<T: TestFloat, O: Copy>(k: &Kernels, name: &str, a: &[T], out: &mut [O]) {
    let f: unsafe extern "C" fn(u64, *const T, *mut O) = k.get(name);
    let (n, pa, po) = (
        a.len() as u64,
        a.as_ptr() as usize,
        out.as_mut_ptr() as usize,
    );
    k.launch(SHAPE, || unsafe { f(n, pa as *const T, po as *mut O) });
}

fn run_binary<T: TestFloat, O: Copy>(k: &Kernels, name: &str, a: &[T], b: &[T], out: &mut [O]) {
    let f: Binary<T, O> = k.get(name);
    let (n, pa, pb, po) = (
        a.len() as u64,
        a.as_ptr() as usize,
        b.as_ptr() as usize,
        out.as_mut_ptr() as usize,
    );
    k.launch(SHAPE, || unsafe {
        f(n, pa as *const T, pb as *const T, po as *mut O)
    });
}

fn run_with_scalar<T: TestFloat, O: Copy>(k: &Kernels, name: &str, a: &[T], s: T, out: &mut [O]) {
    let f: WithScalar<T, O> = k.get(name);
    let (n, pa, po) = (
        a.len() as u64,
        a.as_ptr() as usize,
        out.as_mut_ptr() as usize,
    );
    k.launch(SHAPE, || unsafe { f(n, pa as *const T, s, po as *mut O) });
}

fn run_reduce<T: TestFloat>(k: &Kernels, name: &str, a: &[T], shape: (u32, u32)) -> Vec<T> {
    let f: Reduce<T> = k.get(name);
    let mut partials = out_buffer::<T>(shape.0 as usize);
    let (n, pa, pp) = (
        a.len() as u64,
        a.as_ptr() as usize,
        partials.as_mut_ptr() as usize,
    );
    k.launch(shape, || unsafe { f(n, pa as *const T, pp as *mut T) });
    partials
}

// ---- the checks, generic over the dtype ------------------------------------------------

fn dtype<T: TestFloat>() -> &'static str {
    T::DTYPE
}

fn check_unary<T: TestFloat>(k: &Kernels) {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let a = singles::<T>(&mut rng);
    let ops: [(&str, fn(&Array1<T>) -> Array1<T>, u64); 15] = [
        ("negative", np::negative, 0),
        ("abs", np::abs, 0),
        ("sqrt", np::sqrt, 0),
        ("square", np::square, 0),
        ("exp", np::exp, 2),
        ("log", np::log, 2),
        ("log2", np::log2, 2),
        ("log10", np::log10, 2),
        ("sin", np::sin, 2),
        ("cos", np::cos, 2),
        ("tan", np::tan, 2),
        ("arcsin", np::arcsin, 2),
        ("arccos", np::arccos, 2),
        ("arctan", np::arctan, 2),
        ("erf", np::erf, 2),
    ];
    let mut report = Report::default();
    for (op, reference, ulps) in ops {
        let name = format!("{op}_{}", dtype::<T>());
        let mut out = out_buffer::<T>(a.len());
        run_unary(k, &name, &a, &mut out);
        let want = reference(&arr(&a));
        for i in 0..a.len() {
            report.check(&name, || format!("{:e}", a[i]), out[i], want[i], ulps);
        }
    }
    report.finish(&format!("unary {}", dtype::<T>()));
}

fn check_binary<T: TestFloat>(k: &Kernels) {
    let mut rng = Rng(0x2345_6789_abcd_ef12);
    let (a, b) = pairs::<T>(&mut rng);
    let ops: [(&str, fn(&Array1<T>, &Array1<T>) -> Array1<T>, u64); 7] = [
        ("add", np::add, 0),
        ("subtract", np::subtract, 0),
        ("multiply", np::multiply, 0),
        ("divide", np::divide, 0),
        ("minimum", np::minimum, 0),
        ("maximum", np::maximum, 0),
        ("power", np::power, 2),
    ];
    let mut report = Report::default();
    for (op, reference, ulps) in ops {
        let name = format!("{op}_{}", dtype::<T>());
        let mut out = out_buffer::<T>(a.len());
        run_binary(k, &name, &a, &b, &mut out);
        let want = reference(&arr(&a), &arr(&b));
        for i in 0..a.len() {
            report.check(
                &name,
                || format!("{:e}, {:e}", a[i], b[i]),
                out[i],
                want[i],
                ulps,
            );
        }
    }
    report.finish(&format!("binary {}", dtype::<T>()));
}

/// Scalars tried for the array-scalar forms: every edge value and a few random ones.
fn scalars<T: TestFloat>(rng: &mut Rng) -> Vec<T> {
    let edges = T::edges();
    let mut s = edges.clone();
    s.extend((0..8).map(|_| rng.float(&edges)));
    s
}

fn check_scalar_forms<T: TestFloat>(k: &Kernels) {
    let mut rng = Rng(0x3456_789a_bcde_f123);
    let a = singles::<T>(&mut rng);
    let a_scalar: [(&str, fn(&Array1<T>, T) -> Array1<T>, u64); 7] = [
        ("add_scalar", np::add_scalar, 0),
        ("subtract_scalar", np::subtract_scalar, 0),
        ("multiply_scalar", np::multiply_scalar, 0),
        ("divide_scalar", np::divide_scalar, 0),
        ("minimum_scalar", np::minimum_scalar, 0),
        ("maximum_scalar", np::maximum_scalar, 0),
        ("power_scalar", np::power_scalar, 2),
    ];
    let scalar_a: [(&str, fn(T, &Array1<T>) -> Array1<T>, u64); 5] = [
        ("scalar_add", np::scalar_add, 0),
        ("scalar_subtract", np::scalar_subtract, 0),
        ("scalar_multiply", np::scalar_multiply, 0),
        ("scalar_divide", np::scalar_divide, 0),
        // Not in cpu::numpy: s ** a.
        ("scalar_power", |s, a| a.mapv(|x| s.powf(x)), 2),
    ];
    let mut report = Report::default();
    for s in scalars::<T>(&mut rng) {
        for (op, reference, ulps) in a_scalar {
            let name = format!("{op}_{}", dtype::<T>());
            let mut out = out_buffer::<T>(a.len());
            run_with_scalar(k, &name, &a, s, &mut out);
            let want = reference(&arr(&a), s);
            for i in 0..a.len() {
                report.check(
                    &name,
                    || format!("{:e}, s={s:e}", a[i]),
                    out[i],
                    want[i],
                    ulps,
                );
            }
        }
        for (op, reference, ulps) in scalar_a {
            let name = format!("{op}_{}", dtype::<T>());
            let mut out = out_buffer::<T>(a.len());
            run_with_scalar(k, &name, &a, s, &mut out);
            let want = reference(s, &arr(&a));
            for i in 0..a.len() {
                report.check(
                    &name,
                    || format!("s={s:e}, {:e}", a[i]),
                    out[i],
                    want[i],
                    ulps,
                );
            }
        }
    }
    report.finish(&format!("scalar forms {}", dtype::<T>()));
}

fn check_comparisons<T: TestFloat>(k: &Kernels) {
    let mut rng = Rng(0x4567_89ab_cdef_1234);
    let (a, b) = pairs::<T>(&mut rng);
    let ops: [(&str, fn(&Array1<T>, &Array1<T>) -> Array1<bool>); 6] = [
        ("greater", np::greater),
        ("less", np::less),
        ("greater_equal", np::greater_equal),
        ("less_equal", np::less_equal),
        ("equal", np::equal),
        ("not_equal", np::not_equal),
    ];
    let scalar_ops: [(&str, fn(&Array1<T>, T) -> Array1<bool>); 6] = [
        ("greater_scalar", np::greater_scalar),
        ("less_scalar", np::less_scalar),
        ("greater_equal_scalar", np::greater_equal_scalar),
        ("less_equal_scalar", np::less_equal_scalar),
        ("equal_scalar", np::equal_scalar),
        // Not in cpu::numpy.
        ("not_equal_scalar", |a, s| a.mapv(|x| x != s)),
    ];
    let mut report = Report::default();
    for (op, reference) in ops {
        let name = format!("{op}_{}", dtype::<T>());
        let mut out = vec![2u8; a.len()];
        run_binary(k, &name, &a, &b, &mut out);
        let want = reference(&arr(&a), &arr(&b));
        for i in 0..a.len() {
            report.check_bool(&name, || format!("{:e}, {:e}", a[i], b[i]), out[i], want[i]);
        }
    }
    for s in scalars::<T>(&mut rng) {
        for (op, reference) in scalar_ops {
            let name = format!("{op}_{}", dtype::<T>());
            let mut out = vec![2u8; a.len()];
            run_with_scalar(k, &name, &a, s, &mut out);
            let want = reference(&arr(&a), s);
            for i in 0..a.len() {
                report.check_bool(&name, || format!("{:e}, s={s:e}", a[i]), out[i], want[i]);
            }
        }
    }
    report.finish(&format!("comparisons {}", dtype::<T>()));
}

fn check_selection<T: TestFloat>(k: &Kernels) {
    let mut rng = Rng(0x5678_9abc_def1_2345);
    let (x, y) = pairs::<T>(&mut rng);
    let cond: Vec<bool> = (0..x.len()).map(|_| rng.bool()).collect();
    let n = x.len() as u64;
    let (pc, px, py) = (
        cond.as_ptr() as usize,
        x.as_ptr() as usize,
        y.as_ptr() as usize,
    );
    let mut report = Report::default();
    let sfx = dtype::<T>();

    let name = format!("where_{sfx}");
    let f: Where<T> = k.get(&name);
    let mut out = out_buffer::<T>(x.len());
    let po = out.as_mut_ptr() as usize;
    k.launch(SHAPE, || unsafe {
        f(
            n,
            pc as *const bool,
            px as *const T,
            py as *const T,
            po as *mut T,
        )
    });
    let want = np::where_(&arr(&cond), &arr(&x), &arr(&y));
    for i in 0..x.len() {
        report.check(
            &name,
            || format!("{}, {:e}, {:e}", cond[i], x[i], y[i]),
            out[i],
            want[i],
            0,
        );
    }

    for s in scalars::<T>(&mut rng).into_iter().take(6) {
        let name = format!("where_scalar_{sfx}");
        let f: WhereScalar<T> = k.get(&name);
        let mut out = out_buffer::<T>(x.len());
        let po = out.as_mut_ptr() as usize;
        k.launch(SHAPE, || unsafe {
            f(n, pc as *const bool, px as *const T, s, po as *mut T)
        });
        let want = np::where_scalar(&arr(&cond), &arr(&x), s);
        for i in 0..x.len() {
            report.check(
                &name,
                || format!("{}, {:e}, s={s:e}", cond[i], x[i]),
                out[i],
                want[i],
                0,
            );
        }

        let name = format!("mask_{sfx}");
        let f: MaskKernel<T> = k.get(&name);
        let mut out = out_buffer::<T>(x.len());
        let po = out.as_mut_ptr() as usize;
        k.launch(SHAPE, || unsafe {
            f(n, px as *const T, pc as *const bool, s, po as *mut T)
        });
        let want = np::mask(&arr(&x), &arr(&cond), s);
        for i in 0..x.len() {
            report.check(
                &name,
                || format!("{:e}, {}, value={s:e}", x[i], cond[i]),
                out[i],
                want[i],
                0,
            );
        }
    }
    report.finish(&format!("where/mask {sfx}"));
}

/// Launch shapes for the reductions: single thread, odd and power-of-two blocks, and more
/// blocks than elements.
const REDUCE_SHAPES: [(u32, u32); 5] = [(1, 1), (1, 7), (3, 5), (2, 32), (20, 3)];

/// The largest block, tried on a few inputs only: every emulated thread is an OS thread.
const LARGE_REDUCE_SHAPES: [(u32, u32); 1] = [(1, 1024)];

fn check_reductions<T: TestFloat>(k: &Kernels) {
    let mut rng = Rng(0x6789_abcd_ef12_3456);
    let sfx = dtype::<T>();
    let t = T::from_f64;
    let uniform = |rng: &mut Rng, n: usize| -> Vec<T> {
        (0..n).map(|_| t(rng.unit() * 20.0 - 10.0)).collect()
    };
    let mut inputs: Vec<(String, Vec<T>)> = vec![
        ("one".into(), vec![t(-3.5)]),
        (
            "five".into(),
            vec![t(1.0), t(-2.0), t(3.0), t(0.25), t(-0.0)],
        ),
        ("zeros".into(), vec![t(0.0), t(-0.0), t(0.0)]),
        (
            "denormals".into(),
            vec![
                T::min_positive_value() / t(4.0),
                -T::min_positive_value() / t(8.0),
            ],
        ),
    ];
    for n in [100, 1000, 4097] {
        inputs.push((format!("uniform {n}"), uniform(&mut rng, n)));
    }
    for (label, special) in [
        ("nan", T::nan()),
        ("+inf", T::infinity()),
        ("-inf", T::neg_infinity()),
    ] {
        let mut v = uniform(&mut rng, 777);
        v[(rng.next() % 777) as usize] = special;
        inputs.push((format!("uniform with {label}"), v));
    }
    let mut both_inf = uniform(&mut rng, 300);
    both_inf[10] = T::infinity();
    both_inf[250] = T::neg_infinity();
    inputs.push(("uniform with +inf and -inf".into(), both_inf));

    let mut report = Report::default();
    for (label, a) in &inputs {
        let array = arr(a);
        let abs_sum: f64 = a.iter().map(|x| x.abs().to_f64().unwrap()).sum();
        let large = label == "uniform 4097" || label == "uniform with nan";
        let shapes = REDUCE_SHAPES
            .iter()
            .chain(if large { &LARGE_REDUCE_SHAPES[..] } else { &[] });
        for &shape in shapes {
            let input = format!("{label}, grid {shape:?}");

            // The host's part: sum / min / max the partials.
            let partials = run_reduce(k, &format!("sum_{sfx}"), a, shape);
            let got = partials.iter().fold(T::zero(), |acc, &p| acc + p);
            let want = np::sum(&array);
            let bound = 4.0 * a.len() as f64 * T::epsilon_f64() * abs_sum;
            let close = (got.is_nan() && want.is_nan())
                || got == want
                || (got.is_finite()
                    && want.is_finite()
                    && (got - want).abs().to_f64().unwrap() <= bound);
            report.checked += 1;
            if !close {
                report.failures.push(format!(
                    "sum_{sfx}({input}): got {got:e}, want {want:e} (bound {bound:e})"
                ));
            }

            for (op, reference) in [
                ("min", np::min::<T> as fn(&Array1<T>) -> T),
                ("max", np::max::<T>),
            ] {
                let name = format!("{op}_{sfx}");
                let partials = run_reduce(k, &name, a, shape);
                let got = reference(&arr(&partials));
                let want = reference(&array);
                // Which of equal values (-0 / +0) wins depends on the order: compare values.
                let got = if got == T::zero() { want } else { got };
                report.check(&name, || input.clone(), got, want, 0);
            }
        }
    }

    // Empty input: every block writes the identity.
    for shape in [(1, 1), (3, 5)] {
        let sum = run_reduce::<T>(k, &format!("sum_{sfx}"), &[], shape);
        let min = run_reduce::<T>(k, &format!("min_{sfx}"), &[], shape);
        let max = run_reduce::<T>(k, &format!("max_{sfx}"), &[], shape);
        for i in 0..shape.0 as usize {
            report.check(
                &format!("sum_{sfx}"),
                || "empty".into(),
                sum[i],
                T::zero(),
                0,
            );
            report.check(
                &format!("min_{sfx}"),
                || "empty".into(),
                min[i],
                T::infinity(),
                0,
            );
            report.check(
                &format!("max_{sfx}"),
                || "empty".into(),
                max[i],
                T::neg_infinity(),
                0,
            );
        }
    }
    report.finish(&format!("reductions {sfx}"));
}

/// The elementwise kernels may write in place (`out` aliasing an input).
fn check_in_place<T: TestFloat>(k: &Kernels) {
    let mut rng = Rng(0x789a_bcde_f123_4567);
    let (a, b) = pairs::<T>(&mut rng);
    let mut report = Report::default();
    let name = format!("add_{}", dtype::<T>());
    let f: Binary<T, T> = k.get(&name);
    let mut inout = a.clone();
    let (n, pio, pb) = (
        a.len() as u64,
        inout.as_mut_ptr() as usize,
        b.as_ptr() as usize,
    );
    k.launch(SHAPE, || unsafe {
        f(n, pio as *const T, pb as *const T, pio as *mut T)
    });
    let want = np::add(&arr(&a), &arr(&b));
    for i in 0..a.len() {
        report.check(
            &format!("{name} in place"),
            || format!("{:e}, {:e}", a[i], b[i]),
            inout[i],
            want[i],
            0,
        );
    }
    let name = format!("sqrt_{}", dtype::<T>());
    let f: Unary<T> = k.get(&name);
    let mut inout = a.clone();
    let pio = inout.as_mut_ptr() as usize;
    k.launch(SHAPE, || unsafe { f(n, pio as *const T, pio as *mut T) });
    let want = np::sqrt(&arr(&a));
    for i in 0..a.len() {
        report.check(
            &format!("{name} in place"),
            || format!("{:e}", a[i]),
            inout[i],
            want[i],
            0,
        );
    }
    report.finish(&format!("in place {}", dtype::<T>()));
}

// ---- tests -----------------------------------------------------------------------------

macro_rules! dtype_tests {
    ($($test:ident => $check:ident;)*) => {$(
        #[test]
        fn $test() {
            let Some(k) = kernels() else { return };
            $check::<f32>(k);
            $check::<f64>(k);
        }
    )*};
}

dtype_tests! {
    unary_kernels_match_cpu_numpy => check_unary;
    binary_kernels_match_cpu_numpy => check_binary;
    scalar_kernels_match_cpu_numpy => check_scalar_forms;
    comparison_kernels_match_cpu_numpy => check_comparisons;
    where_and_mask_kernels_match_cpu_numpy => check_selection;
    reduction_kernels_match_cpu_numpy => check_reductions;
    elementwise_kernels_work_in_place => check_in_place;
}

#[test]
fn logical_kernels_match_cpu_numpy() {
    let Some(k) = kernels() else { return };
    let mut rng = Rng(0x89ab_cdef_1234_5678);
    let a: Vec<bool> = (0..1000).map(|_| rng.bool()).collect();
    let b: Vec<bool> = (0..1000).map(|_| rng.bool()).collect();
    let mut report = Report::default();
    let n = a.len() as u64;
    let (pa, pb) = (a.as_ptr() as usize, b.as_ptr() as usize);
    let binary: [(&str, fn(&Array1<bool>, &Array1<bool>) -> Array1<bool>); 2] = [
        ("logical_and_bool", np::logical_and),
        ("logical_or_bool", np::logical_or),
    ];
    for (name, reference) in binary {
        let f: Binary<bool, u8> = k.get(name);
        let mut out = vec![2u8; a.len()];
        let po = out.as_mut_ptr() as usize;
        k.launch(SHAPE, || unsafe {
            f(n, pa as *const bool, pb as *const bool, po as *mut u8)
        });
        let want = reference(&arr(&a), &arr(&b));
        for i in 0..a.len() {
            report.check_bool(name, || format!("{}, {}", a[i], b[i]), out[i], want[i]);
        }
    }
    let f: unsafe extern "C" fn(u64, *const bool, *mut u8) = k.get("logical_not_bool");
    let mut out = vec![2u8; a.len()];
    let po = out.as_mut_ptr() as usize;
    k.launch(SHAPE, || unsafe { f(n, pa as *const bool, po as *mut u8) });
    let want = np::logical_not(&arr(&a));
    for i in 0..a.len() {
        report.check_bool("logical_not_bool", || a[i].to_string(), out[i], want[i]);
    }
    report.finish("logical");
}

#[test]
fn the_grid_emulation_visits_every_thread_once() {
    let Some(k) = kernels() else { return };
    // A launch of 3 x 5 threads calls the body 15 times, each from a distinct thread for
    // blocks of several threads.
    let count = std::sync::atomic::AtomicUsize::new(0);
    k.launch((3, 5), || {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(count.into_inner(), 15);
}

// ---- the ndarray module's op table -----------------------------------------------------

/// The `F` among two functions of different types (the table's f32 and f64 forms).
fn pick<F: Copy + 'static>(a: &dyn std::any::Any, b: &dyn std::any::Any) -> F {
    *a.downcast_ref::<F>()
        .or_else(|| b.downcast_ref::<F>())
        .expect("a function for this dtype")
}

/// Kernels whose arithmetic is exact in IEEE (no libm call): they must match bit for bit.
const EXACT: &[&str] = &[
    "floor", "ceil", "round", "trunc", "fract", "abs", "signum", "recip", "sqrt", "pow2", "neg",
    "powi", "clamp",
];

fn check_ndarray_table<T: TestFloat>(k: &Kernels) {
    use annotated_libs::ndarray::host_checks::{host_checks, HostCheck, SelectForms};
    let mut rng = Rng(0x5a5a_1234_0f0f_9876);
    let a = singles::<T>(&mut rng);
    let (pa, pb) = pairs::<T>(&mut rng);
    let ss = scalars::<T>(&mut rng);
    // Transcendentals within 2 ulp, except cbrt: the C library's cbrt and the one
    // Rust's `f64::cbrt` calls differ by up to 3 ulp.
    let ulps = |kernel: &str| match kernel {
        k if EXACT.contains(&k) => 0,
        "cbrt" => 4,
        _ => 2,
    };
    let mut report = Report::default();
    let mut kernels_checked = 0;
    for check in host_checks() {
        kernels_checked += 1;
        match check {
            HostCheck::Unary { kernel, f32, f64 } => {
                let f: fn(&Array1<T>) -> Array1<T> = pick(&f32, &f64);
                let name = format!("{kernel}_{}", dtype::<T>());
                let mut out = out_buffer::<T>(a.len());
                run_unary(k, &name, &a, &mut out);
                let want = f(&arr(&a));
                for i in 0..a.len() {
                    report.check(
                        &name,
                        || format!("{:e}", a[i]),
                        out[i],
                        want[i],
                        ulps(kernel),
                    );
                }
            }
            HostCheck::Param {
                kernel,
                integer,
                f32,
                f64,
            } => {
                let f: fn(&Array1<T>, f64) -> Array1<T> = pick(&f32, &f64);
                let name = format!("{kernel}_{}", dtype::<T>());
                let params: Vec<f64> = if integer {
                    vec![0.0, 1.0, 2.0, 3.0, 7.0, -1.0, -2.0, -5.0, 31.0, -31.0]
                } else {
                    vec![0.5, 2.0, 3.0, -1.5, 10.0, 0.0, f64::INFINITY, f64::NAN]
                };
                for p in params {
                    let mut out = out_buffer::<T>(a.len());
                    let (n, a_ptr, o_ptr) = (
                        a.len() as u64,
                        a.as_ptr() as usize,
                        out.as_mut_ptr() as usize,
                    );
                    if integer {
                        let kf: unsafe extern "C" fn(u64, *const T, i32, *mut T) = k.get(&name);
                        k.launch(SHAPE, || unsafe {
                            kf(n, a_ptr as *const T, p as i32, o_ptr as *mut T)
                        });
                    } else {
                        let kf: WithScalar<T, T> = k.get(&name);
                        let pt = T::from_f64(p);
                        k.launch(SHAPE, || unsafe {
                            kf(n, a_ptr as *const T, pt, o_ptr as *mut T)
                        });
                    }
                    let want = f(&arr(&a), p);
                    for i in 0..a.len() {
                        report.check(
                            &name,
                            || format!("{:e}, {p}", a[i]),
                            out[i],
                            want[i],
                            ulps(kernel),
                        );
                    }
                }
            }
            HostCheck::Param2 { kernel, f32, f64 } => {
                let f: fn(&Array1<T>, T, T) -> Array1<T> = pick(&f32, &f64);
                let name = format!("{kernel}_{}", dtype::<T>());
                let kf: unsafe extern "C" fn(u64, *const T, T, T, *mut T) = k.get(&name);
                for (lo, hi) in [
                    (-1.0, 1.0),
                    (0.0, 0.0),
                    (-1e3, 2.5),
                    (f64::NEG_INFINITY, 0.0),
                ] {
                    let (lo, hi) = (T::from_f64(lo), T::from_f64(hi));
                    let mut out = out_buffer::<T>(a.len());
                    let (n, a_ptr, o_ptr) = (
                        a.len() as u64,
                        a.as_ptr() as usize,
                        out.as_mut_ptr() as usize,
                    );
                    k.launch(SHAPE, || unsafe {
                        kf(n, a_ptr as *const T, lo, hi, o_ptr as *mut T)
                    });
                    let want = f(&arr(&a), lo, hi);
                    for i in 0..a.len() {
                        report.check(&name, || format!("{:e}", a[i]), out[i], want[i], 0);
                    }
                }
            }
            HostCheck::Arithmetic {
                kernels,
                f32,
                f32_scalar,
                f64,
                f64_scalar,
            } => {
                let f: fn(&Array1<T>, &Array1<T>) -> Array1<T> = pick(&f32, &f64);
                let (fs, sf): (
                    fn(&Array1<T>, T) -> Array1<T>,
                    fn(T, &Array1<T>) -> Array1<T>,
                ) = pick(&f32_scalar, &f64_scalar);
                let name = format!("{}_{}", kernels[0], dtype::<T>());
                let mut out = out_buffer::<T>(pa.len());
                run_binary(k, &name, &pa, &pb, &mut out);
                let want = f(&arr(&pa), &arr(&pb));
                for i in 0..pa.len() {
                    report.check(
                        &name,
                        || format!("{:e}, {:e}", pa[i], pb[i]),
                        out[i],
                        want[i],
                        0,
                    );
                }
                for &s in &ss {
                    let name = format!("{}_{}", kernels[1], dtype::<T>());
                    let mut out = out_buffer::<T>(a.len());
                    run_with_scalar(k, &name, &a, s, &mut out);
                    let want = fs(&arr(&a), s);
                    for i in 0..a.len() {
                        report.check(&name, || format!("{:e}, {s:e}", a[i]), out[i], want[i], 0);
                    }
                    let name = format!("{}_{}", kernels[2], dtype::<T>());
                    run_with_scalar(k, &name, &a, s, &mut out);
                    let want = sf(s, &arr(&a));
                    for i in 0..a.len() {
                        report.check(&name, || format!("{s:e}, {:e}", a[i]), out[i], want[i], 0);
                    }
                }
            }
            HostCheck::Compare {
                kernels,
                f32,
                f32_scalar,
                f64,
                f64_scalar,
            } => {
                let f: fn(&Array1<T>, &Array1<T>) -> Array1<bool> = pick(&f32, &f64);
                let fs: fn(&Array1<T>, T) -> Array1<bool> = pick(&f32_scalar, &f64_scalar);
                let name = format!("{}_{}", kernels[0], dtype::<T>());
                let mut out = vec![2u8; pa.len()];
                run_binary(k, &name, &pa, &pb, &mut out);
                let want = f(&arr(&pa), &arr(&pb));
                for i in 0..pa.len() {
                    report.check_bool(
                        &name,
                        || format!("{:e}, {:e}", pa[i], pb[i]),
                        out[i],
                        want[i],
                    );
                }
                let name = format!("{}_{}", kernels[1], dtype::<T>());
                for &s in &ss {
                    let mut out = vec![2u8; a.len()];
                    run_with_scalar(k, &name, &a, s, &mut out);
                    let want = fs(&arr(&a), s);
                    for i in 0..a.len() {
                        report.check_bool(&name, || format!("{:e}, {s:e}", a[i]), out[i], want[i]);
                    }
                }
            }
            HostCheck::Select { f32, f64 } => {
                kernels_checked -= 1; // hand-written in ndarray.cuh, not a table line
                let (both, array_scalar, scalar_array, scalars): SelectForms<T> = pick(&f32, &f64);
                let cond: Vec<bool> = (0..pa.len()).map(|_| rng.bool()).collect();
                let (n, pc, px, py) = (
                    pa.len() as u64,
                    cond.as_ptr() as usize,
                    pa.as_ptr() as usize,
                    pb.as_ptr() as usize,
                );
                let name = format!("select_{}", dtype::<T>());
                let kf: Where<T> = k.get(&name);
                let mut out = out_buffer::<T>(pa.len());
                let po = out.as_mut_ptr() as usize;
                k.launch(SHAPE, || unsafe {
                    kf(
                        n,
                        pc as *const bool,
                        px as *const T,
                        py as *const T,
                        po as *mut T,
                    )
                });
                let want = both(&arr(&cond), &arr(&pa), &arr(&pb));
                for i in 0..pa.len() {
                    report.check(
                        &name,
                        || format!("{}, {:e}, {:e}", cond[i], pa[i], pb[i]),
                        out[i],
                        want[i],
                        0,
                    );
                }
                for &s in &ss {
                    // select_scalar: cond ? x : s; scalar_select: cond ? s : y (launched as (cond, y, s)).
                    for (form, want) in [
                        ("select_scalar", array_scalar(&arr(&cond), &arr(&pa), s)),
                        ("scalar_select", scalar_array(&arr(&cond), s, &arr(&pa))),
                    ] {
                        let name = format!("{form}_{}", dtype::<T>());
                        let kf: WhereScalar<T> = k.get(&name);
                        let mut out = out_buffer::<T>(pa.len());
                        let po = out.as_mut_ptr() as usize;
                        k.launch(SHAPE, || unsafe {
                            kf(n, pc as *const bool, px as *const T, s, po as *mut T)
                        });
                        for i in 0..pa.len() {
                            report.check(
                                &name,
                                || format!("{}, {:e}, {s:e}", cond[i], pa[i]),
                                out[i],
                                want[i],
                                0,
                            );
                        }
                    }
                    // select_scalars: cond ? s : t, with t every other scalar in turn.
                    for &t in &ss {
                        let name = format!("select_scalars_{}", dtype::<T>());
                        let kf: WhereScalars<T> = k.get(&name);
                        let mut out = out_buffer::<T>(cond.len());
                        let po = out.as_mut_ptr() as usize;
                        k.launch(SHAPE, || unsafe {
                            kf(n, pc as *const bool, s, t, po as *mut T)
                        });
                        let want = scalars(&arr(&cond), s, t);
                        for i in 0..cond.len() {
                            report.check(
                                &name,
                                || format!("{}, {s:e}, {t:e}", cond[i]),
                                out[i],
                                want[i],
                                0,
                            );
                        }
                    }
                }
            }
            HostCheck::Logical { kernel, f } => {
                let x: Vec<bool> = (0..1000).map(|_| rng.bool()).collect();
                let y: Vec<bool> = (0..1000).map(|_| rng.bool()).collect();
                let name = format!("{kernel}_bool");
                let mut out = vec![2u8; x.len()];
                let kf: Binary<bool, u8> = k.get(&name);
                let (n, px, py, po) = (
                    x.len() as u64,
                    x.as_ptr() as usize,
                    y.as_ptr() as usize,
                    out.as_mut_ptr() as usize,
                );
                k.launch(SHAPE, || unsafe {
                    kf(n, px as *const bool, py as *const bool, po as *mut u8)
                });
                let want = f(&arr(&x), &arr(&y));
                for i in 0..x.len() {
                    report.check_bool(&name, || format!("{}, {}", x[i], y[i]), out[i], want[i]);
                }
            }
        }
    }
    // One check per line the table generated into the source: no kernel goes unchecked.
    let code = annotated_libs::ndarray::BACH_KERNELS.code;
    let table_lines = code[code.find("the op table's lines follow").expect("marker")..]
        .lines()
        .filter(|l| l.starts_with("BACH_ND_"))
        .count();
    assert_eq!(
        kernels_checked, table_lines,
        "one host check per kernel line"
    );
    report.finish(&format!("ndarray table {}", dtype::<T>()));
}

#[test]
fn ndarray_table_kernels_match_the_cpu_functions() {
    let Some(k) = ndarray_kernels() else { return };
    check_ndarray_table::<f32>(k);
    check_ndarray_table::<f64>(k);
}

/// Every kernel the ndarray module's annotations launch is an entry point of its
/// source as NVRTC compiles it (PTX for sm_90; no GPU needed). Skips without NVRTC,
/// unless `BACH_REQUIRE_NVRTC=1`.
#[test]
fn ndarray_kernels_compile_with_nvrtc() {
    use annotated_libs::ndarray::host_checks::{host_checks, HostCheck};
    let ptx = match bach_runtime::compile_to_ptx(&annotated_libs::ndarray::BACH_KERNELS, 9, 0) {
        Ok(ptx) => ptx,
        Err(bach_runtime::Error::DeviceUnavailable(reason))
            if std::env::var("BACH_REQUIRE_NVRTC").as_deref() != Ok("1") =>
        {
            eprintln!("skipping: {reason}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let mut names: Vec<String> = vec!["sum_f32".into(), "sum_f64".into()];
    names.push("not_bool".into());
    let floats = |k: &str| [format!("{k}_f32"), format!("{k}_f64")];
    for check in host_checks() {
        match check {
            HostCheck::Unary { kernel, .. }
            | HostCheck::Param { kernel, .. }
            | HostCheck::Param2 { kernel, .. } => names.extend(floats(kernel)),
            HostCheck::Arithmetic { kernels, .. } => {
                kernels.iter().for_each(|k| names.extend(floats(k)))
            }
            HostCheck::Compare { kernels, .. } => {
                kernels.iter().for_each(|k| names.extend(floats(k)))
            }
            HostCheck::Logical { kernel, .. } => names.push(format!("{kernel}_bool")),
            HostCheck::Select { .. } => ["select", "select_scalar", "scalar_select"]
                .iter()
                .for_each(|k| names.extend(floats(k))),
        }
    }
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !ptx.contains(&format!(".entry {n}(")))
        .collect();
    assert!(
        missing.is_empty(),
        "kernels missing from the PTX: {missing:?}"
    );
    eprintln!("{} ndarray kernels compiled", names.len());
}

/// A number no other call in this process has had: the host libraries of
/// tests running at once in one process get distinct names.
fn unique() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
