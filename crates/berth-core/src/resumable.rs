//! A SHA-256 whose state can be saved and restored: an upload session
//! whose bytes live in a remote object store hashes them as they pass and
//! keeps the running state beside them, so that after a restart the next
//! chunk goes on from there instead of reading everything back. The
//! compression function is `sha2`'s (the same CPU-specific code); what is
//! written here is the buffering and the padding of FIPS 180-4 §5.1.1.

use crate::digest::Digest;
use sha2::digest::generic_array::GenericArray;

const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The length of a saved state: the eight words, the length, then the
/// bytes of the block not yet compressed.
const HEAD: usize = 32 + 8;

/// A running SHA-256 over a byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sha256State {
    h: [u32; 8],
    /// Bytes hashed so far.
    len: u64,
    /// `len % 64` bytes waiting for a whole block.
    block: Vec<u8>,
}

impl Default for Sha256State {
    fn default() -> Self {
        Sha256State {
            h: IV,
            len: 0,
            block: Vec::with_capacity(64),
        }
    }
}

fn compress(h: &mut [u32; 8], block: &[u8]) {
    sha2::compress256(h, std::slice::from_ref(GenericArray::from_slice(block)));
}

impl Sha256State {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.block.is_empty() {
            let take = (64 - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() < 64 {
                return;
            }
            compress(&mut self.h, &self.block);
            self.block.clear();
        }
        let mut blocks = data.chunks_exact(64);
        for b in blocks.by_ref() {
            compress(&mut self.h, b);
        }
        self.block.extend_from_slice(blocks.remainder());
    }

    pub fn finish(mut self) -> Digest {
        let bits = self.len.wrapping_mul(8);
        self.block.push(0x80);
        if self.block.len() > 56 {
            self.block.resize(64, 0);
            compress(&mut self.h, &self.block);
            self.block.clear();
        }
        self.block.resize(56, 0);
        self.block.extend_from_slice(&bits.to_be_bytes());
        compress(&mut self.h, &self.block);
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(self.h) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        Digest::sha256_from(out)
    }

    /// The state as bytes (at most 103).
    pub fn save(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEAD + self.block.len());
        for w in self.h {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v.extend_from_slice(&self.len.to_be_bytes());
        v.extend_from_slice(&self.block);
        v
    }

    /// A state [`Sha256State::save`] wrote; `None` for anything else.
    pub fn restore(b: &[u8]) -> Option<Sha256State> {
        if b.len() < HEAD || b.len() >= HEAD + 64 {
            return None;
        }
        let mut h = [0u32; 8];
        for (w, c) in h.iter_mut().zip(b[..32].chunks_exact(4)) {
            *w = u32::from_be_bytes(c.try_into().ok()?);
        }
        let len = u64::from_be_bytes(b[32..HEAD].try_into().ok()?);
        let block = b[HEAD..].to_vec();
        (len % 64 == block.len() as u64).then_some(Sha256State { h, len, block })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_answers() {
        assert_eq!(Sha256State::new().finish(), Digest::sha256_of(b""));
        let mut s = Sha256State::new();
        s.update(b"abc");
        assert_eq!(
            s.finish().to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // the lengths where the padding needs a second block
        for n in [55usize, 56, 63, 64, 65, 119, 120, 128] {
            let data = vec![b'x'; n];
            let mut s = Sha256State::new();
            s.update(&data);
            assert_eq!(s.finish(), Digest::sha256_of(&data), "{n} bytes");
        }
    }

    #[test]
    fn saved_states_are_checked() {
        assert_eq!(Sha256State::restore(b"short"), None);
        let mut s = Sha256State::new();
        s.update(&[7u8; 70]);
        let mut b = s.save();
        assert_eq!(Sha256State::restore(&b), Some(s));
        b.pop(); // the block no longer matches the length
        assert_eq!(Sha256State::restore(&b), None);
    }

    proptest! {
        /// Any data, cut anywhere, saved and restored between the cuts:
        /// the digest `sha2` gives for the whole.
        #[test]
        fn cut_saved_and_restored_it_hashes_as_sha2(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(0usize..2000, 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.push(data.len());
            cuts.sort();
            let mut s = Sha256State::new();
            let mut at = 0;
            for c in cuts {
                s.update(&data[at..c]);
                at = c;
                s = Sha256State::restore(&s.save()).unwrap();
            }
            prop_assert_eq!(s.len(), data.len() as u64);
            prop_assert_eq!(s.finish(), Digest::sha256_of(&data));
        }
    }
}
