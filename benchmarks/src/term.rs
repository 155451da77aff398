//! What the binaries write to stderr besides errors: logs (`tracing`, filtered
//! by `RUST_LOG` or `-v`) and progress bars (drawn only when stderr is a
//! terminal). Log lines are written with the progress bar lifted, so they do
//! not tear it.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The progress bar on screen, if any (one at a time).
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `f` with the progress bar on screen, if any, lifted off it: for
/// printing lines (to stdout or stderr) while a bar is drawn.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// A progress bar on stderr, hidden when stderr is not a terminal (so that
/// redirected output and logs stay clean). Not drawn before [`Bar::show`];
/// cleared when dropped.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar of `len` steps drawn with the indicatif `template`, whose
    /// `{prefix}` is `prefix`.
    pub fn new(len: u64, template: &str, prefix: String) -> Bar {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let style = ProgressStyle::with_template(template)
            .expect("a valid progress bar template")
            .progress_chars("#>-");
        let bar = ProgressBar::with_draw_target(Some(len), target)
            .with_style(style)
            .with_prefix(prefix);
        Bar { bar }
    }

    /// The indicatif bar (position, message). Changing it draws it.
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }

    /// Draws the bar from now on, redrawn every 200 ms so that its clock
    /// moves during a long step; [`suspend`] lifts it from now on.
    pub fn show(&self) {
        let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        if active.is_none() {
            *active = Some(self.bar.clone());
            if !self.bar.is_hidden() {
                self.bar.enable_steady_tick(Duration::from_millis(200));
            }
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The log filter for `-v` given `verbosity` times: warnings and errors of
/// everything; with -v (info), -vv (debug), -vvv (trace) more of
/// `bach_runtime` and `benchmarks`.
pub fn filter_for(verbosity: u8) -> String {
    let level = match verbosity {
        0 => return "warn".into(),
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    format!("warn,bach_runtime={level},benchmarks={level}")
}

/// `verbosity` as the flag that gives it to a child process (`-vv`), if any.
pub fn verbosity_flag(verbosity: u8) -> Option<String> {
    (verbosity > 0).then(|| format!("-{}", "v".repeat(verbosity.into())))
}

/// Stderr, with the progress bar lifted while a log line is written.
#[derive(Debug, Clone, Copy)]
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The fmt layer writes each event with one `write_all`.
        suspend(|| std::io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        *self
    }
}

/// Installs the log subscriber: `tracing` events to stderr, filtered by
/// `RUST_LOG` when it is set and not empty, else by [`filter_for`]`(verbosity)`.
/// A `RUST_LOG` that does not parse is reported (one warning) and ignored.
pub fn init_logging(verbosity: u8) {
    let mut bad = None;
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => match EnvFilter::builder().parse(&s) {
            Ok(f) => f,
            Err(e) => {
                bad = Some(format!(
                    "ignoring RUST_LOG={s:?} ({e}); using {:?}",
                    filter_for(verbosity)
                ));
                EnvFilter::new(filter_for(verbosity))
            }
        },
        _ => EnvFilter::new(filter_for(verbosity)),
    };
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .is_ok();
    if let Some(msg) = bad {
        if installed {
            tracing::warn!("{msg}");
        } else {
            eprintln!("warning: {msg}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_filters() {
        assert_eq!(filter_for(0), "warn");
        assert_eq!(filter_for(1), "warn,bach_runtime=info,benchmarks=info");
        assert_eq!(filter_for(2), "warn,bach_runtime=debug,benchmarks=debug");
        assert_eq!(filter_for(3), "warn,bach_runtime=trace,benchmarks=trace");
        assert_eq!(filter_for(9), filter_for(3));
        for v in 0..5 {
            assert!(EnvFilter::builder().parse(filter_for(v)).is_ok());
        }
        assert_eq!(verbosity_flag(0), None);
        assert_eq!(verbosity_flag(2).as_deref(), Some("-vv"));
    }

    #[test]
    fn hidden_bar_and_suspend() {
        // Test output is not a terminal: the bar is hidden; suspend still runs.
        let bar = Bar::new(3, "{prefix} {pos}/{len}", "test".into());
        bar.show();
        bar.bar().inc(1);
        assert_eq!(suspend(|| 7), 7);
        drop(bar);
        assert_eq!(suspend(|| 8), 8);
    }
}
