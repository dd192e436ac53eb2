//! `multiproc::fuzzing::pickle` (see ../README.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multiproc::fuzzing::pickle(data);
});
