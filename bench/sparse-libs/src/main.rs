//! One LeNet-300-100 layer (784 inputs -> 300 outputs) with a random share of its weights kept,
//! multiplied by a batch of inputs in three libraries: coppice-sparse (CSR and dense), sprs and
//! faer. Prints the median time of alternating runs, in microseconds.
//!
//! cargo run --release --manifest-path bench/sparse-libs/Cargo.toml

use std::time::Instant;

use coppice_sparse::{Encoding, Layer, Model, Weights};

const ROWS: usize = 300;
const COLS: usize = 784;

fn main() {
    println!("density  batch  coppice-csr  coppice-dense     sprs     faer   (us, median)");
    for density in [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7] {
        for batch in [1, 64, 1000] {
            row(density, batch);
        }
    }
}

fn row(density: f64, batch: usize) {
    let mut seed = 0x2545f4914f6cdd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let dense: Vec<f32> =
        (0..ROWS * COLS).map(|_| if next() < density { (next() * 2.0 - 1.0) as f32 } else { 0.0 }).collect();
    let inputs: Vec<f32> = (0..batch * COLS).map(|_| next() as f32).collect();
    let model = |encoding| {
        let weights = Weights::from_dense(ROWS, COLS, dense.clone(), encoding);
        let layer = Layer::Linear { name: "fc1".into(), weights, bias: vec![0.0; ROWS], relu: false };
        Model::new([1, 1, COLS], None, vec![layer]).unwrap()
    };
    let (csr, dense_model) = (model(Encoding::Csr), model(Encoding::Dense));

    // sprs and faer take the inputs as a [COLS, batch] matrix (one column per image), as a
    // sparse-times-dense product needs them.
    let triplets: Vec<(usize, usize, f32)> =
        (0..ROWS).flat_map(|r| (0..COLS).map(move |c| (r, c))).filter_map(|(r, c)| {
            let v = dense[r * COLS + c];
            (v != 0.0).then_some((r, c, v))
        }).collect();
    let mut tri = sprs::TriMat::new((ROWS, COLS));
    for &(r, c, v) in &triplets {
        tri.add_triplet(r, c, v);
    }
    let sprs_matrix: sprs::CsMat<f32> = tri.to_csr();
    let columns = ndarray::Array2::from_shape_fn((COLS, batch), |(k, b)| inputs[b * COLS + k]);
    let faer_matrix = faer::sparse::SparseColMat::<u32, f32>::try_new_from_triplets(
        ROWS,
        COLS,
        &triplets.iter().map(|&(r, c, v)| faer::sparse::Triplet::new(r as u32, c as u32, v)).collect::<Vec<_>>(),
    )
    .unwrap();
    let faer_inputs = faer::Mat::<f32>::from_fn(COLS, batch, |k, b| inputs[b * COLS + k]);
    let mut faer_out = faer::Mat::<f32>::zeros(ROWS, batch);

    let mut timers: Vec<Box<dyn FnMut() -> f64>> = vec![
        Box::new(|| time(|| drop(csr.forward(&inputs, batch).unwrap()))),
        Box::new(|| time(|| drop(dense_model.forward(&inputs, batch).unwrap()))),
        Box::new(|| time(|| drop(&sprs_matrix * &columns))),
        Box::new(|| {
            time(|| {
                faer::sparse::linalg::matmul::sparse_dense_matmul(
                    faer_out.as_mut(),
                    faer::Accum::Replace,
                    faer_matrix.as_ref(),
                    faer_inputs.as_ref(),
                    1.0,
                    faer::get_global_parallelism(),
                )
            })
        }),
    ];
    let repeats = if batch == 1 { 2001 } else if batch < 100 { 201 } else { 31 };
    let mut times = vec![Vec::new(); timers.len()];
    for _ in 0..repeats {
        for (timer, t) in timers.iter_mut().zip(&mut times) {
            t.push(timer());
        }
    }
    let median = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2] * 1e6
    };
    let m: Vec<f64> = times.iter_mut().map(median).collect();
    println!("{density:>7}  {batch:>5}  {:>11.1}  {:>13.1}  {:>7.1}  {:>7.1}", m[0], m[1], m[2], m[3]);
}

fn time(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}
