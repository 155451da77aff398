//! DBSCAN on a device: the epsilon-neighbourhoods by tiles of row blocks, core
//! points, connected components, border points and noise, with no `n x n`
//! buffer anywhere.
//!
//! The rows are cut into blocks sized from the device's free memory; every
//! pass runs the kernels of `kernels/dbscan.cu` over pairs of blocks (a query
//! block against a candidate block, both uploaded; one block when all rows
//! fit), so inputs larger than the device are paged through it:
//!
//! 1. `dbscan_count`: each row's neighbours (itself included); the host marks
//!    the core points (at least `min_samples`).
//! 2. `dbscan_union` over the pairs of core points (each unordered pair once:
//!    candidate blocks from the query block on), then `dbscan_compress`: a
//!    union-find whose roots are each component's smallest core point.
//! 3. `dbscan_border` (only when some point is not core): each non-core point
//!    takes the smallest root among its core neighbours; none makes it noise.
//!
//! The labels are linfa's exactly, not only up to renaming: linfa's scan seeds
//! each cluster from its smallest core point, numbers clusters in that order,
//! and a border point joins the first cluster whose expansion reaches it,
//! which is the one with the smallest seed among its core neighbours'. The
//! squared distances are linfa's bit for bit (a sequential sum of
//! `diff * diff` in feature order, without fused multiply-adds), compared with
//! `< eps^2` as linfa does.
//!
//! Device memory: `8 n` bytes (core flags and the union-find) plus two blocks
//! of rows and a count per block row. Every launch carries a host stand-in
//! (`reference`) computing the same thing, which the simulated device runs in
//! its place.

use bach_runtime::{Device, DeviceBuffer, KernelArg, KernelSource, Launch, LaunchShape};
use ndarray::{Array1, ArrayBase, ArrayView2, Data, Ix2};

use super::{check_finite, DbscanError, DbscanParams};

/// The CUDA source of the DBSCAN kernels (`kernels/dbscan.cu`, after `common.cuh`).
pub const DBSCAN_KERNELS: KernelSource = KernelSource {
    name: "dbscan.cu",
    code: concat!(
        include_str!("../../../kernels/common.cuh"),
        include_str!("../../../kernels/dbscan.cu")
    ),
};

/// Rows per side of the kernels' tiles (`BACH_DBSCAN_TILE`).
pub const TILE: usize = 32;
/// Threads per tile: the launch covers `tiles * TILE_THREADS` elements.
pub const TILE_THREADS: usize = 256;

/// Why device DBSCAN failed.
#[derive(Debug)]
pub enum DeviceDbscanError {
    /// The input is invalid (as for the CPU path).
    Input(DbscanError),
    /// The device failed (out of memory for even one row, a launch, a transfer).
    Device(bach_runtime::Error),
}

impl std::fmt::Display for DeviceDbscanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceDbscanError::Input(e) => write!(f, "{e}"),
            DeviceDbscanError::Device(e) => write!(f, "device DBSCAN: {e}"),
        }
    }
}

impl std::error::Error for DeviceDbscanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DeviceDbscanError::Input(e) => Some(e),
            DeviceDbscanError::Device(e) => Some(e),
        }
    }
}

impl From<DbscanError> for DeviceDbscanError {
    fn from(e: DbscanError) -> Self {
        DeviceDbscanError::Input(e)
    }
}

impl From<bach_runtime::Error> for DeviceDbscanError {
    fn from(e: bach_runtime::Error) -> Self {
        DeviceDbscanError::Device(e)
    }
}

/// Rows per block for `n` rows of `d` features in `free` bytes of device
/// memory: all rows when they fit, else as many as two blocks (and their
/// counts) allow beside the `8 n` bytes of per-point state, a multiple of the
/// tile when at least one tile fits. `None`: not even one row fits.
pub fn block_rows(n: usize, d: usize, free: usize) -> Option<usize> {
    let fixed = 8 * n;
    let per_row = 2 * 8 * d.max(1) + 4;
    let rows = free.checked_sub(fixed)? / per_row;
    match rows {
        0 => None,
        r if r >= n => Some(n),
        r if r >= TILE => Some(r / TILE * TILE),
        r => Some(r),
    }
}

/// DBSCAN labels of the rows of `x` computed on `dev` (scikit-learn's labels,
/// `-1` for noise; the same as [`super::eager::dbscan_linear`]).
pub fn dbscan<S: Data<Elem = f64>>(
    dev: &dyn Device,
    x: &ArrayBase<S, Ix2>,
    params: DbscanParams,
) -> Result<Array1<i64>, DeviceDbscanError> {
    let (n, d) = x.dim();
    check_finite(x)?;
    if i32::try_from(n).is_err() || i32::try_from(d).is_err() {
        return Err(DbscanError::TooManyRows(n).into());
    }
    if n == 0 || d == 0 {
        // linfa: no features build no index, and every point is noise.
        return Ok(Array1::from_elem(n, -1));
    }
    let rows = block_rows(n, d, dev.free_memory()).ok_or_else(|| {
        bach_runtime::Error::DeviceOutOfMemory {
            requested: 8 * n + 16 * d + 4,
            free: dev.free_memory(),
        }
    })?;
    let x = x.as_standard_layout();
    let run = Run {
        dev,
        x: x.view(),
        d,
        rows,
        eps2: params.eps_squared(),
    };

    // 1. Neighbour counts, and the core points.
    let mut counts = vec![0i32; n];
    for q in run.blocks() {
        let xq = run.upload_rows(&q)?;
        let out = run.upload_ints(&vec![0; q.len()])?;
        run.for_candidates(&q, &xq, |_| true, |c, xc| run.count(&q, c, &xq, xc, &out))?;
        counts[q.clone()].copy_from_slice(&run.download_ints(&out, q.len())?);
    }
    let core: Vec<i32> = counts
        .iter()
        .map(|&c| i32::from(c as usize >= params.min_samples()))
        .collect();
    let core_buf = run.upload_ints(&core)?;

    // 2. Components of the core points: each unordered pair once, so only
    // candidate blocks that reach past the query block's start.
    let parent = run.upload_ints(&(0..n as i32).collect::<Vec<_>>())?;
    for q in run.blocks() {
        let xq = run.upload_rows(&q)?;
        run.for_candidates(
            &q,
            &xq,
            |c| c.end > q.start,
            |c, xc| run.unite(&q, c, &xq, xc, &core_buf, &parent),
        )?;
    }
    run.compress(n, &parent)?;
    let root = run.download_ints(&parent, n)?;

    // 3. Border points: the smallest root among their core neighbours.
    let mut owner = vec![i32::MAX; n];
    if core.contains(&1) {
        for q in run.blocks() {
            if !core[q.clone()].contains(&0) {
                continue;
            }
            let xq = run.upload_rows(&q)?;
            let out = run.upload_ints(&vec![i32::MAX; q.len()])?;
            run.for_candidates(
                &q,
                &xq,
                |_| true,
                |c, xc| run.border(&q, c, &xq, xc, &core_buf, &parent, &out),
            )?;
            owner[q.clone()].copy_from_slice(&run.download_ints(&out, q.len())?);
        }
    }
    dev.synchronize()?;
    Ok(labels(&core, &root, &owner))
}

/// scikit-learn's labels from the device's results: clusters numbered by their
/// root (smallest core point) in ascending order, as linfa numbers them; a
/// non-core point takes its owner's cluster, or `-1`.
fn labels(core: &[i32], root: &[i32], owner: &[i32]) -> Array1<i64> {
    let n = core.len();
    let mut id = vec![-1i64; n];
    let mut next = 0;
    for i in 0..n {
        if core[i] == 1 && root[i] as usize == i {
            id[i] = next;
            next += 1;
        }
    }
    Array1::from_shape_fn(n, |i| match (core[i], owner[i]) {
        (1, _) => id[root[i] as usize],
        (_, i32::MAX) => -1,
        (_, r) => id[r as usize],
    })
}

/// One device DBSCAN: the device, the rows, the block size and `eps^2`.
struct Run<'r> {
    dev: &'r dyn Device,
    x: ArrayView2<'r, f64>,
    d: usize,
    rows: usize,
    eps2: f64,
}

type Rows = std::ops::Range<usize>;

/// A launch's host stand-in: the input buffers' bytes in, the outputs' bytes out
/// (what `bach_runtime::Launch::reference` holds).
type HostStandIn<'b> = dyn Fn(&[&[u8]]) -> bach_runtime::Result<Vec<Vec<u8>>> + Sync + 'b;

/// The squared distance of two rows as linfa's `L2Dist::rdistance` computes it
/// (and the kernels do): `diff * diff` summed in feature order.
fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = 0.0;
    for (x, y) in a.iter().zip(b) {
        let diff = x - y;
        acc += diff * diff;
    }
    acc
}

fn f64s(bytes: &[u8], len: usize) -> Vec<f64> {
    bytes[..len * 8]
        .chunks_exact(8)
        .map(|c| f64::from_ne_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

fn ints(bytes: &[u8], len: usize) -> Vec<i32> {
    bytes[..len * 4]
        .chunks_exact(4)
        .map(|c| i32::from_ne_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

fn int_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// The root of `x` in a union-find whose parents point to smaller indices.
fn find(parent: &[i32], mut x: usize) -> usize {
    while parent[x] as usize != x {
        x = parent[x] as usize;
    }
    x
}

/// The host stand-in of `dbscan_union`'s hooking: the larger root under the smaller.
fn unite(parent: &mut [i32], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    let (lo, hi) = (ra.min(rb), ra.max(rb));
    parent[hi] = lo as i32;
}

impl Run<'_> {
    fn blocks(&self) -> Vec<Rows> {
        let n = self.x.nrows();
        (0..n)
            .step_by(self.rows)
            .map(|s| s..(s + self.rows).min(n))
            .collect()
    }

    fn upload_rows(&self, r: &Rows) -> bach_runtime::Result<DeviceBuffer> {
        let rows = self.x.slice(ndarray::s![r.clone(), ..]);
        let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let buf = self.dev.alloc(bytes.len())?;
        self.dev.upload(&bytes, &buf)?;
        Ok(buf)
    }

    fn upload_ints(&self, v: &[i32]) -> bach_runtime::Result<DeviceBuffer> {
        let buf = self.dev.alloc(v.len() * 4)?;
        self.dev.upload(&int_bytes(v), &buf)?;
        Ok(buf)
    }

    fn download_ints(&self, buf: &DeviceBuffer, len: usize) -> bach_runtime::Result<Vec<i32>> {
        let mut bytes = vec![0u8; len * 4];
        self.dev.download(buf, &mut bytes)?;
        Ok(ints(&bytes, len))
    }

    /// Calls `f` for every candidate block that `wanted` accepts, uploading
    /// each (the query block's buffer `xq` serves for itself) and freeing it
    /// before the next, so at most two blocks are on the device.
    fn for_candidates(
        &self,
        q: &Rows,
        xq: &DeviceBuffer,
        wanted: impl Fn(&Rows) -> bool,
        mut f: impl FnMut(&Rows, &DeviceBuffer) -> bach_runtime::Result<()>,
    ) -> bach_runtime::Result<()> {
        for c in self.blocks().iter().filter(|c| wanted(c)) {
            if c == q {
                f(c, xq)?;
            } else {
                let xc = self.upload_rows(c)?;
                f(c, &xc)?;
            }
        }
        Ok(())
    }

    /// Elements of a tile launch over `q` x `c`.
    fn tile_elements(q: &Rows, c: &Rows) -> usize {
        q.len().div_ceil(TILE) * c.len().div_ceil(TILE) * TILE_THREADS
    }

    /// Calls `f(i, j)` for every pair of query row `i` and candidate row `j`
    /// (numbered within their blocks) closer than eps, from the blocks' bytes.
    fn near_pairs(
        &self,
        q: &Rows,
        c: &Rows,
        xq: &[u8],
        xc: &[u8],
        mut f: impl FnMut(usize, usize),
    ) {
        let d = self.d;
        let (xq, xc) = (f64s(xq, q.len() * d), f64s(xc, c.len() * d));
        for i in 0..q.len() {
            for j in 0..c.len() {
                if sq_dist(&xq[i * d..(i + 1) * d], &xc[j * d..(j + 1) * d]) < self.eps2 {
                    f(i, j);
                }
            }
        }
    }

    /// The tile kernels' leading arguments: the blocks, their sizes, `d`, `eps^2`.
    fn tile_args<'b>(
        &self,
        q: &Rows,
        c: &Rows,
        xq: &'b DeviceBuffer,
        xc: &'b DeviceBuffer,
    ) -> Vec<KernelArg<'b>> {
        vec![
            KernelArg::In(xq),
            KernelArg::In(xc),
            KernelArg::I32(q.len() as i32),
            KernelArg::I32(c.len() as i32),
            KernelArg::I32(self.d as i32),
            KernelArg::F64(self.eps2),
        ]
    }

    /// `dbscan_count_f64`: `counts[i] +=` the candidates near query row `i`.
    fn count(
        &self,
        q: &Rows,
        c: &Rows,
        xq: &DeviceBuffer,
        xc: &DeviceBuffer,
        counts: &DeviceBuffer,
    ) -> bach_runtime::Result<()> {
        let mut args = self.tile_args(q, c, xq, xc);
        args.extend([KernelArg::In(counts), KernelArg::Out(counts)]);
        let reference = |b: &[&[u8]]| {
            let mut counts = ints(b[2], q.len());
            self.near_pairs(q, c, b[0], b[1], |i, _| counts[i] += 1);
            Ok(vec![int_bytes(&counts)])
        };
        self.launch(
            "dbscan_count_f64",
            Self::tile_elements(q, c),
            args,
            &reference,
        )
    }

    /// `dbscan_union_f64`: unites the core points of each near pair (candidate after query).
    fn unite(
        &self,
        q: &Rows,
        c: &Rows,
        xq: &DeviceBuffer,
        xc: &DeviceBuffer,
        core: &DeviceBuffer,
        parent: &DeviceBuffer,
    ) -> bach_runtime::Result<()> {
        let n = self.x.nrows();
        let mut args = self.tile_args(q, c, xq, xc);
        args.extend([
            KernelArg::I32(q.start as i32),
            KernelArg::I32(c.start as i32),
            KernelArg::In(core),
            KernelArg::In(parent),
            KernelArg::Out(parent),
        ]);
        let reference = |b: &[&[u8]]| {
            let core = ints(b[2], n);
            let mut parent = ints(b[3], n);
            self.near_pairs(q, c, b[0], b[1], |i, j| {
                let (a, b) = (q.start + i, c.start + j);
                if b > a && core[a] == 1 && core[b] == 1 {
                    unite(&mut parent, a, b);
                }
            });
            Ok(vec![int_bytes(&parent)])
        };
        self.launch(
            "dbscan_union_f64",
            Self::tile_elements(q, c),
            args,
            &reference,
        )
    }

    /// `dbscan_compress`: every point's parent becomes its root.
    fn compress(&self, n: usize, parent: &DeviceBuffer) -> bach_runtime::Result<()> {
        let reference = |b: &[&[u8]]| {
            let parent = ints(b[0], n);
            let roots: Vec<i32> = (0..n).map(|i| find(&parent, i) as i32).collect();
            Ok(vec![int_bytes(&roots)])
        };
        self.launch(
            "dbscan_compress",
            n,
            vec![KernelArg::In(parent), KernelArg::Out(parent)],
            &reference,
        )
    }

    /// `dbscan_border_f64`: each non-core query row's smallest root among its core neighbours.
    #[allow(clippy::too_many_arguments)]
    fn border(
        &self,
        q: &Rows,
        c: &Rows,
        xq: &DeviceBuffer,
        xc: &DeviceBuffer,
        core: &DeviceBuffer,
        root: &DeviceBuffer,
        owner: &DeviceBuffer,
    ) -> bach_runtime::Result<()> {
        let n = self.x.nrows();
        let mut args = self.tile_args(q, c, xq, xc);
        args.extend([
            KernelArg::I32(q.start as i32),
            KernelArg::I32(c.start as i32),
            KernelArg::In(core),
            KernelArg::In(root),
            KernelArg::In(owner),
            KernelArg::Out(owner),
        ]);
        let reference = |b: &[&[u8]]| {
            let (core, root) = (ints(b[2], n), ints(b[3], n));
            let mut owner = ints(b[4], q.len());
            self.near_pairs(q, c, b[0], b[1], |i, j| {
                let (a, b) = (q.start + i, c.start + j);
                if core[a] == 0 && core[b] == 1 {
                    owner[i] = owner[i].min(root[b]);
                }
            });
            Ok(vec![int_bytes(&owner)])
        };
        self.launch(
            "dbscan_border_f64",
            Self::tile_elements(q, c),
            args,
            &reference,
        )
    }

    fn launch(
        &self,
        kernel: &str,
        n: usize,
        args: Vec<KernelArg<'_>>,
        reference: &HostStandIn<'_>,
    ) -> bach_runtime::Result<()> {
        self.dev.launch(&Launch {
            source: DBSCAN_KERNELS,
            kernel: kernel.into(),
            n,
            shape: LaunchShape::Elementwise,
            args,
            reference,
        })
    }
}
