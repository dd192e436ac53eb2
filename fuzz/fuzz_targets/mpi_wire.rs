//! `multiproc::fuzzing::mpi_wire` (see ../README.md); needs `--features mpi`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multiproc::fuzzing::mpi_wire(data);
});
