//! `SecretTag`: what an in-process cache remembers of a secret it accepted,
//! so that a hit compares the presented secret with it without SHA-256.
//!
//! A tag is SipHash-2-4 with a 128-bit output (Aumasson and Bernstein's
//! PRF, the 128-bit variant of the reference implementation, from the
//! `siphasher` crate; the reference vectors are checked below) of the
//! 32-byte secret, keyed by a [`TagKey`] drawn from the OS-seeded CSPRNG
//! when the process starts its cache: it never leaves the process, is never
//! stored or sent, and differs in every process.
//!
//! Why a hit that matches a tag is as strong as one that matches the stored
//! hash: an entry is cached only after the store's record was checked with
//! `SHA-256(secret)` of the very secret whose tag the entry keeps. A
//! presented secret that is not that one passes the tag comparison only if
//! its tag collides with the accepted secret's, under a key the attacker
//! never sees: as a PRF, each guess succeeds with probability about 2^-128,
//! the same as finding a second preimage of the 128-bit stored hash (and no
//! answer depends on how close a guess came: the comparison is constant
//! time, and a mismatch goes on to the SHA-256 comparison exactly as
//! before). A tag reveals nothing of the secret either: a PRF output under
//! an unknown key, of a 256-bit random input. SipHash on 32 bytes is ~15
//! rounds of add-rotate-xor; SHA-256 is 64 rounds, twice.

use std::fmt;

use crate::model::ct_eq16;
use crate::rng;

/// The per-process key of [`SecretTag`]s. Never printed.
#[derive(Clone)]
pub struct TagKey([u64; 2]);

impl fmt::Debug for TagKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TagKey(..)")
    }
}

impl TagKey {
    /// A fresh key from the thread's CSPRNG.
    pub fn random() -> TagKey {
        let mut b = [0u8; 16];
        rng::fill(&mut b);
        let (k0, k1) = b.split_at(8);
        TagKey([le64(k0), le64(k1)])
    }

    /// The tag of `secret` under this key.
    pub fn tag(&self, secret: &[u8]) -> SecretTag {
        let (h0, h1) = siphash24_128(self.0[0], self.0[1], secret);
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&h0.to_le_bytes());
        t[8..].copy_from_slice(&h1.to_le_bytes());
        SecretTag(t)
    }
}

/// A keyed tag of an accepted secret (see the module). Never printed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretTag(pub [u8; 16]);

impl fmt::Debug for SecretTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretTag(..)")
    }
}

impl SecretTag {
    /// Constant-time comparison.
    pub fn matches(&self, other: &SecretTag) -> bool {
        ct_eq16(&self.0, &other.0)
    }
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

/// SipHash-2-4, 128-bit output (the `siphasher` crate): its two 64-bit
/// halves.
fn siphash24_128(k0: u64, k1: u64, msg: &[u8]) -> (u64, u64) {
    use siphasher::sip128::{Hasher128, SipHasher24};
    use std::hash::Hasher;
    let mut h = SipHasher24::new_with_keys(k0, k1);
    h.write(msg);
    let out = h.finish128();
    (out.h1, out.h2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference key: bytes 0, 1, ..., 15.
    const K0: u64 = 0x0706_0504_0302_0100;
    const K1: u64 = 0x0f0e_0d0c_0b0a_0908;

    #[test]
    fn reference_vectors_of_the_128_bit_output() {
        // vectors.h of the reference implementation (vectors_sip128), key
        // 00..0f, message 00..(n-1).
        let cases: [(usize, [u8; 16]); 3] = [
            (0, [0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02, 0x93]),
            (1, [0xda, 0x87, 0xc1, 0xd8, 0x6b, 0x99, 0xaf, 0x44, 0x34, 0x76, 0x59, 0x11, 0x9b, 0x22, 0xfc, 0x45]),
            (2, [0x81, 0x77, 0x22, 0x8d, 0xa4, 0xa4, 0x5d, 0xc7, 0xfc, 0xa3, 0x8b, 0xde, 0xf6, 0x0a, 0xff, 0xe4]),
        ];
        let msg: Vec<u8> = (0..64u8).collect();
        for (len, want) in cases {
            assert_eq!(TagKey([K0, K1]).tag(&msg[..len]).0, want, "length {len}");
        }
    }

    #[test]
    fn tags_differ_by_secret_and_by_key() {
        let (a, b) = (TagKey::random(), TagKey::random());
        let s = [7u8; 32];
        let mut t = s;
        t[31] ^= 1;
        assert!(a.tag(&s).matches(&a.tag(&s)));
        assert!(!a.tag(&s).matches(&a.tag(&t)));
        assert!(!a.tag(&s).matches(&b.tag(&s)));
    }
}
