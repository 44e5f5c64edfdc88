#![no_main]
use libfuzzer_sys::fuzz_target;

// The HTTP fetch decodes stored batches (any bytes a producer sent with a
// valid CRC): errors, never a panic, and decompression within its bound.
fuzz_target!(|data: &[u8]| {
    let _ = silt_tiering::records::decode_all(data, 1 << 20);
});
