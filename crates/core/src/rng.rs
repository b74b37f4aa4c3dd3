//! Randomness for secrets and ids: one ChaCha20 CSPRNG per thread, seeded
//! from the OS, so minting never takes a global lock.

use std::cell::RefCell;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

thread_local! {
    static RNG: RefCell<ChaCha20Rng> = RefCell::new(seeded());
}

fn seeded() -> ChaCha20Rng {
    let mut seed = [0u8; 32];
    // Without OS entropy no secret can be safe; there is nothing to fall back to.
    getrandom::fill(&mut seed).expect("the OS random source is unavailable");
    ChaCha20Rng::from_seed(seed)
}

/// Fills `buf` from this thread's CSPRNG.
pub fn fill(buf: &mut [u8]) {
    RNG.with(|r| r.borrow_mut().fill_bytes(buf));
}

/// A random (version 4) UUID from this thread's CSPRNG.
pub fn uuid() -> uuid::Uuid {
    let mut b = [0u8; 16];
    fill(&mut b);
    uuid::Builder::from_random_bytes(b).into_uuid()
}
