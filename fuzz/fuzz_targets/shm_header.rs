//! `multiproc::fuzzing::shm_header` (see ../README.md).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multiproc::fuzzing::shm_header(data);
});
