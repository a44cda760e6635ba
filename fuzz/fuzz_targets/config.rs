//! The configuration file: any text is accepted with settings in range or
//! refused with at least one message; what is accepted shows and checks.
#![no_main]
use berth_config::{Config, Overrides};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|text: &str| {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let path = DIR
        .get_or_init(|| tempfile::tempdir().unwrap())
        .path()
        .join("berth.toml");
    std::fs::write(&path, text).unwrap();
    match Config::load(Some(&path), &Overrides::default()) {
        Ok(loaded) => {
            let shown = loaded.show();
            assert!(shown.contains("[http]"), "{shown}");
            assert!(loaded.config.http.max_connections >= 1);
        }
        Err(e) => assert!(!e.0.is_empty(), "refused without a reason"),
    }
});
