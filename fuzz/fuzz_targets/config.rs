//! Any text as the config file: never a panic; a config that loads compiles into settings and
//! survives its own serialisation.
#![no_main]

use dragonfly_injector::config::Config;
use dragonfly_injector::inject::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = Config::from_yaml(text) else { return };
    let _ = Settings::new(&config, Some("dragonfly-system"));
    let json = serde_json::to_value(&config).expect("a loaded config serialises");
    let again: Config = serde_json::from_value(json).expect("and reads back");
    assert_eq!(again, config);
});
