//! One layer's weights as Deep Compression stores them (Han, Mao & Dally 2016, Figure 3): the
//! kept weights in row-major order, each as an index into the layer's codebook and its gap (the
//! zeros skipped since the previous entry). A gap too large for `gap_bits` bits is bridged by a
//! padding entry: a zero (index 0) at the largest gap. Indices and gaps are then Huffman coded.

use serde::{Deserialize, Serialize};

use super::huffman::{code_lengths, coded_bits, decode, encode, pack_lengths, unpack_lengths};
use crate::format::compact_array;
use crate::weights::{Csr, Encoding, Weights};

/// Widest indices: a codebook holds at most `2^16 - 1` values (index 0 is the zero).
pub const MAX_BITS: u32 = 16;
/// Widest gaps the writer tries: a wider one only saves padding entries of layers sparser than
/// one weight in 4,096.
const MAX_GAP_BITS: u32 = 12;

/// What the file's metadata says of a layer's streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerCoding {
    /// Width of an index bit-packed: `codebook + 1 <= 2^bits`.
    pub bits: u32,
    /// Width of a gap: gaps run from 0 to `2^gap_bits - 1`.
    pub gap_bits: u32,
    /// Entries in the streams, padding entries included.
    pub entries: usize,
}

/// A layer's arrays in the file.
pub struct CodedLayer {
    pub coding: LayerCoding,
    pub codebook: Vec<f32>,
    /// Huffman code length of each index (`codebook + 1` of them) as stored (see
    /// `pack_lengths`), and the coded indices.
    pub index_lengths: Vec<u8>,
    pub indices: Vec<u8>,
    /// Huffman code length of each gap (`2^gap_bits`) as stored, and the coded gaps.
    pub gap_lengths: Vec<u8>,
    pub gaps: Vec<u8>,
}

/// What each stage of Deep Compression leaves of a layer's weights, in bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSize {
    pub name: String,
    pub weights: usize,
    pub nonzero: usize,
    /// Every weight as f32.
    pub dense_bytes: usize,
    /// After pruning: what the sparse file stores (CSR: f32 values, u16 or u32 columns, u32 row
    /// offsets; or dense above half the weights kept).
    pub sparse_bytes: usize,
    /// After quantization: the codebook (f16 where its values are, else f32), and each entry's
    /// index and gap bit-packed.
    pub quantized_bytes: usize,
    /// After Huffman coding: the codebook, both code-length tables and both coded streams.
    pub coded_bytes: usize,
    pub codebook: usize,
    pub bits: u32,
    pub gap_bits: u32,
    /// Padding zeros among the entries.
    pub padding: usize,
}

impl CodedLayer {
    /// The layer's weights coded with the gap width that makes them smallest. An error says
    /// why they cannot be coded (more distinct values than a codebook holds).
    pub fn encode(name: &str, weights: &Weights) -> Result<(CodedLayer, LayerSize), String> {
        let (rows, cols) = (weights.rows(), weights.cols());
        let dense = weights.to_dense();
        let kept: Vec<(usize, f32)> = dense.iter().copied().enumerate().filter(|(_, v)| *v != 0.0).collect();
        let mut codebook: Vec<f32> = kept.iter().map(|(_, v)| *v).collect();
        codebook.sort_by(f32::total_cmp);
        codebook.dedup_by(|a, b| a.to_bits() == b.to_bits());
        if codebook.len() >= 1 << MAX_BITS {
            return Err(format!(
                "holds {} distinct weights, more than a codebook's {} (weight sharing, method = \"kmeans\", leaves at most 2^bits)",
                codebook.len(),
                (1 << MAX_BITS) - 1
            ));
        }
        let index_of = |v: f32| codebook.binary_search_by(|c| c.total_cmp(&v)).expect("every value is in") as u32 + 1;
        let bits = (u32::BITS - (codebook.len() as u32).leading_zeros()).max(1);
        let mut best: Option<(usize, CodedLayer, usize, usize)> = None;
        for gap_bits in 1..=MAX_GAP_BITS {
            let (indices, gaps) = entries(&kept, gap_bits, index_of);
            let index_counts = counts(&indices, codebook.len() + 1);
            let gap_counts = counts(&gaps, 1 << gap_bits);
            let (index_lengths, gap_lengths) = (code_lengths(&index_counts), code_lengths(&gap_counts));
            let (index_table, gap_table) = (pack_lengths(&index_lengths), pack_lengths(&gap_lengths));
            let coded = coded_bits(&index_counts, &index_lengths).div_ceil(8) as usize
                + coded_bits(&gap_counts, &gap_lengths).div_ceil(8) as usize
                + index_table.len()
                + gap_table.len();
            if best.as_ref().is_some_and(|(size, ..)| *size <= coded) {
                continue;
            }
            let packed = (indices.len() * (bits + gap_bits) as usize).div_ceil(8);
            let layer = CodedLayer {
                coding: LayerCoding { bits, gap_bits, entries: indices.len() },
                codebook: codebook.clone(),
                indices: encode(&indices, &index_lengths),
                index_lengths: index_table,
                gaps: encode(&gaps, &gap_lengths),
                gap_lengths: gap_table,
            };
            best = Some((coded, layer, packed, indices.len() - kept.len()));
        }
        let (_, layer, packed, padding) = best.expect("at least one gap width is tried");
        let column_bytes = if cols <= 1 << 16 { 2 } else { 4 };
        // As the file stores it: f16 where every shared value is one.
        let codebook_bytes = compact_array(String::new(), &codebook).3.len();
        let size = LayerSize {
            name: name.to_string(),
            weights: dense.len(),
            nonzero: kept.len(),
            dense_bytes: 4 * dense.len(),
            sparse_bytes: match weights.encoding() {
                Encoding::Csr => (4 + column_bytes) * kept.len() + 4 * (rows + 1),
                Encoding::Dense => 4 * dense.len(),
            },
            quantized_bytes: codebook_bytes + packed,
            coded_bytes: codebook_bytes
                + layer.index_lengths.len()
                + layer.indices.len()
                + layer.gap_lengths.len()
                + layer.gaps.len(),
            codebook: codebook.len(),
            bits,
            gap_bits: layer.coding.gap_bits,
            padding,
        };
        Ok((layer, size))
    }

    /// The `rows x cols` weights these arrays code, kept as `encoding`; an error names the
    /// array at fault (as the file's suffix: `codebook`, `indices`, ...) and what is wrong.
    pub fn decode(&self, rows: usize, cols: usize, encoding: Encoding) -> Result<Weights, (&'static str, String)> {
        let LayerCoding { bits, gap_bits, entries } = self.coding;
        let coding = "coding";
        for (field, value) in [("bits", bits), ("gap_bits", gap_bits)] {
            if !(1..=MAX_BITS).contains(&value) {
                return Err((coding, format!("{field} is {value}, outside 1..={MAX_BITS}")));
            }
        }
        let size = rows.checked_mul(cols).ok_or((coding, format!("{rows} x {cols} weights overflow")))?;
        if entries > size {
            return Err((coding, format!("{entries} entries for a layer of {size} weights")));
        }
        let codebook = self.codebook.len();
        if codebook + 1 > 1 << bits {
            return Err(("codebook", format!("has {codebook} values, {bits} bits index at most {}", (1 << bits) - 1)));
        }
        // One length for the padding zero and each shared value: no index can point past them.
        let index_lengths = unpack_lengths(&self.index_lengths, codebook + 1).map_err(|e| {
            (
                "index_lengths",
                format!(
                    "{e}: one for index 0 and each of the codebook's {codebook} values (an index past the codebook)"
                ),
            )
        })?;
        let gap_lengths = unpack_lengths(&self.gap_lengths, 1 << gap_bits)
            .map_err(|e| ("gap_lengths", format!("{e}: {gap_bits}-bit gaps")))?;
        let indices = decode(&self.indices, &index_lengths, entries).map_err(|e| ("indices", e))?;
        let gaps = decode(&self.gaps, &gap_lengths, entries).map_err(|e| ("gaps", e))?;
        let mut csr = Csr { rows, cols, row_offsets: vec![0; rows + 1], columns: Vec::new(), values: Vec::new() };
        let mut position = 0usize;
        for (entry, (&index, &gap)) in indices.iter().zip(&gaps).enumerate() {
            let at = position
                .checked_add(gap as usize)
                .filter(|&at| at < size)
                .ok_or_else(|| ("gaps", format!("entry {entry} lies past the layer's {rows} x {cols} weights")))?;
            position = at + 1;
            if index == 0 {
                continue; // padding
            }
            let value = *self.codebook.get(index as usize - 1).ok_or_else(|| {
                ("indices", format!("entry {entry} has index {index}, past the codebook of {codebook} values"))
            })?;
            csr.row_offsets[at / cols + 1] += 1;
            csr.columns.push((at % cols) as u32);
            csr.values.push(value);
        }
        for r in 0..rows {
            csr.row_offsets[r + 1] += csr.row_offsets[r];
        }
        Ok(Weights::Csr(csr).with_encoding(encoding))
    }
}

/// Each kept weight's index and gap, with a padding zero wherever a gap needs more than
/// `gap_bits` bits.
fn entries(kept: &[(usize, f32)], gap_bits: u32, index_of: impl Fn(f32) -> u32) -> (Vec<u32>, Vec<u32>) {
    let largest = (1usize << gap_bits) - 1;
    let (mut indices, mut gaps) = (Vec::with_capacity(kept.len()), Vec::with_capacity(kept.len()));
    let mut position = 0usize;
    for &(at, value) in kept {
        while at - position > largest {
            indices.push(0);
            gaps.push(largest as u32);
            position += largest + 1;
        }
        indices.push(index_of(value));
        gaps.push((at - position) as u32);
        position = at + 1;
    }
    (indices, gaps)
}

fn counts(symbols: &[u32], alphabet: usize) -> Vec<u64> {
    let mut counts = vec![0u64; alphabet];
    symbols.iter().for_each(|&s| counts[s as usize] += 1);
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_too_wide_for_its_bits_is_bridged_by_padding_zeros() {
        // Weights at 0 and 9 of 12; 2-bit gaps reach 3 zeros, so 8 zeros take two paddings.
        let kept = [(0, 0.5), (9, -0.5)];
        let (indices, gaps) = entries(&kept, 2, |v| if v > 0.0 { 2 } else { 1 });
        assert_eq!(indices, vec![2, 0, 0, 1]);
        assert_eq!(gaps, vec![0, 3, 3, 0]);
        let (index_counts, gap_counts) = (counts(&indices, 3), counts(&gaps, 4));
        let (index_lengths, gap_lengths) = (code_lengths(&index_counts), code_lengths(&gap_counts));
        let layer = CodedLayer {
            coding: LayerCoding { bits: 2, gap_bits: 2, entries: 4 },
            codebook: vec![-0.5, 0.5],
            indices: encode(&indices, &index_lengths),
            index_lengths: pack_lengths(&index_lengths),
            gaps: encode(&gaps, &gap_lengths),
            gap_lengths: pack_lengths(&gap_lengths),
        };
        let mut expected = vec![0.0; 12];
        (expected[0], expected[9]) = (0.5, -0.5);
        assert_eq!(layer.decode(3, 4, Encoding::Csr).unwrap().to_dense(), expected);
    }
}
