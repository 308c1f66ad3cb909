//! Classifies one image with a model exported by `coppice export RUN_DIR --format sparse`:
//! `cargo run --release -p coppice-sparse --example classify -- MODEL IMAGE`, where IMAGE holds
//! the raw 8-bit pixels of one image (784 bytes for MNIST).
use coppice_sparse::Model;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (model_path, image_path) = (args.get(1).ok_or("MODEL missing")?, args.get(2).ok_or("IMAGE missing")?);
    let model = Model::load(model_path)?;
    let mut image: Vec<f32> = std::fs::read(image_path)?.iter().map(|&p| p as f32 / 255.0).collect();
    model.normalize(&mut image); // (pixel - mean) / std, as in training; the file holds both
    let logits = model.forward(&image, 1)?;
    let class = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).ok_or("no classes")?;
    println!("class {class} (logits {logits:.2?})");
    Ok(())
}
