//! Helpers the prune tests share.

use burn::prelude::Device;

/// `draw` right after seeding `device`'s generator, which the tests running at the same time
/// share: without the lock, another test's draws could come in between and change the values.
pub fn seeded<T>(device: &Device, seed: u64, draw: impl FnOnce() -> T) -> T {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    draw()
}
