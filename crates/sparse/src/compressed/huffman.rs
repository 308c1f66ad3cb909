//! Canonical Huffman codes over small alphabets (a layer's codebook indices, its gaps), written
//! as one code length per symbol and a bit stream, most significant bit first. The decoder
//! checks everything a crafted file could get wrong and says which; it never panics.
//!
//! coppice codes these itself (docs/sparse.md says which crates were weighed and why not): the
//! one for arbitrary symbols stores no canonical code and decodes damaged bits quietly, the
//! others code bytes, where a 16-bit codebook needs 65,537 symbols.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Longest code the decoder accepts; Huffman codes of the streams a network gives stay far
/// below (a length of `n` needs a symbol about `1.6^n` times rarer than the most common).
pub const MAX_LENGTH: u8 = 32;

/// A code length per symbol (0: the symbol does not occur) for these counts: Huffman's, or
/// where that would exceed [`MAX_LENGTH`], the same length for every occurring symbol.
pub fn code_lengths(counts: &[u64]) -> Vec<u8> {
    let mut lengths = vec![0u8; counts.len()];
    let used: Vec<usize> = (0..counts.len()).filter(|&s| counts[s] > 0).collect();
    if used.len() <= 1 {
        // One symbol still takes a bit, so that a stream's length says how many it holds.
        used.iter().for_each(|&s| lengths[s] = 1);
        return lengths;
    }
    // Nodes 0..n are the symbols; later ones join two earlier ones.
    let mut parent: Vec<usize> = vec![usize::MAX; used.len()];
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> =
        used.iter().enumerate().map(|(node, &s)| Reverse((counts[s], node))).collect();
    while let (Some(Reverse((a, x))), Some(Reverse((b, y)))) = (heap.pop(), heap.pop()) {
        let joined = parent.len();
        parent.push(usize::MAX);
        parent[x] = joined;
        parent[y] = joined;
        heap.push(Reverse((a + b, joined)));
        if heap.len() == 1 {
            break;
        }
    }
    let mut too_long = false;
    for (node, &s) in used.iter().enumerate() {
        let (mut depth, mut at) = (0u32, node);
        while parent[at] != usize::MAX {
            depth += 1;
            at = parent[at];
        }
        too_long |= depth > MAX_LENGTH as u32;
        lengths[s] = depth.min(MAX_LENGTH as u32) as u8;
    }
    if too_long {
        let flat = (usize::BITS - (used.len() - 1).leading_zeros()) as u8;
        used.iter().for_each(|&s| lengths[s] = flat);
    }
    lengths
}

/// The canonical codes of `lengths`: shorter codes first, equal lengths in symbol order.
fn canonical_codes(lengths: &[u8]) -> Vec<u64> {
    let mut order: Vec<usize> = (0..lengths.len()).filter(|&s| lengths[s] > 0).collect();
    order.sort_by_key(|&s| (lengths[s], s));
    let mut codes = vec![0u64; lengths.len()];
    let (mut code, mut previous) = (0u64, 0u8);
    for (i, &s) in order.iter().enumerate() {
        if i > 0 {
            code += 1;
        }
        code <<= lengths[s] - previous;
        previous = lengths[s];
        codes[s] = code;
    }
    codes
}

/// `symbols` coded with `lengths` (each symbol must have a length); the last byte is padded
/// with zero bits.
pub fn encode(symbols: &[u32], lengths: &[u8]) -> Vec<u8> {
    let codes = canonical_codes(lengths);
    let mut out = Vec::new();
    let (mut buffer, mut filled) = (0u128, 0u32);
    for &s in symbols {
        let length = lengths[s as usize] as u32;
        debug_assert!(length > 0, "symbol {s} has no code");
        buffer = (buffer << length) | codes[s as usize] as u128;
        filled += length;
        while filled >= 8 {
            filled -= 8;
            out.push((buffer >> filled) as u8);
        }
        buffer &= (1u128 << filled) - 1;
    }
    if filled > 0 {
        out.push((buffer << (8 - filled)) as u8);
    }
    out
}

/// The code lengths as the file stores them: two to a byte, the first in the high nibble,
/// where every length fits in 4 bits (which halves the tables of 8-bit indices and wide gaps);
/// otherwise one to a byte.
pub fn pack_lengths(lengths: &[u8]) -> Vec<u8> {
    if lengths.len() < 2 || lengths.iter().any(|&l| l > 15) {
        return lengths.to_vec();
    }
    lengths.chunks(2).map(|pair| (pair[0] << 4) | pair.get(1).copied().unwrap_or(0)).collect()
}

/// The `count` code lengths of a stored table: one to a byte when it holds `count` bytes, two
/// to a byte when it holds half as many (rounded up; an odd count's last nibble is 0).
pub fn unpack_lengths(stored: &[u8], count: usize) -> Result<Vec<u8>, String> {
    if stored.len() == count {
        return Ok(stored.to_vec());
    }
    if stored.len() == count.div_ceil(2) {
        let mut lengths: Vec<u8> = stored.iter().flat_map(|&b| [b >> 4, b & 15]).collect();
        if lengths.len() > count && lengths[count] != 0 {
            return Err("the padding nibble after the last length is not 0".into());
        }
        lengths.truncate(count);
        return Ok(lengths);
    }
    Err(format!(
        "has {} bytes where {count} code lengths take {count} (one to a byte) or {} (two)",
        stored.len(),
        count.div_ceil(2)
    ))
}

/// Bits `lengths` spend on `counts` (for choosing a gap width without coding).
pub fn coded_bits(counts: &[u64], lengths: &[u8]) -> u64 {
    counts.iter().zip(lengths).map(|(c, l)| c * *l as u64).sum()
}

/// Exactly `count` symbols from `stream`; an error says what is wrong with the lengths or the
/// stream.
pub fn decode(stream: &[u8], lengths: &[u8], count: usize) -> Result<Vec<u32>, String> {
    let longest = lengths.iter().copied().max().unwrap_or(0);
    if longest > MAX_LENGTH {
        return Err(format!("a code length of {longest} bits, the longest allowed is {MAX_LENGTH}"));
    }
    // Codes per length, and the symbols in canonical order (puff.c's scheme).
    let mut per_length = vec![0u64; longest as usize + 1];
    lengths.iter().filter(|&&l| l > 0).for_each(|&l| per_length[l as usize] += 1);
    let mut room: i128 = 1;
    for &n in &per_length[1..] {
        room = room * 2 - n as i128;
        if room < 0 {
            return Err("the code lengths claim more codes than bits can hold (not a prefix code)".into());
        }
    }
    let mut symbols: Vec<u32> = (0..lengths.len() as u32).filter(|&s| lengths[s as usize] > 0).collect();
    symbols.sort_by_key(|&s| (lengths[s as usize], s));
    if count > stream.len().saturating_mul(8) {
        return Err(format!("{} bytes cannot hold {count} symbols of at least 1 bit", stream.len()));
    }
    let mut out = Vec::with_capacity(count);
    let mut bit = 0usize;
    let total_bits = stream.len() * 8;
    while out.len() < count {
        let (mut code, mut first, mut index) = (0u64, 0u64, 0u64);
        let mut found = None;
        for &n in &per_length[1..] {
            if bit >= total_bits {
                return Err(format!("ends after {} of {count} symbols", out.len()));
            }
            code |= ((stream[bit / 8] >> (7 - bit % 8)) & 1) as u64;
            bit += 1;
            if code < first + n {
                found = Some(symbols[(index + code - first) as usize]);
                break;
            }
            index += n;
            first = (first + n) << 1;
            code <<= 1;
        }
        match found {
            Some(symbol) => out.push(symbol),
            None => return Err(format!("symbol {} of {count} is no code of the lengths", out.len() + 1)),
        }
    }
    let left = total_bits - bit;
    if left >= 8 || (left > 0 && stream[bit / 8] & ((1u8 << left) - 1) != 0) {
        return Err(format!("holds more than {count} symbols: {left} bits are left after them"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequent_symbols_get_short_codes_and_streams_round_trip() {
        let counts = [50, 1, 1, 20, 0, 8];
        let lengths = code_lengths(&counts);
        assert_eq!(lengths[4], 0);
        assert!(lengths[0] < lengths[1] && lengths[3] <= lengths[5], "{lengths:?}");
        let symbols: Vec<u32> = (0..counts.len() as u32).flat_map(|s| vec![s; counts[s as usize] as usize]).collect();
        let stream = encode(&symbols, &lengths);
        assert_eq!(stream.len() as u64, coded_bits(&counts, &lengths).div_ceil(8));
        assert_eq!(decode(&stream, &lengths, symbols.len()).unwrap(), symbols);
    }

    #[test]
    fn short_lengths_are_stored_two_to_a_byte_and_long_ones_one() {
        let short = [3u8, 0, 15, 1, 2];
        assert_eq!(pack_lengths(&short), vec![0x30, 0xf1, 0x20]);
        assert_eq!(unpack_lengths(&pack_lengths(&short), 5).unwrap(), short);
        let long = [16u8, 1, 2];
        assert_eq!(pack_lengths(&long), long);
        assert_eq!(unpack_lengths(&long, 3).unwrap(), long);
        assert_eq!(unpack_lengths(&[7], 1).unwrap(), vec![7], "one length is one byte");
        assert!(unpack_lengths(&[0x30, 0xf1, 0x27], 5).unwrap_err().contains("padding"));
        assert!(unpack_lengths(&[1, 2], 5).unwrap_err().contains("5 code lengths"));
    }

    #[test]
    fn a_single_symbol_takes_one_bit() {
        let lengths = code_lengths(&[0, 7]);
        assert_eq!(lengths, vec![0, 1]);
        assert_eq!(decode(&encode(&[1; 7], &lengths), &lengths, 7).unwrap(), vec![1; 7]);
    }

    #[test]
    fn damaged_streams_and_lengths_are_errors() {
        let lengths = code_lengths(&[3, 2, 1]);
        let stream = encode(&[0, 1, 2, 0], &lengths);
        assert!(decode(&stream, &lengths, 9).unwrap_err().contains("symbols"));
        assert!(decode(&[stream.clone(), vec![0]].concat(), &lengths, 4).unwrap_err().contains("more than 4"));
        assert!(decode(&stream, &[1, 1, 1], 4).unwrap_err().contains("prefix"));
        assert!(decode(&stream, &[40, 1, 1], 4).unwrap_err().contains("longest"));
    }
}
