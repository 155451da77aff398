//! The one error type of the runtime.

/// Everything that can go wrong when Bach plans or runs a task graph.
///
/// Stubs never fail when they record a call (they keep the CPU function's
/// signature); problems found while recording are kept in the graph and
/// reported by the `evaluate` that needs the call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two split arguments of one call, or of one stage, have different element counts.
    #[error(
        "`{op}`: argument {arg} has {found} elements, but the call splits {expected} elements"
    )]
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
    #[error("{context}: the handle belongs to graph {handle_graph}, not to graph {graph}")]
    ForeignGraph {
        /// Where it was used (`evaluate` or the name of the annotated function).
        context: String,
        /// The graph the handle was recorded in.
        handle_graph: u64,
        /// The graph it was used with.
        graph: u64,
    },
    /// An annotated function panicked.
    #[error("`{op}` panicked: {message}")]
    Panic {
        /// The annotated function.
        op: &'static str,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// A reduction without identity (min, max) over zero elements, as NumPy refuses it.
    #[error("`{op}`: zero-size array to reduction operation which has no identity")]
    EmptyReduction {
        /// The annotated function (or split type) that reduced.
        op: &'static str,
    },
    /// An annotated function returned a piece whose length does not match its input piece:
    /// the function does not honour the split type it is annotated with.
    #[error("`{op}` returned {found} elements for a piece of {expected}: its split annotation does not hold")]
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
    #[error("internal error (a bug in Bach, a split type or a device): expected {0}")]
    Internal(String),
    /// A device allocation did not fit.
    #[error("device out of memory: {requested} bytes requested, {free} bytes free")]
    DeviceOutOfMemory {
        /// Bytes asked for.
        requested: usize,
        /// Bytes free on the device at the time.
        free: usize,
    },
    /// A device was required (`BACH_DEVICE=gpu`) but none can be used.
    #[error("device unavailable: {0}")]
    DeviceUnavailable(String),
    /// A device operation failed (a driver call, a module that will not
    /// load, a launch, a transfer).
    #[error("device error: {0}")]
    Device(String),
    /// The worker threads could not be started.
    #[error("cannot start the worker threads: {0}")]
    ThreadPool(String),
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
