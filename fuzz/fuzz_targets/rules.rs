//! Rule files (`run --rules`, TOML): a bad file must be an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::rules::Rules;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Rules::parse(s, "fuzz.toml");
    }
});
