//! The fuzz bodies of `pgpool_rs::fuzzing` on stable Rust: each runs over its seed
//! corpus (`fuzz/corpus/<target>/`), over inputs that once crashed it (regressions),
//! and over a few thousand deterministic mutations of the seeds. The real fuzzing is
//! `cargo +nightly fuzz run <target>` (see README "Fuzzing"); this keeps the bodies
//! compiling and catches the shallow bugs in every `cargo test`.

use std::path::PathBuf;

use pgpool_rs::fuzzing::{self, TARGETS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Mutated inputs per target.
const MUTATIONS: usize = 3000;

/// Inputs that made a fuzz body panic before the fix, by target.
const REGRESSIONS: &[(&str, &[u8])] = &[];

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("read seed"))
        .collect();
    assert!(
        seeds.len() >= 3,
        "{target}: too few seeds in {}",
        dir.display()
    );
    seeds
}

/// One random edit of `input`, biased towards what breaks parsers: flipped bits,
/// boundary bytes, truncation, duplication and splices with another seed.
fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let len = out.len();
        match rng.gen_range(0..7) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                out[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                out[i] = [0, 0xff, 0x7f, 0x80, b',', b'=', b'"', b'\n'][rng.gen_range(0..8)];
            }
            2 => out.truncate(rng.gen_range(0..=len)),
            3 => {
                let i = rng.gen_range(0..=len);
                let n = rng.gen_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                out.splice(i..i, bytes);
            }
            4 if len > 0 => {
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..=len.min(a + 64));
                let chunk = out[a..b].to_vec();
                out.splice(a..a, chunk);
            }
            5 if !other.is_empty() => {
                let cut = rng.gen_range(0..=len);
                let from = rng.gen_range(0..other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ if len >= 4 => {
                // A 32-bit length-like field set to an edge value.
                let i = rng.gen_range(0..=len - 4);
                let v: u32 =
                    [0, 3, 4, 5, 8, 0x7fff_ffff, 0xffff_ffff, 1 << 30][rng.gen_range(0..8)];
                out[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            _ => out.push(rng.gen()),
        }
    }
    out
}

fn run_target(name: &str, body: fn(&[u8])) {
    let seeds = seeds(name);
    for seed in &seeds {
        body(seed);
    }
    for (target, input) in REGRESSIONS {
        if *target == name {
            body(input);
        }
    }
    let mut rng = StdRng::seed_from_u64(0x5eed_0000 ^ name.len() as u64);
    for _ in 0..MUTATIONS {
        let a = &seeds[rng.gen_range(0..seeds.len())];
        let b = &seeds[rng.gen_range(0..seeds.len())];
        let input = mutate(&mut rng, a, b);
        body(&input);
    }
    // Plain random bytes too.
    for _ in 0..MUTATIONS / 10 {
        let n = rng.gen_range(0..64);
        let input: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
        body(&input);
    }
}

#[test]
fn every_target_has_a_smoke_test() {
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "client_messages",
            "startup_packet",
            "scram_server",
            "config"
        ]
    );
    for (target, _) in REGRESSIONS {
        assert!(
            names.contains(target),
            "regression for unknown target {target}"
        );
    }
}

#[test]
fn client_messages() {
    run_target("client_messages", fuzzing::client_messages);
}

#[test]
fn startup_packet() {
    run_target("startup_packet", fuzzing::startup_packet);
}

#[test]
fn scram_server() {
    run_target("scram_server", fuzzing::scram_server);
}

#[test]
fn config() {
    run_target("config", fuzzing::config);
}
