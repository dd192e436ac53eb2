//! `multiproc::fuzzing::pool_frames` (see ../README.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multiproc::fuzzing::pool_frames(data);
});
