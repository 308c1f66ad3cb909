//! Progress of the loops a user waits on outside training (sweep points, sensitivity
//! evaluations, compared backends, benchmark measurements): an `indicatif` bar with the
//! position, elapsed time and ETA in a terminal, and a plain line per step when stdout is not a
//! terminal or with `--plain`, so that logs and CI show it too.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Steps {
    label: String,
    total: u64,
    started: Instant,
    bar: Option<ProgressBar>,
    done: Mutex<u64>,
}

impl Steps {
    /// `total` steps of `label`; `plain` forces lines even in a terminal.
    pub fn start(label: &str, total: usize, plain: bool) -> Steps {
        let bar = (!plain && std::io::stdout().is_terminal()).then(|| {
            let style = ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len}  {elapsed} elapsed, ETA {eta}")
                .expect("a valid template")
                .progress_chars("=> ");
            let bar = ProgressBar::new(total as u64).with_style(style).with_message(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        Steps { label: label.to_string(), total: total as u64, started: Instant::now(), bar, done: Mutex::new(0) }
    }

    /// One step done; `what` says which: above the bar, or in the plain line.
    pub fn step(&self, what: &str) {
        let mut done = self.done.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *done += 1;
        match &self.bar {
            Some(bar) => {
                if !what.is_empty() {
                    bar.println(what);
                }
                bar.inc(1);
            }
            None => {
                let elapsed = self.started.elapsed().as_secs_f64();
                let eta = elapsed / *done as f64 * self.total.saturating_sub(*done) as f64;
                let what = if what.is_empty() { String::new() } else { format!(": {what}") };
                println!("{} {}/{} ({elapsed:.0} s elapsed, ETA {eta:.0} s){what}", self.label, *done, self.total);
            }
        }
    }
}

impl Steps {
    /// One step done whose line says all a log needs (a benchmark's row): above the bar, or
    /// as it is.
    pub fn show(&self, line: &str) {
        match &self.bar {
            Some(bar) => {
                bar.println(line);
                bar.inc(1);
            }
            None => println!("{line}"),
        }
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
