#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    silt_agent::server::decode_frame_for_fuzzing(data);
});
