//! Stable property tests over arbitrary bytes for every fuzz target (`fuzz/`): each calls
//! the same `multiproc::fuzzing` entry point with a few thousand seeded inputs, and every
//! crash the fuzzers found is kept here as a regression test with its input.

use multiproc::fuzzing::{self, Tally};

mod common;

// ---- regressions: inputs the fuzzers found ----------------------------------------------

/// `fuzz/pool_ring`: a head 8 bytes below 2^64 (with a frame published there) made the
/// consumer's `head + total` overflow: a panic in debug builds, in the pool's dispatcher.
#[test]
fn pool_ring_head_near_the_top_of_the_counter() {
    let mut input = vec![0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    input.extend([0; 8]); // tail
    input.push(0); // a ring of 64 bytes
    input.extend([0; 56]);
    input.extend([0, 0, 0, 0, 3, 0, 0, 0]); // at 56 (the head's offset): an empty frame
    let t = fuzzing::pool_ring(&input);
    assert_eq!((t.ok, t.refused), (1, 0), "{t:?}");
}

/// `shm_registry` (found by its property test below): a registry line whose first
/// character is not ASCII made the parser split inside it, a panic in whoever sweeps
/// `/dev/shm` (the file is another process's).
#[test]
fn shm_registry_line_starting_with_a_multibyte_character() {
    let t = fuzzing::shm_registry("\u{e9}843 mp-58-14-x\n+7 mp-1-2-y\n".as_bytes());
    assert!(t.ok >= 1, "{t:?}");
}

/// `fuzz/shm_header`: a `Value<u64>` handle to a segment whose header says it holds 0
/// values (right magic, kind, element size and alignment) attached, and its first use
/// panicked ("index 0 out of range for length 0") in the receiving process.
#[test]
fn shm_header_value_of_length_zero() {
    let mut input = vec![7, 9, 0xc7, 0];
    let mut seg = vec![0u8; 200];
    seg[8..12].copy_from_slice(&8u32.to_le_bytes());
    seg[12..16].copy_from_slice(&8u32.to_le_bytes());
    input.extend(seg);
    let t = fuzzing::shm_header(&input);
    assert_eq!(t, Tally { ok: 0, refused: 1 });
}

/// A two-party `Barrier` segment (magic, kind, parties) whose word `at` holds `v`, waited
/// on with a zero timeout.
fn barrier_with_word(at: usize, v: u32) -> Tally {
    let mut input = vec![6, 1, 0x7f, 0];
    let mut seg = vec![0u8; 128];
    seg[20..24].copy_from_slice(&2u32.to_le_bytes());
    seg[at..at + 4].copy_from_slice(&v.to_le_bytes());
    input.extend(seg);
    fuzzing::shm_header(&input)
}

/// `fuzz/shm_header`'s barrier case: a segment whose internal lock word holds the
/// "not recoverable" mark (only foreign bytes can) hit an `unreachable!` in `wait_timeout`.
#[test]
fn shm_header_barrier_with_an_unrecoverable_internal_lock() {
    assert_eq!(
        barrier_with_word(32, 0x3fff_ffff),
        Tally { ok: 1, refused: 0 }
    );
}

/// As above, with the waiting count at `u32::MAX`: the arrival index `+ 1` overflowed.
#[test]
fn shm_header_barrier_with_a_full_count() {
    assert_eq!(barrier_with_word(12, u32::MAX), Tally { ok: 1, refused: 0 });
}

/// `fuzz/shm_header` (a hang, libFuzzer's 10 s timeout): a barrier segment whose internal
/// lock word names a live thread (here the test's own process) made `wait_timeout(0)` wait
/// for that lock with no limit, forever.
#[test]
fn shm_header_barrier_whose_internal_lock_a_live_thread_holds() {
    let pid = std::process::id();
    let t = common::deadline(10, move || barrier_with_word(32, pid));
    assert_eq!(t, Tally { ok: 1, refused: 0 });
}

// ---- the seeded generator ---------------------------------------------------------------

/// xorshift64*: deterministic, so a failure names its case and reruns identically.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Up to `max - 1` random bytes.
    fn some(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max) as usize;
        self.bytes(n)
    }
    /// A byte that is small more often than not: lengths, tags and variant indices.
    fn small(&mut self) -> u8 {
        match self.below(4) {
            0 => self.next() as u8,
            _ => self.below(6) as u8,
        }
    }
    /// `b` with a few random changes (or none), as a fuzzer's mutations would make.
    fn mutate(&mut self, mut b: Vec<u8>) -> Vec<u8> {
        for _ in 0..self.below(4) {
            match self.below(4) {
                0 if !b.is_empty() => {
                    let i = self.below(b.len() as u64) as usize;
                    b[i] = self.next() as u8;
                }
                1 if !b.is_empty() => b.truncate(self.below(b.len() as u64) as usize),
                2 => b.extend(self.some(8)),
                _ => {}
            }
        }
        b
    }
}

/// A `multiproc::fuzzing` entry point.
type Target = fn(&[u8]) -> Tally;

/// Runs `cases` inputs from `make` through `target` and returns the sum of the tallies.
fn run(
    seed: u64,
    cases: usize,
    mut make: impl FnMut(&mut Rng) -> Vec<u8>,
    target: Target,
) -> Tally {
    let mut rng = Rng(seed);
    let mut sum = Tally::default();
    for case in 0..cases {
        let input = make(&mut rng);
        let t = std::panic::catch_unwind(|| target(&input))
            .unwrap_or_else(|_| panic!("case {case} (seed {seed:#x}) panicked on {input:02x?}"));
        sum.ok += t.ok;
        sum.refused += t.refused;
    }
    sum
}

fn le(v: u64, n: usize) -> Vec<u8> {
    v.to_le_bytes()[..n].to_vec()
}

// ---- one property per target -------------------------------------------------------------

#[test]
fn pool_ring_arbitrary_contents_never_panic_or_overrun() {
    let t = run(
        0x9001,
        4000,
        |r| {
            let sel = r.below(7) as u8;
            let cap = 64u64 << sel;
            let head = match r.below(4) {
                0 => r.next(),
                1 => (u64::MAX - 7) - r.below(cap / 8) * 8,
                _ => r.below(1 << 20) * 8,
            };
            let tail = match r.below(5) {
                0 => r.next(),
                _ => head.wrapping_add(r.below(cap / 8 + 2) * 8),
            };
            let mut data = r.bytes(cap as usize);
            // Plausible frame headers at aligned places, so frames are found.
            let mut at = 0;
            while at + 8 <= data.len() {
                let len = r.below(cap / 3) as u32;
                let kind = [3, 4, u32::MAX, r.next() as u32][r.below(4) as usize];
                data[at..at + 4].copy_from_slice(&len.to_le_bytes());
                data[at + 4..at + 8].copy_from_slice(&kind.to_le_bytes());
                at += 8 * (1 + r.below(8) as usize);
            }
            let mut b = [le(head, 8), le(tail, 8), vec![sel]].concat();
            b.extend(data);
            r.mutate(b)
        },
        fuzzing::pool_ring,
    );
    assert!(t.ok > 500 && t.refused > 500, "{t:?}");
}

#[test]
fn pool_frames_arbitrary_frames_decode_or_fail_typed() {
    let t = run(
        0x9002,
        4000,
        |r| {
            let mut b = vec![r.below(6) as u8];
            if b[0] == 4 {
                b.extend(le(r.next(), 4));
            }
            // Results header: id, first, count (small), elapsed.
            let count = r.below(5);
            b.extend(
                [
                    le(r.next(), 8),
                    le(r.below(100), 4),
                    le(count, 4),
                    le(r.next(), 8),
                ]
                .concat(),
            );
            for _ in 0..count + r.below(2) {
                match r.below(3) {
                    0 => {
                        // A framed u32 (what `decode::<u32>` wants) or a framed string.
                        let v = postcard::to_stdvec(&(r.next() as u32)).unwrap();
                        b.push(1);
                        b.extend(le(v.len() as u64, 4));
                        b.extend(v);
                    }
                    1 => {
                        b.push(0);
                        b.extend(r.some(12));
                    }
                    _ => b.extend(r.some(6)),
                }
            }
            r.mutate(b)
        },
        fuzzing::pool_frames,
    );
    assert!(t.ok > 1000 && t.refused > 1000, "{t:?}");
}

#[test]
fn queue_ring_foreign_memory_reads_or_fails_typed() {
    const DATA: u32 = 0x4441_5441;
    // The one frame format (src/ring/frame.rs): little-endian `[len][kind]`, and a wrap
    // marker of length 0 and kind u32::MAX.
    const WRAP: u32 = u32::MAX;
    let t = run(
        0x9003,
        1500,
        |r| {
            let biased = r.below(4) == 0;
            let flags =
                (r.below(6) as u8) << 1 | u8::from(r.below(8) == 0) | if biased { 0x80 } else { 0 };
            let cap = 4096u64 << ((flags >> 1) % 3);
            // Frames of postcard byte strings from 0, then the state naming some of them.
            let mut data = Vec::new();
            let n = r.below(6);
            for _ in 0..n {
                let msg = postcard::to_stdvec(&r.some(40)).unwrap();
                let kind = match r.below(10) {
                    0 => WRAP,
                    1 => r.next() as u32,
                    _ => DATA,
                };
                let len = if kind == WRAP { 0 } else { msg.len() as u32 };
                data.extend(len.to_le_bytes());
                data.extend(kind.to_le_bytes());
                data.extend(&msg);
                data.resize(data.len().next_multiple_of(8), 0);
            }
            let tail = if r.below(6) == 0 {
                r.next() & 0xffff_ffff
            } else {
                data.len() as u64
            };
            let head = if r.below(6) == 0 {
                r.next() & 0xffff_ffff
            } else {
                0
            };
            let puts = if r.below(8) == 0 {
                r.next() as u32
            } else {
                n as u32
            };
            let p = (puts as u64) << 32 | tail;
            let c = head;
            let lock = |r: &mut Rng| if r.below(8) == 0 { r.next() as u32 } else { 0 };
            let mut b = vec![flags];
            b.extend(
                [
                    le(p, 8),
                    le(c, 8),
                    le(if r.below(2) == 0 { p } else { 0 }, 8),
                ]
                .concat(),
            );
            b.extend([le(lock(r) as u64, 4), le(lock(r) as u64, 4)].concat());
            b.extend(le(r.below(2), 4));
            b.extend(le(r.below(3), 8));
            if biased {
                // Each side's `bias` and `busy`: never biased, biased to a thread id that
                // cannot exist (its revoker must not wait for it past the deadline),
                // marked revoking or revoked, or foreign; `busy` 0 or 1, or foreign.
                for _ in 0..2 {
                    let bias = match r.below(5) {
                        0 => 0,
                        1 => (1 << 22) + 3,
                        2 => (1 << 31) | ((1 << 22) + 3),
                        3 => (1 << 30) | 77,
                        _ => r.next() as u32,
                    };
                    let busy = match r.below(3) {
                        0 => 0,
                        1 => 1,
                        _ => r.next() as u32,
                    };
                    b.extend([le(bias as u64, 4), le(busy as u64, 4)].concat());
                }
            }
            if flags & 1 != 0 {
                b.extend(le(
                    if r.below(2) == 0 {
                        0x6d70_7175_6575_6532
                    } else {
                        r.next()
                    },
                    8,
                ));
                b.extend(le(cap, 8));
            }
            data.truncate(cap as usize);
            b.extend(data);
            r.mutate(b)
        },
        fuzzing::queue_ring,
    );
    // Both paths are exercised: the one ring module checks head and tail alignment and
    // wrap markers strictly, so about a fifth of the gets here succeed (404 of 1,947).
    assert!(t.ok > 300 && t.refused > 200, "{t:?}");
}

fn frame(r: &mut Rng, msg: &[u8]) -> Vec<u8> {
    let mut b = match r.below(10) {
        0 => [
            (-1i32).to_be_bytes().to_vec(),
            (msg.len() as u64).to_be_bytes().to_vec(),
        ]
        .concat(),
        1 => (r.next() as i32).to_be_bytes().to_vec(),
        _ => (msg.len() as i32).to_be_bytes().to_vec(),
    };
    b.extend(msg);
    b
}

#[test]
fn connection_arbitrary_streams_frame_or_fail_typed() {
    let t = run(
        0x9004,
        2000,
        |r| {
            let mut b = vec![r.next() as u8];
            for _ in 0..r.below(5) {
                let msg = match r.below(3) {
                    0 => postcard::to_stdvec(&(r.next(), "some text")).unwrap(),
                    1 => postcard::to_stdvec(&r.some(300)).unwrap(),
                    _ => r.some(20),
                };
                let f = frame(r, &msg);
                b.extend(f);
            }
            r.mutate(b)
        },
        fuzzing::connection,
    );
    assert!(t.ok > 1000 && t.refused > 500, "{t:?}");
}

#[test]
fn handshake_arbitrary_peers_are_refused_typed() {
    let t = run(
        0x9005,
        1500,
        |r| {
            let mut b = vec![r.below(2) as u8];
            let challenge = match r.below(4) {
                0 => r.bytes(20),
                1 => [b"{sha256}".to_vec(), r.bytes(40)].concat(),
                2 => [b"{md5}".to_vec(), r.some(30)].concat(),
                _ => r.some(40),
            };
            let msg = [b"#CHALLENGE#".to_vec(), challenge].concat();
            let f = frame(r, &msg);
            b.extend(f);
            let answer: &[u8] = [&b"#WELCOME#"[..], b"#FAILURE#", b""][r.below(3) as usize];
            let f = frame(r, answer);
            b.extend(f);
            r.mutate(b)
        },
        fuzzing::handshake,
    );
    // A correct challenge followed by `#WELCOME#` authenticates: both outcomes happen.
    assert!(t.ok > 40 && t.refused > 500, "{t:?}");
}

#[test]
fn codec_arbitrary_messages_decode_exactly_or_fail_typed() {
    let t = run(
        0x9006,
        4000,
        |r| {
            let mut b = vec![r.below(6) as u8];
            let msg = match r.below(5) {
                0 => postcard::to_stdvec(&r.next()).unwrap(),
                1 => postcard::to_stdvec("a string").unwrap(),
                2 => postcard::to_stdvec(&r.some(20)).unwrap(),
                // A pickle's shape (PROTO 4 ... STOP).
                3 => [vec![0x80, 4], r.some(10), vec![b'.']].concat(),
                _ => (0..r.below(12)).map(|_| r.small()).collect(),
            };
            b.extend(msg);
            r.mutate(b)
        },
        fuzzing::codec,
    );
    assert!(t.ok > 200 && t.refused > 1000, "{t:?}");
}

#[test]
fn pickle_arbitrary_pickles_are_data_or_fail_typed() {
    use std::collections::HashMap;
    let t = run(
        0x9007,
        3000,
        |r| {
            let mut b = vec![r.below(4) as u8];
            let o = serde_pickle::SerOptions::new();
            let msg = match r.below(4) {
                0 => serde_pickle::to_vec(&(r.next() as i64, "s", Some(1.5f64)), o).unwrap(),
                1 => {
                    let m: HashMap<String, Vec<i32>> = [("k".to_string(), vec![1, 2])].into();
                    serde_pickle::to_vec(&m, o).unwrap()
                }
                2 => serde_pickle::to_vec(&vec![r.next(); r.below(4) as usize], o).unwrap(),
                _ => [
                    vec![0x80, r.below(6) as u8],
                    (0..r.below(16)).map(|_| r.small()).collect(),
                    vec![b'.'],
                ]
                .concat(),
            };
            b.extend(msg);
            r.mutate(b)
        },
        fuzzing::pickle,
    );
    assert!(t.ok > 250 && t.refused > 500, "{t:?}");
}

#[test]
fn manager_arbitrary_messages_decode_or_fail_typed() {
    let t = run(
        0x9008,
        4000,
        |r| {
            let mut b = vec![r.below(4) as u8];
            b.extend((0..r.below(24)).map(|_| r.small()));
            b
        },
        fuzzing::manager,
    );
    assert!(t.ok > 500 && t.refused > 500, "{t:?}");
}

#[cfg(feature = "mpi")]
#[test]
fn mpi_wire_arbitrary_frames_decode_or_fail_typed() {
    let t = run(
        0x9009,
        4000,
        |r| {
            let mut b = vec![r.below(5) as u8];
            b.extend((0..r.below(24)).map(|_| r.small()));
            b
        },
        fuzzing::mpi_wire,
    );
    assert!(t.ok > 500 && t.refused > 500, "{t:?}");
}

#[test]
fn shm_header_foreign_segments_attach_or_fail_typed() {
    let t = run(
        0x900a,
        1500,
        |r| {
            let flags =
                (r.below(16) as u8) | u8::from(r.below(4) != 0) | (u8::from(r.below(4) != 0) << 3);
            let mut b = vec![r.below(9) as u8, flags];
            if (flags >> 1) & 3 >= 2 {
                b.extend(le(r.below(200), 4));
            }
            let size = r.below(300) as u16;
            b.extend(size.to_le_bytes());
            b.extend((0..size).map(|_| r.small()));
            r.mutate(b)
        },
        fuzzing::shm_header,
    );
    assert!(t.ok > 300 && t.refused > 300, "{t:?}");
}

#[test]
fn shm_registry_arbitrary_files_and_names_parse() {
    let t = run(
        0x900b,
        4000,
        |r| {
            let mut text = String::new();
            for _ in 0..r.below(6) {
                let line = match r.below(5) {
                    0 => format!("+{} mp-{}-{}-x", r.below(1000), r.below(99), r.below(99)),
                    1 => format!("k mp-{}-{}-k", r.below(99), r.below(99)),
                    2 => format!("- mp-{}-{}-", r.below(99), r.below(99)),
                    3 => format!("mp-{}-{}", r.below(9), r.next()),
                    _ => String::from_utf8_lossy(&r.some(10)).into_owned(),
                };
                text.push_str(&line);
                text.push('\n');
            }
            r.mutate(text.into_bytes())
        },
        fuzzing::shm_registry,
    );
    assert!(t.ok > 1000 && t.refused > 1000, "{t:?}");
}

/// The seed corpus the fuzz targets start from (`fuzz/seeds/`) is still what the decoders
/// accept: every target has a seed that decodes, so each run starts past the format's
/// checks (a seed that went stale after a format change fails here).
#[test]
fn seed_corpus_decodes() {
    let targets: &[(&str, Target)] = &[
        ("pool_ring", fuzzing::pool_ring),
        ("pool_frames", fuzzing::pool_frames),
        ("queue_ring", fuzzing::queue_ring),
        ("connection", fuzzing::connection),
        ("handshake", fuzzing::handshake),
        ("codec", fuzzing::codec),
        ("pickle", fuzzing::pickle),
        ("manager", fuzzing::manager),
        #[cfg(feature = "mpi")]
        ("mpi_wire", fuzzing::mpi_wire),
        ("shm_header", fuzzing::shm_header),
        ("shm_registry", fuzzing::shm_registry),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (name, target) in targets {
        let mut best = Tally::default();
        for seed in std::fs::read_dir(dir.join(name)).unwrap() {
            let t = target(&std::fs::read(seed.unwrap().path()).unwrap());
            best.ok = best.ok.max(t.ok);
        }
        assert!(best.ok >= 1, "no seed of {name} decodes");
    }
}
