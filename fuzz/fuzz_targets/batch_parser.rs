#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = silt_tiering::batch::parse_all(data);
    let _ = silt_tiering::batch::rewrite_chunk(&bytes::Bytes::copy_from_slice(data), 0, 0, 1 << 20, true, Some(1));
});
