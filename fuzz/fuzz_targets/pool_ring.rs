//! `multiproc::fuzzing::pool_ring` (see ../README.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multiproc::fuzzing::pool_ring(data);
});
