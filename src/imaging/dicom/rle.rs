//! DICOM RLE Lossless (PS3.5 Annex G), single frame, one sample per pixel, decoded row by row
//! straight into per-column sums over bands of rows: what a k×k block mean needs
//! (`dicom::StoredImage::grey`). The frame's PackBits segments (one per byte of a sample, most
//! significant first) are decoded side by side and summed apart: a 16-bit value is
//! 256 × high + low, so the block sums of values follow from the segments' own sums. No plane
//! of the image is held: a row buffer, column sums and one band of block sums per segment.
//!
//! dicom-pixeldata decodes RLE too, but through byte-at-a-time readers into a whole-image
//! buffer: several times slower on a full-field image, at saturation too (docs/benchmarks.md,
//! "DICOM"). The decoding runs on the caller's thread: a second thread for the high segment
//! bought no throughput once every core serves requests (same page). The RLE fixture decodes
//! to exactly the uncompressed fixture's pixels (tests/dicom.rs).

use bytes::Bytes;

/// One RLE frame: its segments, slices of the request's bytes (no copy).
#[derive(Debug, Clone)]
pub struct Frame {
    segments: Vec<Bytes>,
    width: usize,
    height: usize,
}

impl Frame {
    /// Reads the frame header (its fragments joined) of a `width` × `height` image with
    /// `bytes_per_sample` (1 or 2) bytes a sample.
    pub fn parse(
        frame: Bytes,
        (width, height): (usize, usize),
        bytes_per_sample: usize,
    ) -> Result<Self, String> {
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
                if start <= end && end <= frame.len() {
                    Ok(frame.slice(start..end))
                } else {
                    Err(format!("RLE segment {s} lies outside the frame"))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Frame {
            segments,
            width,
            height,
        })
    }

    /// 1 or 2: bytes a sample.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Sums each segment's bytes over the k×k blocks of each band of `k` rows ([`Blocks`],
    /// the bytes read as `roles` say, high segment first) and calls `f(high, low)` with each
    /// whole band's sums, top to bottom (`high` is `None` for 1-byte samples). Rows past the
    /// last whole band are not read.
    pub fn band_sums(
        &self,
        k: usize,
        roles: &[ByteRole],
        mut f: impl FnMut(Option<&Blocks>, &Blocks),
    ) -> Result<(), String> {
        let (width, bands) = (self.width, self.height / k);
        match (self.segments.as_slice(), roles) {
            ([low], &[role]) => {
                let mut own = Blocks::new(width, k);
                let mut low = Summer::new(low, width, k);
                for band in 0..bands {
                    low.band(band, role, &mut own).map_err(at(0))?;
                    f(None, &own);
                }
                Ok(())
            }
            ([high, low], &[high_role, low_role]) => {
                let (mut high_sums, mut low_sums) = (Blocks::new(width, k), Blocks::new(width, k));
                let mut high = Summer::new(high, width, k);
                let mut low = Summer::new(low, width, k);
                for band in 0..bands {
                    high.band(band, high_role, &mut high_sums).map_err(at(0))?;
                    low.band(band, low_role, &mut low_sums).map_err(at(1))?;
                    f(Some(&high_sums), &low_sums);
                }
                Ok(())
            }
            _ => Err("one role is needed for each segment".into()),
        }
    }
}

/// How a segment's bytes enter [`Blocks`]: ANDed with `mask` (the bits that belong to the
/// stored value); `sign` is the sign bit of a signed value when this byte holds it, else 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRole {
    pub mask: u8,
    pub sign: u8,
}

/// One segment's bytes summed over each k×k block of a band of k rows: the masked bytes, and
/// how many of them had the sign bit set (all 0 unless the role has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocks {
    pub sums: Vec<u32>,
    pub signs: Vec<u32>,
}

impl Blocks {
    fn new(width: usize, k: usize) -> Self {
        Blocks {
            sums: vec![0; width / k],
            signs: vec![0; width / k],
        }
    }
}

/// A segment decoded and summed a band of `k` rows at a time: first per column (`u16` holds
/// up to 257 rows of bytes), then per block.
struct Summer<'a> {
    stream: PackBits<'a>,
    k: usize,
    columns: Vec<u16>,
    signs: Vec<u16>,
}

impl<'a> Summer<'a> {
    fn new(segment: &'a [u8], width: usize, k: usize) -> Self {
        Summer {
            stream: PackBits::new(segment, width),
            k,
            columns: vec![0; width],
            signs: vec![0; width],
        }
    }

    /// Sums band number `band` (the next one) into `blocks`; on an error, the row and why.
    fn band(
        &mut self,
        band: usize,
        role: ByteRole,
        blocks: &mut Blocks,
    ) -> Result<(), (usize, String)> {
        self.columns.fill(0);
        self.signs.fill(0);
        for y in band * self.k..(band + 1) * self.k {
            let row = self.stream.row().map_err(|e| (y, e))?;
            for (sum, &b) in self.columns.iter_mut().zip(row) {
                *sum += (b & role.mask) as u16;
            }
            if role.sign != 0 {
                for (count, &b) in self.signs.iter_mut().zip(row) {
                    *count += u16::from(b & role.sign != 0);
                }
            }
        }
        group_sums(&self.columns, self.k, &mut blocks.sums);
        if role.sign != 0 {
            group_sums(&self.signs, self.k, &mut blocks.signs);
        }
        Ok(())
    }
}

/// `out[j]` = the sum of `columns[j·k .. (j+1)·k]`; unrolled for the usual k (a full-field
/// image for a 224-pixel input has k = 4–7), where a loop with a run-time k cost several
/// times more (docs/benchmarks.md, "DICOM").
fn group_sums(columns: &[u16], k: usize, out: &mut [u32]) {
    match k {
        2 => groups::<2>(columns, out),
        3 => groups::<3>(columns, out),
        4 => groups::<4>(columns, out),
        5 => groups::<5>(columns, out),
        6 => groups::<6>(columns, out),
        7 => groups::<7>(columns, out),
        8 => groups::<8>(columns, out),
        _ => {
            for (o, group) in out.iter_mut().zip(columns.chunks_exact(k)) {
                *o = group.iter().map(|&c| c as u32).sum();
            }
        }
    }
}

fn groups<const K: usize>(columns: &[u16], out: &mut [u32]) {
    for (o, group) in out.iter_mut().zip(columns.as_chunks::<K>().0) {
        *o = group.iter().map(|&c| c as u32).sum();
    }
}

/// A decoding error of `segment`, with its row, as a message.
fn at(segment: usize) -> impl Fn((usize, String)) -> String {
    move |(y, e)| format!("RLE segment {segment}, row {y}: {e}")
}

/// The longest PackBits run.
const MAX_RUN: usize = 128;

/// A PackBits stream decoded a row at a time: a header byte h, then h + 1 literal bytes
/// (h ≥ 0) or one byte repeated 1 - h times (-127 ≤ h ≤ -1); -128 is a no-op. Runs may cross
/// rows. Each run is written whole with a fixed-size copy or fill of [`MAX_RUN`] bytes (no
/// call or branch on its length: a detector image has hundreds of thousands of short runs), into
/// a buffer with that much room past the row; what a run puts past the row starts the next.
struct PackBits<'a> {
    input: &'a [u8],
    width: usize,
    buffer: Vec<u8>,
    /// Bytes decoded into `buffer`.
    filled: usize,
    /// Bytes at the front of `buffer` that belong to rows already handed out.
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A random number source for the randomized tests (xorshift).
    pub(crate) fn numbers(mut state: u64) -> impl FnMut() -> usize {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as usize
        }
    }

    /// An RLE frame of `segments`, each PackBits-encoded with run lengths from `next`.
    pub(crate) fn frame(segments: &[Vec<u8>], next: &mut impl FnMut() -> usize) -> Vec<u8> {
        let encoded: Vec<Vec<u8>> = segments.iter().map(|s| encode(s, &mut *next)).collect();
        let mut frame = vec![0u8; 64];
        frame[..4].copy_from_slice(&(segments.len() as u32).to_le_bytes());
        for (i, segment) in encoded.iter().enumerate() {
            let at = frame.len() as u32;
            frame[4 + 4 * i..8 + 4 * i].copy_from_slice(&at.to_le_bytes());
            frame.extend_from_slice(segment);
        }
        frame
    }

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
    fn runs_cross_rows() {
        let input = [2, 1, 2, 3, 0xFC, 9]; // 1 2 3, then 5 × 9
        assert_eq!(
            rows(&input, 2, 4).unwrap(),
            [[1, 2], [3, 9], [9, 9], [9, 9]]
        );
        assert!(rows(&input, 2, 5).is_err(), "nothing is left");
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
    pub(crate) fn encode(data: &[u8], mut next: impl FnMut() -> usize) -> Vec<u8> {
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
    fn random_streams_decode_to_their_bytes_at_any_width() {
        let mut next = numbers(0x2545_f491_4f6c_dd1d);
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
            let mut stream = PackBits::new(&encoded, width);
            for y in 0..rows {
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
    fn band_sums_add_each_segment_over_blocks_as_roles_say() {
        // 5 × 4 samples, blocks of 2 × 2: the last column and nothing of the rows is left out.
        let high: Vec<u8> = (0..20).map(|i| 0xF0 | (i % 3) as u8).collect();
        let low: Vec<u8> = (0..20).map(|i| (i * 13) as u8).collect();
        let mut next = numbers(7);
        let bytes = Bytes::from(frame(&[high.clone(), low.clone()], &mut next));
        let parsed = Frame::parse(bytes.clone(), (5, 4), 2).unwrap();
        // The high byte holds bits 8–11 of a signed 12-bit value (its sign is bit 3 there).
        let roles = [
            ByteRole {
                mask: 0x0F,
                sign: 0x08,
            },
            ByteRole {
                mask: 0xFF,
                sign: 0,
            },
        ];
        let mut bands = Vec::new();
        parsed
            .band_sums(2, &roles, |h, l| {
                bands.push((h.unwrap().clone(), l.clone()))
            })
            .unwrap();
        let block = |data: &[u8], role: ByteRole, band: usize, j: usize| {
            let at = |y: usize, x: usize| data[(2 * band + y) * 5 + 2 * j + x];
            let bytes = [at(0, 0), at(0, 1), at(1, 0), at(1, 1)];
            let sum = bytes.iter().map(|&b| (b & role.mask) as u32).sum::<u32>();
            let signs = bytes.iter().filter(|&&b| b & role.sign != 0).count() as u32;
            (sum, signs)
        };
        assert_eq!(bands.len(), 2);
        for (band, (h, l)) in bands.iter().enumerate() {
            for j in 0..2 {
                assert_eq!((h.sums[j], h.signs[j]), block(&high, roles[0], band, j));
                assert_eq!((l.sums[j], l.signs[j]), block(&low, roles[1], band, j));
            }
        }
        assert!(
            Frame::parse(bytes.clone(), (5, 5), 2)
                .unwrap()
                .band_sums(1, &roles, |_, _| {})
                .unwrap_err()
                .contains("row 4"),
            "a fifth row is not there"
        );
        assert!(Frame::parse(bytes.clone(), (5, 4), 1)
            .unwrap_err()
            .contains("2 segments"));
        assert!(Frame::parse(bytes.slice(..6), (5, 4), 2).is_err());
    }
}
