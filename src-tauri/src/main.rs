//! `objectos-console [--data-dir DIR]`: the ObjectOS desktop administration console.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Started by this program itself to turn a package's JavaScript into a component.
    if let Some(code) = objectos_builtins::componentize_child_main() {
        return code;
    }
    let mut args = std::env::args_os().skip(1);
    let mut data_dir = None;
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--data-dir") => match args.next() {
                Some(d) => data_dir = Some(PathBuf::from(d)),
                None => return usage("--data-dir needs a directory"),
            },
            Some(s) if s.starts_with("--data-dir=") => data_dir = Some(PathBuf::from(&s["--data-dir=".len()..])),
            Some("--help" | "-h") => {
                println!("objectos-console [--data-dir DIR]\n\nThe ObjectOS desktop console. DIR defaults to $OBJECTOS_DATA_DIR, else the OS data folder.");
                return ExitCode::SUCCESS;
            }
            _ => return usage(&format!("unknown argument {}", a.to_string_lossy())),
        }
    }
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("OBJECTOS_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(objectos_kernel::host::PluginLogLayer::filtered())
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter))
        .try_init();
    #[cfg(target_os = "linux")]
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        eprintln!("objectos-console: no display: run it in a desktop session, or under `xvfb-run -a`. The headless `objectos` command needs no display.");
        return ExitCode::from(1);
    }
    let data_dir = objectos_builtins::host::resolve_data_dir(data_dir);
    match objectos_console::run(data_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("objectos-console: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("objectos-console: {msg}\nusage: objectos-console [--data-dir DIR]");
    ExitCode::from(2)
}
