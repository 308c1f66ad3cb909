//! Reader and writer for the IDX format of MNIST, restricted to u8 payloads.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::error::{DataError, Result};

/// Magic of a u8 IDX file with 3 dims (images x rows x cols).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic of a u8 IDX file with 1 dim (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

const U8_TYPE: u32 = 0x08;

/// A decoded u8 IDX file: `data` is row-major with shape `dims`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads a raw or gzip-compressed u8 IDX file and checks that its magic is
/// `expected_magic` and that its payload has exactly the declared size.
pub fn read_idx(path: &Path, expected_magic: u32) -> Result<IdxArray> {
    let bytes = read_file(path)?;
    parse_idx(path, &bytes, expected_magic)
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })
}

/// Decodes file contents already in memory, so that callers which also hash the
/// file read it only once. `path` is only used in error messages.
///
/// A gzip stream is inflated only as far as its IDX header says the data goes, plus one byte
/// to tell that more follows: a small file that inflates to gigabytes is refused once it passes
/// its declared size, without holding the rest in memory.
pub(crate) fn parse_idx(path: &Path, bytes: &[u8], expected_magic: u32) -> Result<IdxArray> {
    // Detect gzip by content rather than by file name: renamed files are common.
    let mut source: Box<dyn Read + '_> =
        if bytes.starts_with(&[0x1f, 0x8b]) { Box::new(MultiGzDecoder::new(bytes)) } else { Box::new(bytes) };
    let corrupt = |e: io::Error| DataError::Corrupt { path: path.to_path_buf(), detail: e.to_string() };
    let truncated = |expected: usize, actual: usize| DataError::Truncated {
        path: path.to_path_buf(),
        expected_bytes: expected as u64,
        actual_bytes: actual as u64,
    };
    // Up to `len` more bytes: fewer only where the stream ends.
    let mut read = |len: usize| -> Result<Vec<u8>> {
        let mut out = Vec::new();
        (&mut source).take(len as u64).read_to_end(&mut out).map_err(corrupt)?;
        Ok(out)
    };
    let word = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);

    let magic = read(4)?;
    if magic.len() < 4 {
        return Err(truncated(4, magic.len()));
    }
    let found = word(&magic);
    if found != expected_magic || (found >> 8) & 0xff != U8_TYPE {
        let kind = match expected_magic {
            IMAGES_MAGIC => "images (u8, 3 dims)",
            LABELS_MAGIC => "labels (u8, 1 dim)",
            _ => "u8",
        };
        return Err(DataError::BadMagic { path: path.to_path_buf(), found, expected: expected_magic, kind });
    }
    let ndims = (found & 0xff) as usize;
    let header = 4 + 4 * ndims;
    let dim_bytes = read(4 * ndims)?;
    if dim_bytes.len() < 4 * ndims {
        return Err(truncated(header, 4 + dim_bytes.len()));
    }
    let dims: Vec<usize> = dim_bytes.chunks_exact(4).map(|b| word(b) as usize).collect();
    let payload = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| DataError::BadDims {
        path: path.to_path_buf(),
        detail: format!("dims {dims:?} overflow the address space"),
    })?;
    let data = read(payload.saturating_add(1))?;
    if data.len() < payload {
        return Err(truncated(header + payload, header + data.len()));
    }
    if data.len() > payload {
        return Err(DataError::TrailingBytes { path: path.to_path_buf(), expected_bytes: (header + payload) as u64 });
    }
    Ok(IdxArray { dims, data })
}

/// Writes a u8 IDX file; the number of dims is taken from `dims`, not from
/// `magic`, so tests can also produce deliberately inconsistent files.
pub fn write_idx(path: &Path, magic: u32, dims: &[usize], data: &[u8], gzip: bool) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    buf.extend_from_slice(&magic.to_be_bytes());
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "IDX dim exceeds u32"))?;
        buf.extend_from_slice(&d.to_be_bytes());
    }
    buf.extend_from_slice(data);
    if gzip {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&buf)?;
        buf = enc.finish()?;
    }
    fs::write(path, buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_gzip_bomb_is_refused_at_its_declared_size() {
        let dir = scratch_dir("idx-bomb");
        let path = dir.join("bomb.gz");
        // A header for 2 labels, then 256 MiB of zeros: a few hundred KiB compressed.
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(&LABELS_MAGIC.to_be_bytes()).unwrap();
        encoder.write_all(&2u32.to_be_bytes()).unwrap();
        let zeros = vec![0u8; 1 << 20];
        (0..256).for_each(|_| encoder.write_all(&zeros).unwrap());
        fs::write(&path, encoder.finish().unwrap()).unwrap();
        assert!(fs::metadata(&path).unwrap().len() < 1 << 20);
        let err = read_idx(&path, LABELS_MAGIC).unwrap_err();
        assert!(matches!(err, DataError::TrailingBytes { expected_bytes: 10, .. }), "{err:?}");
        assert!(err.to_string().contains("more than the 10 bytes"), "{err}");
        let _ = fs::remove_dir_all(dir);
    }

    use super::*;
    use crate::scratch_dir;

    #[test]
    fn round_trip_raw_and_gz() {
        let dir = scratch_dir("idx-roundtrip");
        let data: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        for gzip in [false, true] {
            let path = dir.join(format!("img-{gzip}"));
            write_idx(&path, IMAGES_MAGIC, &[2, 3, 4], &data, gzip).unwrap();
            let arr = read_idx(&path, IMAGES_MAGIC).unwrap();
            assert_eq!(arr, IdxArray { dims: vec![2, 3, 4], data: data.clone() });
        }
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn missing_file_names_path() {
        let path = std::env::temp_dir().join("coppice-data-definitely-missing/train-images-idx3-ubyte");
        let msg = read_idx(&path, IMAGES_MAGIC).unwrap_err().to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("not found") && msg.contains("data.dir"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn truncated_trailing_and_wrong_magic() {
        let dir = scratch_dir("idx-bad");
        let path = dir.join("labels");
        // Header declares 5 labels but only 3 follow.
        write_idx(&path, LABELS_MAGIC, &[5], &[1, 2, 3], false).unwrap();
        match read_idx(&path, LABELS_MAGIC) {
            Err(DataError::Truncated { expected_bytes: 13, actual_bytes: 11, .. }) => {}
            other => panic!("expected Truncated, got {other:?}"),
        }
        write_idx(&path, LABELS_MAGIC, &[2], &[1, 2, 3], true).unwrap();
        assert!(matches!(read_idx(&path, LABELS_MAGIC), Err(DataError::TrailingBytes { .. })));
        write_idx(&path, LABELS_MAGIC, &[2], &[1, 2, 3], false).unwrap();
        assert!(matches!(read_idx(&path, LABELS_MAGIC), Err(DataError::TrailingBytes { .. })));
        write_idx(&path, LABELS_MAGIC, &[3], &[1, 2, 3], false).unwrap();
        let err = read_idx(&path, IMAGES_MAGIC).unwrap_err();
        assert!(matches!(err, DataError::BadMagic { found: LABELS_MAGIC, expected: IMAGES_MAGIC, .. }));
        assert!(err.to_string().contains("not an IDX images"), "{err}");
        // A file cut inside its gzip stream must not pass as a short IDX file.
        write_idx(&path, LABELS_MAGIC, &[3], &[1, 2, 3], true).unwrap();
        let gz = fs::read(&path).unwrap();
        fs::write(&path, &gz[..gz.len() - 6]).unwrap();
        assert!(matches!(read_idx(&path, LABELS_MAGIC), Err(DataError::Corrupt { .. })));
        let _ = fs::remove_dir_all(dir);
    }
}
