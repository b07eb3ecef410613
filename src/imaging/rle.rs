//! DICOM RLE Lossless (PS3.5 Annex G), single frame, one sample per pixel, decoded row by row:
//! the frame's PackBits segments (one per byte of a sample, most significant first) are read
//! in step, so a row of samples is built from a few kilobytes of row buffers and no plane of
//! the whole image is ever held. A pass that needs only some rows stops after the last one.
//!
//! dicom-pixeldata decodes RLE too, but through byte-at-a-time readers into a whole-image
//! buffer (67–71 ms p50 to parse and decode a 2600×4700 16-bit mammogram here, against 20–27
//! ms for all of our decode and preprocessing; docs/benchmarks.md).
//! The RLE fixture decodes to exactly the uncompressed fixture's pixels (tests/dicom.rs).

/// One RLE frame: its segments, borrowed from the request's bytes.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    segments: Vec<&'a [u8]>,
    width: usize,
}

impl<'a> Frame<'a> {
    /// Reads the frame header (its fragments joined) of an image `width` samples wide with
    /// `bytes_per_sample` (1 or 2) bytes a sample.
    pub fn parse(frame: &'a [u8], width: usize, bytes_per_sample: usize) -> Result<Self, String> {
        let word = |i: usize| -> Result<usize, String> {
            frame
                .get(4 * i..4 * i + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or_else(|| "the RLE header is truncated".to_string())
        };
        let count = word(0)?;
        if count != bytes_per_sample {
            return Err(format!(
                "the RLE frame has {count} segments; one {bytes_per_sample}-byte sample per \
                 pixel needs {bytes_per_sample}"
            ));
        }
        let segments = (0..count)
            .map(|s| {
                let start = word(1 + s)?;
                let end = if s + 1 < count {
                    word(2 + s)?
                } else {
                    frame.len()
                };
                frame
                    .get(start..end)
                    .ok_or_else(|| format!("RLE segment {s} lies outside the frame"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Frame { segments, width })
    }

    /// Calls `f(y, high, low)` for rows `start..end` with the row's bytes from each segment
    /// (`high` is `None` for 1-byte samples). Rows before `start` are passed over by their run
    /// headers, without being decoded.
    pub fn rows(
        &self,
        start: usize,
        end: usize,
        mut f: impl FnMut(usize, Option<&[u8]>, &[u8]),
    ) -> Result<(), String> {
        let mut streams: Vec<PackBits> = self
            .segments
            .iter()
            .map(|s| PackBits::new(s, self.width))
            .collect();
        let at = |s: usize, y: usize| move |e: String| format!("RLE segment {s}, row {y}: {e}");
        for (s, stream) in streams.iter_mut().enumerate() {
            stream.skip(start * self.width).map_err(at(s, start))?;
        }
        for y in start..end {
            match streams.as_mut_slice() {
                [low] => f(y, None, low.row().map_err(at(0, y))?),
                [high, low] => {
                    let high = high.row().map_err(at(0, y))?;
                    f(y, Some(high), low.row().map_err(at(1, y))?)
                }
                _ => unreachable!("one or two segments, checked by parse"),
            }
        }
        Ok(())
    }
}

/// The longest PackBits run.
const MAX_RUN: usize = 128;

/// A PackBits stream decoded a row at a time: a header byte h, then h + 1 literal bytes
/// (h ≥ 0) or one byte repeated 1 - h times (-127 ≤ h ≤ -1); -128 is a no-op. Runs may cross
/// rows. Each run is written whole with a fixed-size copy or fill of [`MAX_RUN`] bytes (no
/// call or branch on its length; the benchmark mammogram has ~850 k runs of ~29 bytes), into
/// a buffer with that much room past the row; what a run puts past the row starts the next.
struct PackBits<'a> {
    input: &'a [u8],
    width: usize,
    buffer: Vec<u8>,
    /// Bytes decoded into `buffer`.
    filled: usize,
    /// Bytes at the front of `buffer` that belong to rows already handed out or skipped.
    used: usize,
}

impl<'a> PackBits<'a> {
    fn new(input: &'a [u8], width: usize) -> Self {
        PackBits {
            input,
            width,
            buffer: vec![0; width + MAX_RUN],
            filled: 0,
            used: 0,
        }
    }

    /// The next row's `width` bytes.
    fn row(&mut self) -> Result<&[u8], String> {
        self.buffer.copy_within(self.used..self.filled, 0);
        self.filled -= self.used;
        // Locals, not fields, in the hot loop: the buffer's writes could alias the fields.
        let (mut input, mut filled) = (self.input, self.filled);
        let buffer = self.buffer.as_mut_slice();
        while filled < self.width && input.len() > MAX_RUN {
            let header = input[0];
            let (n, advance) = Self::sizes(header);
            let bytes: &[u8; MAX_RUN] = input[1..=MAX_RUN].try_into().expect("128 bytes");
            let out: &mut [u8; MAX_RUN] = (&mut buffer[filled..filled + MAX_RUN])
                .try_into()
                .expect("128 bytes");
            if header < 0x80 {
                *out = *bytes;
            } else {
                out.fill(bytes[0]);
            }
            input = &input[advance..];
            filled += n;
        }
        (self.input, self.filled) = (input, filled);
        while self.filled < self.width {
            self.run()?;
        }
        self.used = self.width;
        Ok(&self.buffer[..self.width])
    }

    /// Header byte → (decoded length, encoded length including the header).
    fn sizes(header: u8) -> (usize, usize) {
        match header as i8 {
            h @ 0.. => (h as usize + 1, h as usize + 2),
            -128 => (0, 1),
            h => ((1 - h as isize) as usize, 2),
        }
    }

    /// Decodes one run at `filled` (below `width`) byte-exact, checking the input's end: the
    /// last runs of a segment, where [`Self::row`]'s fixed-size copies would read past it.
    fn run(&mut self) -> Result<(), String> {
        let (&header, rest) = self
            .input
            .split_first()
            .ok_or_else(|| "the segment ends early".to_string())?;
        let (n, _) = Self::sizes(header);
        let out = &mut self.buffer[self.filled..self.filled + n];
        if header < 0x80 {
            let literal = rest
                .get(..n)
                .ok_or_else(|| "a literal run is cut short".to_string())?;
            out.copy_from_slice(literal);
            self.input = &rest[n..];
        } else if n > 0 {
            let &value = rest
                .first()
                .ok_or_else(|| "a repeat run is cut short".to_string())?;
            out.fill(value);
            self.input = &rest[1..];
        } else {
            self.input = rest;
        }
        self.filled += n;
        Ok(())
    }

    /// Passes over the next `bytes` bytes: whole runs by their headers alone; the run that
    /// crosses the end is decoded and its first part marked used.
    fn skip(&mut self, bytes: usize) -> Result<(), String> {
        let mut left = bytes;
        while left > 0 {
            let &header = self
                .input
                .first()
                .ok_or_else(|| "the segment ends early".to_string())?;
            let (n, encoded) = Self::sizes(header);
            if n > left {
                self.run()?;
                self.used = left;
                return Ok(());
            }
            self.input = self
                .input
                .get(encoded..)
                .ok_or_else(|| "a run is cut short".to_string())?;
            left -= n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(input: &[u8], width: usize, count: usize) -> Result<Vec<Vec<u8>>, String> {
        let mut stream = PackBits::new(input, width);
        (0..count)
            .map(|_| stream.row().map(<[u8]>::to_vec))
            .collect()
    }

    #[test]
    fn packbits_literal_repeat_and_noop() {
        // 2 literals (h = 1), 4 × 0xAA (h = -3), a no-op, 1 literal.
        let input = [1, 7, 8, 0xFD, 0xAA, 0x80, 0, 9];
        assert_eq!(
            rows(&input, 7, 1).unwrap(),
            [[7, 8, 0xAA, 0xAA, 0xAA, 0xAA, 9]]
        );
        assert!(rows(&input[..5], 7, 1).unwrap_err().contains("ends early"));
        assert!(
            rows(&[5, 1, 2], 6, 1).is_err(),
            "a literal run past the end"
        );
        assert!(
            rows(&[0xFD], 4, 1).is_err(),
            "a repeat run without its byte"
        );
    }

    #[test]
    fn runs_cross_rows_and_skips() {
        let input = [2, 1, 2, 3, 0xFC, 9]; // 1 2 3, then 5 × 9
        assert_eq!(
            rows(&input, 2, 4).unwrap(),
            [[1, 2], [3, 9], [9, 9], [9, 9]]
        );
        assert!(rows(&input, 2, 5).is_err(), "nothing is left");
        let mut stream = PackBits::new(&input, 2);
        stream.skip(3).unwrap(); // the literal run whole
        assert_eq!(stream.row().unwrap(), [9, 9]);
        let mut stream = PackBits::new(&input, 2);
        stream.skip(4).unwrap(); // into the repeat run
        assert_eq!(stream.row().unwrap(), [9, 9]);
        assert_eq!(stream.row().unwrap(), [9, 9]);
        assert!(PackBits::new(&input, 2).skip(9).is_err());
    }

    #[test]
    fn long_runs_fill_narrow_rows() {
        // 128 literal bytes 0..128, then 128 × 7, into rows of 3.
        let mut input = vec![127u8];
        input.extend(0..128u8);
        input.extend([0x81, 7]);
        let decoded: Vec<u8> = rows(&input, 3, 85).unwrap().concat();
        let expected: Vec<u8> = (0..128u8).chain([7; 127]).collect();
        assert_eq!(decoded, expected);
    }

    /// PackBits-encodes `data` with run lengths drawn from `next` (literal or repeat runs of
    /// 1–128 bytes, and now and then a no-op header).
    fn encode(data: &[u8], mut next: impl FnMut() -> usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < data.len() {
            if next().is_multiple_of(17) {
                out.push(0x80);
            }
            let same = data[i..]
                .iter()
                .take_while(|&&b| b == data[i])
                .count()
                .min(128);
            if same >= 2 {
                let n = 2 + next() % (same - 1);
                out.extend([(257 - n) as u8, data[i]]);
                i += n;
            } else {
                let n = (1 + next() % 128).min(data.len() - i);
                out.push((n - 1) as u8);
                out.extend_from_slice(&data[i..i + n]);
                i += n;
            }
        }
        out
    }

    #[test]
    fn random_streams_decode_to_their_bytes_at_any_width_and_skip() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as usize
        };
        for _ in 0..200 {
            let width = 1 + next() % 300;
            let rows = 1 + next() % 40;
            // Flat stretches of random length and value between bursts of noise.
            let mut data = Vec::with_capacity(width * rows);
            while data.len() < width * rows {
                let (len, value) = (1 + next() % 400, next() as u8);
                let noisy = next().is_multiple_of(2);
                data.extend((0..len).map(|_| if noisy { next() as u8 } else { value }));
            }
            data.truncate(width * rows);
            let encoded = encode(&data, &mut next);
            let skipped = next() % rows;
            let mut stream = PackBits::new(&encoded, width);
            stream.skip(skipped * width).unwrap();
            for y in skipped..rows {
                let row = stream.row().unwrap();
                assert_eq!(
                    row,
                    &data[y * width..(y + 1) * width],
                    "width {width}, row {y}"
                );
            }
            assert!(stream.row().is_err(), "the stream ends with the data");
        }
    }

    #[test]
    fn frames_put_segments_together_row_by_row() {
        let mut frame = vec![0u8; 64];
        frame[0] = 2; // two segments
        frame[4] = 64; // at 64 and 68
        frame[8] = 68;
        frame.extend_from_slice(&[0xFB, 0x12, 0x00, 0x00]); // 6 × 0x12, then padding
        frame.extend_from_slice(&[5, 1, 2, 3, 4, 5, 6]);
        let parsed = Frame::parse(&frame, 3, 2).unwrap();
        let mut rows = Vec::new();
        parsed
            .rows(0, 2, |y, h, l| {
                rows.push((y, h.unwrap().to_vec(), l.to_vec()))
            })
            .unwrap();
        assert_eq!(
            rows,
            [
                (0, vec![0x12; 3], vec![1, 2, 3]),
                (1, vec![0x12; 3], vec![4, 5, 6])
            ]
        );
        let mut second = Vec::new();
        parsed.rows(1, 2, |y, _, l| second.push((y, l[0]))).unwrap();
        assert_eq!(second, [(1, 4)]);
        assert!(
            parsed.rows(0, 3, |_, _, _| {}).is_err(),
            "a third row is not there"
        );
        assert!(Frame::parse(&frame, 3, 1)
            .unwrap_err()
            .contains("2 segments"));
        assert!(Frame::parse(&frame[..6], 3, 2).is_err());
    }
}
