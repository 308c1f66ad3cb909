//! Stops a user asks for while coppice runs: SIGINT (Ctrl-C), SIGTERM, and "stop the training"
//! on burn-train's terminal screen.
//!
//! A stop during training ends the training at the next step and leaves the run as it was after
//! its last completed epoch, which `--resume` goes on from: [`fit`](crate::fit) returns
//! [`TrainError::Interrupted`](crate::TrainError::Interrupted). A stop while nothing trains (a
//! pruning round's surgery, an evaluation) exits at once: what was under way is redone on resume
//! anyway. A second stop always exits at once.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use burn::train::Interrupter;

/// What stopped a training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// A signal, by number (2 for SIGINT, 15 for SIGTERM).
    Signal(i32),
    /// "Stop the training" on burn-train's terminal screen.
    Screen,
}

impl StopCause {
    /// The exit status of a process stopped this way, as shells report a signal: 128 + its
    /// number; a stop from the screen counts as Ctrl-C.
    pub fn exit_code(self) -> u8 {
        match self {
            StopCause::Signal(signal) => (128 + signal).clamp(0, 255) as u8,
            StopCause::Screen => 130,
        }
    }
}

#[derive(Default)]
struct State {
    /// The interrupter of the training under way.
    training: Option<Interrupter>,
    /// Named in the line printed when a stop exits at once.
    run_dir: Option<PathBuf>,
}

static STATE: Mutex<State> = Mutex::new(State { training: None, run_dir: None });
/// The first signal received, or 0.
static SIGNALLED: AtomicI32 = AtomicI32::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Handles SIGINT and SIGTERM from now on (the binary calls this once, first thing). Without
/// it, a signal ends the process the default way.
pub fn handle_signals() -> std::io::Result<()> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    std::thread::Builder::new().name("coppice-signals".into()).spawn(move || {
        for signal in signals.forever() {
            let first = SIGNALLED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst).is_ok();
            if !(first && stop_training()) {
                eprintln!("{}", interrupted_line(None, run_dir().as_deref()));
                std::process::exit(StopCause::Signal(signal).exit_code().into());
            }
        }
    })?;
    Ok(())
}

/// The run that a stop leaves to resume, named when a stop exits at once.
pub fn set_run_dir(dir: Option<PathBuf>) {
    state().run_dir = dir;
}

/// Stops the training under way as a signal or the screen does, through burn-train's
/// interrupter: it ends after its current step. False when no training runs.
pub fn stop_training() -> bool {
    match &state().training {
        Some(training) => {
            training.stop(Some("stop requested"));
            true
        }
        None => false,
    }
}

/// The run directory set last.
pub fn run_dir() -> Option<PathBuf> {
    state().run_dir.clone()
}

/// The signal that asked to stop, if one did.
pub fn signalled() -> Option<i32> {
    match SIGNALLED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// The one line a stopped run prints: where it stopped and how to go on.
pub fn interrupted_line(epochs: Option<usize>, run_dir: Option<&std::path::Path>) -> String {
    let at = match epochs {
        Some(0) => "interrupted before completing an epoch".to_string(),
        Some(epochs) => format!("interrupted after epoch {epochs}"),
        None => "interrupted".to_string(),
    };
    match run_dir {
        Some(dir) => format!("{at}; resume with `coppice run --resume {}`", dir.display()),
        None => at,
    }
}

/// While it lives, a stop ends this training through `interrupter`.
pub(crate) struct Training {
    /// Ends the thread that keeps Ctrl-C working on burn-train's screen.
    screen_done: Option<Arc<AtomicBool>>,
}

impl Training {
    pub(crate) fn start(interrupter: &Interrupter, screen: bool) -> Training {
        state().training = Some(interrupter.clone());
        if signalled().is_some() {
            interrupter.stop(Some("signal"));
        }
        let screen_done = screen.then(|| {
            let done = Arc::new(AtomicBool::new(false));
            let until = done.clone();
            std::thread::spawn(move || {
                while !until.load(Ordering::Relaxed) {
                    terminal_signals_on();
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
            done
        });
        Training { screen_done }
    }
}

impl Drop for Training {
    fn drop(&mut self) {
        state().training = None;
        if let Some(done) = &self.screen_done {
            done.store(true, Ordering::Relaxed);
        }
    }
}

/// burn-train's screen puts the terminal in raw mode, where Ctrl-C is a key instead of SIGINT,
/// and the screen itself ignores it. Turning the terminal's signal keys back on (ISIG) while it
/// shows makes Ctrl-C stop the training as it does without the screen.
fn terminal_signals_on() {
    #[cfg(unix)]
    {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return;
        }
        // SAFETY: tcgetattr and tcsetattr only read and write the termios struct given, for the
        // terminal on file descriptor 0, which is open for the process's life.
        unsafe {
            let mut termios: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut termios) == 0 && termios.c_lflag & libc::ISIG == 0 {
                termios.c_lflag |= libc::ISIG;
                libc::tcsetattr(0, libc::TCSANOW, &termios);
            }
        }
    }
}
