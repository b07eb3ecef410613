//! DICOM RLE Lossless (PS3.5 Annex G), single frame, one sample per pixel: the frame's
//! PackBits segments decoded straight into byte planes (most significant byte first).
//!
//! dicom-pixeldata decodes RLE too, but through byte-at-a-time readers and three copies (68 ms
//! p50 to parse and decode a 2600×4700 16-bit mammogram here); this decoder writes each run once
//! and the grey mapping reads the planes directly (45 ms p50 for parse, decode and mapping:
//! docs/benchmarks.md). The RLE fixture decodes to exactly the uncompressed fixture's pixels.

/// The byte planes of one frame, most significant first; each `rows × columns` long.
pub type Planes = Vec<Vec<u8>>;

/// Decodes one RLE frame (its fragments joined) into `bytes_per_sample` planes of `n` bytes.
pub fn decode_frame(frame: &[u8], n: usize, bytes_per_sample: usize) -> Result<Planes, String> {
    let word = |i: usize| -> Result<usize, String> {
        frame
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| "the RLE header is truncated".to_string())
    };
    let segments = word(0)?;
    if segments != bytes_per_sample {
        return Err(format!(
            "the RLE frame has {segments} segments; one {}-byte sample per pixel needs {bytes_per_sample}",
            bytes_per_sample
        ));
    }
    (0..segments)
        .map(|s| {
            let start = word(1 + s)?;
            let end = if s + 1 < segments {
                word(2 + s)?
            } else {
                frame.len()
            };
            let segment = frame
                .get(start..end)
                .ok_or_else(|| format!("RLE segment {s} lies outside the frame"))?;
            packbits(segment, n).map_err(|e| format!("RLE segment {s}: {e}"))
        })
        .collect()
}

/// PackBits: a header byte h, then h + 1 literal bytes (h ≥ 0) or one byte repeated 1 - h
/// times (-127 ≤ h ≤ -1); -128 is a no-op. Output past `n` bytes (row padding) is dropped.
fn packbits(mut input: &[u8], n: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (&header, rest) = input
            .split_first()
            .ok_or_else(|| format!("ends after {} of {n} bytes", out.len()))?;
        let h = header as i8;
        if h >= 0 {
            let count = h as usize + 1;
            let literal = rest
                .get(..count)
                .ok_or_else(|| "a literal run is cut short".to_string())?;
            out.extend_from_slice(literal);
            input = &rest[count..];
        } else if h != -128 {
            let (&value, rest) = rest
                .split_first()
                .ok_or_else(|| "a repeat run is cut short".to_string())?;
            out.resize(out.len() + (1 - h as isize) as usize, value);
            input = rest;
        } else {
            input = rest;
        }
    }
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_literal_repeat_and_noop() {
        // 2 literals (h = 1), 4 × 0xAA (h = -3), a no-op, 1 literal.
        let input = [1, 7, 8, 0xFD, 0xAA, 0x80, 0, 9];
        assert_eq!(
            packbits(&input, 7).unwrap(),
            [7, 8, 0xAA, 0xAA, 0xAA, 0xAA, 9]
        );
        assert!(packbits(&input[..5], 7)
            .unwrap_err()
            .contains("ends after 6"));
        assert!(
            packbits(&[5, 1, 2], 6).is_err(),
            "a literal run past the end"
        );
    }

    #[test]
    fn frames_give_one_plane_per_byte_and_check_their_header() {
        let mut frame = vec![0u8; 64];
        frame[0] = 2; // two segments
        frame[4] = 64; // at 64 and 67
        frame[8] = 67;
        frame.extend_from_slice(&[0xFE, 0x12, 0x00]); // 3 × 0x12, then a pad byte
        frame.extend_from_slice(&[2, 1, 2, 3]);
        let planes = decode_frame(&frame, 3, 2).unwrap();
        assert_eq!(planes, [vec![0x12; 3], vec![1, 2, 3]]);
        assert!(decode_frame(&frame, 3, 1)
            .unwrap_err()
            .contains("2 segments"));
        assert!(decode_frame(&frame[..6], 3, 2).is_err());
    }
}
