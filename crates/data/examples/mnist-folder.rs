//! Writes the MNIST of an IDX directory as an image folder, `OUT/train/<digit>/*.png` and
//! `OUT/test/<digit>/*.png`, the layout `data.dataset = "folder"` reads:
//!
//! ```sh
//! cargo run --release --example mnist-folder -- datasets/mnist datasets/mnist-png
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use coppice_data::{MnistSplit, load_mnist, write_image_folder};

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [mnist, out] = args.as_slice() else {
        eprintln!("usage: mnist-folder MNIST_DIR OUT_DIR");
        return ExitCode::FAILURE;
    };
    let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    for (split, name) in [(MnistSplit::Train, "train"), (MnistSplit::Test, "test")] {
        let written = load_mnist(mnist, split).and_then(|set| {
            write_image_folder(&set, &digits, &out.join(name))?;
            Ok(set.len())
        });
        match written {
            Ok(n) => println!("{}: {n} images", out.join(name).display()),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
