//! Reading one image file: its header alone (size and colour, to settle the set's shape and
//! check memory before anything is decoded), or all of it, converted to the set's shape.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use crate::error::{DataError, Result};

/// What an image's header says.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    pub color: bool,
    /// Bytes the decoded image takes before conversion.
    pub decoded_bytes: u128,
}

/// The format is taken from the bytes (extension as the fallback), so a JPEG named .png decodes.
fn reader(path: &Path) -> Result<ImageReader<BufReader<File>>> {
    let io = |source| DataError::Io { path: path.to_path_buf(), source };
    ImageReader::open(path).map_err(io)?.with_guessed_format().map_err(io)
}

fn bad(path: &Path, err: image::ImageError) -> DataError {
    DataError::BadImage { path: path.to_path_buf(), detail: err.to_string() }
}

pub fn header(path: &Path) -> Result<Header> {
    let decoder = reader(path)?.into_decoder().map_err(|e| bad(path, e))?;
    let (width, height) = decoder.dimensions();
    let color = decoder.color_type();
    Ok(Header {
        width,
        height,
        color: color.has_color(),
        decoded_bytes: u128::from(width) * u128::from(height) * u128::from(color.bytes_per_pixel()),
    })
}

/// Decodes `path` and appends its pixels to `out` in `[channels, height, width]` order, resized
/// to fill `height` x `width` (the centre is kept) when its size differs. `max_alloc` bounds what
/// the decoder may allocate, so a file whose header lies about its size cannot exhaust memory.
pub fn decode_into(
    path: &Path,
    channels: usize,
    [height, width]: [usize; 2],
    max_alloc: u64,
    out: &mut Vec<u8>,
) -> Result<()> {
    let mut reader = reader(path)?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);
    let mut image = reader.decode().map_err(|e| bad(path, e))?;
    let (w, h) = (width as u32, height as u32);
    if (image.width(), image.height()) != (w, h) {
        image = image.resize_to_fill(w, h, FilterType::Triangle);
    }
    push_pixels(&image, channels, out);
    Ok(())
}

fn push_pixels(image: &DynamicImage, channels: usize, out: &mut Vec<u8>) {
    if channels == 1 {
        out.extend_from_slice(image.to_luma8().as_raw());
    } else {
        let rgb = image.to_rgb8();
        for c in 0..3 {
            out.extend(rgb.as_raw().iter().skip(c).step_by(3));
        }
    }
}

/// Writes one image of `[channels, height, width]` pixels (1 or 3 channels) as a PNG.
pub fn write_png(path: &Path, pixels: &[u8], channels: usize, height: usize, width: usize) -> Result<()> {
    let plane = height * width;
    let (buffer, color) = if channels == 1 {
        (pixels.to_vec(), image::ExtendedColorType::L8)
    } else {
        let interleaved = (0..plane * 3).map(|i| pixels[(i % 3) * plane + i / 3]).collect();
        (interleaved, image::ExtendedColorType::Rgb8)
    };
    image::save_buffer_with_format(path, &buffer, width as u32, height as u32, color, image::ImageFormat::Png)
        .map_err(|e| bad(path, e))
}
