//! A layer's weight matrix, stored as compressed sparse rows or dense.

/// How a layer's weights are kept, in memory and in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Compressed sparse rows: for each output unit, the non-zero weights and their columns.
    Csr,
    /// Every weight, zeros included, row-major.
    Dense,
}

/// Below this share of non-zero weights a layer is stored as CSR; above it dense. CSR spends 6
/// bytes per kept weight (f32 value, u16 column) against dense's 4 per weight, so it is smaller
/// below 2/3. Its speed crosses the dense engine's at about 0.25 for one image and about 0.5 for
/// batches of 64 and 1000 (`bench/sparse-libs`, a 784 x 300 layer): a batch is where speed
/// matters more, so the line is drawn at one half.
pub const CSR_BELOW_DENSITY: f64 = 0.5;

/// A `rows x cols` matrix; rows are output units (neurons or filters), columns their inputs (for a
/// convolution, input channel x kernel row x kernel column, in that order).
#[derive(Clone, Debug, PartialEq)]
pub enum Weights {
    Csr(Csr),
    Dense(Dense),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Csr {
    pub rows: usize,
    pub cols: usize,
    /// Row `r`'s entries are `row_offsets[r]..row_offsets[r + 1]` of `columns` and `values`.
    pub row_offsets: Vec<u32>,
    pub columns: Vec<u32>,
    pub values: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f32>,
}

impl Weights {
    /// `values` row-major, `rows x cols`. Zeros are dropped from CSR; `-0.0` counts as zero.
    pub fn from_dense(rows: usize, cols: usize, values: Vec<f32>, encoding: Encoding) -> Weights {
        assert_eq!(values.len(), rows * cols, "a {rows}x{cols} matrix has {} values", rows * cols);
        match encoding {
            Encoding::Dense => Weights::Dense(Dense { rows, cols, values }),
            Encoding::Csr => {
                let mut csr = Csr { rows, cols, row_offsets: vec![0], columns: Vec::new(), values: Vec::new() };
                for row in values.chunks(cols.max(1)).take(rows) {
                    for (c, &v) in row.iter().enumerate() {
                        if v != 0.0 {
                            csr.columns.push(c as u32);
                            csr.values.push(v);
                        }
                    }
                    csr.row_offsets.push(csr.values.len() as u32);
                }
                Weights::Csr(csr)
            }
        }
    }

    /// CSR below [`CSR_BELOW_DENSITY`], dense otherwise.
    pub fn best(rows: usize, cols: usize, values: Vec<f32>) -> Weights {
        let nonzero = values.iter().filter(|v| **v != 0.0).count();
        let density = nonzero as f64 / values.len().max(1) as f64;
        let encoding = if density < CSR_BELOW_DENSITY { Encoding::Csr } else { Encoding::Dense };
        Weights::from_dense(rows, cols, values, encoding)
    }

    pub fn rows(&self) -> usize {
        match self {
            Weights::Csr(m) => m.rows,
            Weights::Dense(m) => m.rows,
        }
    }

    pub fn cols(&self) -> usize {
        match self {
            Weights::Csr(m) => m.cols,
            Weights::Dense(m) => m.cols,
        }
    }

    pub fn encoding(&self) -> Encoding {
        match self {
            Weights::Csr(_) => Encoding::Csr,
            Weights::Dense(_) => Encoding::Dense,
        }
    }

    pub fn nonzero(&self) -> usize {
        match self {
            Weights::Csr(m) => m.values.iter().filter(|v| **v != 0.0).count(),
            Weights::Dense(m) => m.values.iter().filter(|v| **v != 0.0).count(),
        }
    }

    /// Row-major, zeros included.
    pub fn to_dense(&self) -> Vec<f32> {
        match self {
            Weights::Dense(m) => m.values.clone(),
            Weights::Csr(m) => {
                let mut out = vec![0.0; m.rows * m.cols];
                for r in 0..m.rows {
                    for e in m.row_offsets[r] as usize..m.row_offsets[r + 1] as usize {
                        out[r * m.cols + m.columns[e] as usize] = m.values[e];
                    }
                }
                out
            }
        }
    }

    /// Whether the arrays make a `rows x cols` matrix; if not, the array at fault (as the file
    /// names it: `row_offsets`, `columns`, `values`, `weight`) and what is wrong. The kernels
    /// index by these arrays, so a model is checked before it runs.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        match self {
            Weights::Dense(m) if Some(m.values.len()) != m.rows.checked_mul(m.cols) => {
                Err(("weight", format!("has {} values for {} x {}", m.values.len(), m.rows, m.cols)))
            }
            Weights::Dense(_) => Ok(()),
            Weights::Csr(m) => {
                let offsets = &m.row_offsets;
                if Some(offsets.len()) != m.rows.checked_add(1) {
                    // As u128: `rows + 1` must not wrap in the message either.
                    let need = m.rows as u128 + 1;
                    return Err(("row_offsets", format!("has {} values, {} rows need {need}", offsets.len(), m.rows)));
                }
                if offsets[0] != 0 || offsets.windows(2).any(|w| w[0] > w[1]) {
                    return Err(("row_offsets", "must start at 0 and never decrease".into()));
                }
                let entries = offsets[m.rows] as usize;
                if m.values.len() != entries || m.columns.len() != entries {
                    let found = format!("{} values and {} columns", m.values.len(), m.columns.len());
                    return Err(("values", format!("{found}, the row offsets end at {entries}")));
                }
                match m.columns.iter().find(|&&c| c as usize >= m.cols) {
                    Some(bad) => Err(("columns", format!("holds column {bad}, but the layer has {} inputs", m.cols))),
                    None => Ok(()),
                }
            }
        }
    }

    pub fn with_encoding(&self, encoding: Encoding) -> Weights {
        if self.encoding() == encoding {
            return self.clone();
        }
        Weights::from_dense(self.rows(), self.cols(), self.to_dense(), encoding)
    }
}
