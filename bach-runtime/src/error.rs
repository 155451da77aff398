//! The one error type of the runtime.

use std::sync::Arc;

/// The error an annotated function returned, as [`Error::Call`] carries it:
/// shared, so that [`Error`] stays `Clone`.
pub type CallSource = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong when Bach plans or runs a task graph.
///
/// Stubs never fail when they record a call (they keep the CPU function's
/// signature); problems found while recording are kept in the graph and
/// reported by the `evaluate` that needs the call.
///
/// `Display`, `std::error::Error` and `PartialEq` are written out below rather
/// than derived: [`Error::source`](std::error::Error::source) of
/// [`Error::Call`] must be the annotated function's own error (so that
/// callers can downcast it), not the `Arc` holding it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// An annotated function that returns `Result<T, E>` returned `Err` (for
    /// any of its batches). `source` is its `E`: downcast it with
    /// `source.downcast_ref::<E>()`, or through
    /// [`std::error::Error::source`]. Nothing of the evaluation is returned.
    Call {
        /// The annotated function.
        op: &'static str,
        /// The error it returned.
        source: CallSource,
    },
    /// Two split arguments of one call, or of one stage, have different element counts.
    LengthMismatch {
        /// The annotated function.
        op: &'static str,
        /// Position of the offending argument.
        arg: usize,
        /// Element count of the other split arguments.
        expected: usize,
        /// Element count of this argument.
        found: usize,
    },
    /// A handle recorded in one graph was used with another graph.
    ForeignGraph {
        /// Where it was used (`evaluate` or the name of the annotated function).
        context: String,
        /// The graph the handle was recorded in.
        handle_graph: u64,
        /// The graph it was used with.
        graph: u64,
    },
    /// An annotated function panicked.
    Panic {
        /// The annotated function.
        op: &'static str,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// A reduction without identity (min, max) over zero elements, as NumPy refuses it.
    EmptyReduction {
        /// The annotated function (or split type) that reduced.
        op: &'static str,
    },
    /// An annotated function returned a piece whose length does not match its input piece:
    /// the function does not honour the split type it is annotated with.
    PieceLength {
        /// The annotated function.
        op: &'static str,
        /// Elements in the input piece.
        expected: usize,
        /// Elements it returned.
        found: usize,
    },
    /// An invariant of the runtime does not hold: a bug in Bach, in a split
    /// type or in a device implementation (the message says what was expected).
    Internal(String),
    /// A device allocation did not fit.
    DeviceOutOfMemory {
        /// Bytes asked for.
        requested: usize,
        /// Bytes free on the device at the time.
        free: usize,
    },
    /// A device was required (`BACH_DEVICE=gpu`) but none can be used.
    DeviceUnavailable(String),
    /// A device operation failed (a driver call, a module that will not
    /// load, a launch, a transfer).
    Device(String),
    /// The worker threads could not be started.
    ThreadPool(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Call { op, source } => write!(f, "`{op}` failed: {source}"),
            Error::LengthMismatch {
                op,
                arg,
                expected,
                found,
            } => write!(
                f,
                "`{op}`: argument {arg} has {found} elements, but the call splits {expected} elements"
            ),
            Error::ForeignGraph {
                context,
                handle_graph,
                graph,
            } => write!(
                f,
                "{context}: the handle belongs to graph {handle_graph}, not to graph {graph}"
            ),
            Error::Panic { op, message } => write!(f, "`{op}` panicked: {message}"),
            Error::EmptyReduction { op } => write!(
                f,
                "`{op}`: zero-size array to reduction operation which has no identity"
            ),
            Error::PieceLength {
                op,
                expected,
                found,
            } => write!(
                f,
                "`{op}` returned {found} elements for a piece of {expected}: its split annotation does not hold"
            ),
            Error::Internal(expected) => write!(
                f,
                "internal error (a bug in Bach, a split type or a device): expected {expected}"
            ),
            Error::DeviceOutOfMemory { requested, free } => write!(
                f,
                "device out of memory: {requested} bytes requested, {free} bytes free"
            ),
            Error::DeviceUnavailable(reason) => write!(f, "device unavailable: {reason}"),
            Error::Device(message) => write!(f, "device error: {message}"),
            Error::ThreadPool(message) => write!(f, "cannot start the worker threads: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The function's own error, not the `Arc`: it downcasts to `E`.
            Error::Call { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

/// Two [`Error::Call`]s are equal when they carry the same error value (the
/// same `Arc`): a function's error type need not be `PartialEq`. Every other
/// variant compares its fields.
impl PartialEq for Error {
    fn eq(&self, other: &Error) -> bool {
        use Error::*;
        match (self, other) {
            (Call { op, source }, Call { op: o, source: s }) => op == o && Arc::ptr_eq(source, s),
            (
                LengthMismatch {
                    op,
                    arg,
                    expected,
                    found,
                },
                LengthMismatch {
                    op: o,
                    arg: a,
                    expected: e,
                    found: f,
                },
            ) => (op, arg, expected, found) == (o, a, e, f),
            (
                ForeignGraph {
                    context,
                    handle_graph,
                    graph,
                },
                ForeignGraph {
                    context: c,
                    handle_graph: h,
                    graph: g,
                },
            ) => (context, handle_graph, graph) == (c, h, g),
            (Panic { op, message }, Panic { op: o, message: m }) => (op, message) == (o, m),
            (EmptyReduction { op }, EmptyReduction { op: o }) => op == o,
            (
                PieceLength {
                    op,
                    expected,
                    found,
                },
                PieceLength {
                    op: o,
                    expected: e,
                    found: f,
                },
            ) => (op, expected, found) == (o, e, f),
            (Internal(a), Internal(b)) => a == b,
            (
                DeviceOutOfMemory { requested, free },
                DeviceOutOfMemory {
                    requested: r,
                    free: f,
                },
            ) => (requested, free) == (r, f),
            (DeviceUnavailable(a), DeviceUnavailable(b)) => a == b,
            (Device(a), Device(b)) => a == b,
            (ThreadPool(a), ThreadPool(b)) => a == b,
            _ => false,
        }
    }
}

/// The result of a fallible annotated function as the runtime's: `Err(e)`
/// becomes [`Error::Call`] naming the function `op` (used by generated code).
pub fn call_result<T, E>(op: &'static str, result: std::result::Result<T, E>) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    result.map_err(|e| Error::Call {
        op,
        source: Arc::new(e),
    })
}

impl Error {
    /// An [`Error::Internal`] saying what was expected.
    pub(crate) fn internal(expected: impl Into<String>) -> Error {
        Error::Internal(expected.into())
    }
}

/// `Result` with Bach's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs user code (an annotated function, a split type), turning a panic into
/// [`Error::Panic`] named by `op` (called only on a panic): a panic never
/// escapes `evaluate`.
pub(crate) fn guard<R>(
    op: impl FnOnce() -> &'static str,
    f: impl FnOnce() -> Result<R>,
) -> Result<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let message = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "non-string panic payload".to_string()
            };
            Err(Error::Panic { op: op(), message })
        }
    }
}
