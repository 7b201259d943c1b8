//! `objectos service install|uninstall|status`: `objectos serve` as a systemd user service, so
//! the plugins keep running after the console closes and come back after a reboot.

use super::*;

#[derive(Subcommand)]
pub(crate) enum ServiceCmd {
    /// Write a systemd user unit that runs `objectos serve` on this data directory, and start
    /// it (where systemd's user manager runs; elsewhere, say how to run it).
    Install {
        /// Where the service listens (a loopback address).
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: std::net::SocketAddr,
    },
    /// Stop the service and remove its unit.
    Uninstall,
    /// The unit, whether systemd runs it, and which process runs the plugins now.
    Status,
}

/// The unit's name for `data_dir`: one service per data directory.
fn unit_name(data_dir: &Path) -> String {
    // FNV-1a: stable across builds, so a later `objectos` finds the unit an earlier one wrote.
    let hash = data_dir.to_string_lossy().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("objectos-{:08x}.service", hash >> 32)
}

/// Where systemd looks for user units: `$XDG_CONFIG_HOME/systemd/user`, else `~/.config/...`.
fn unit_dir() -> Result<PathBuf, Failure> {
    let base = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).filter(|p| p.is_absolute()).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    base.map(|b| b.join("systemd").join("user")).ok_or_else(|| anyhow::anyhow!("neither XDG_CONFIG_HOME nor HOME is set, so there is no place for a user unit").into())
}

/// A value in a unit's `ExecStart`, quoted as systemd reads it.
fn quoted(arg: &str) -> String {
    let escaped = arg.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").replace('%', "%%");
    format!("\"{escaped}\"")
}

/// The unit that runs `program serve` on `data_dir`.
pub(crate) fn unit(program: &Path, data_dir: &Path, listen: std::net::SocketAddr) -> String {
    format!(
        "[Unit]\nDescription=ObjectOS: the plugins of {dir}\nAfter=network.target\n\n[Service]\nType=simple\nExecStart={exe} --data-dir {dirq} serve --listen {listen}\nRestart=on-failure\nRestartSec=2\n# serve stops every plugin on SIGTERM, within its hook timeouts.\nTimeoutStopSec=60\n\n[Install]\nWantedBy=default.target\n",
        dir = data_dir.display().to_string().replace('%', "%%").replace('\n', " "),
        exe = quoted(&program.to_string_lossy()),
        dirq = quoted(&data_dir.to_string_lossy()),
    )
}

/// `systemctl --user ARGS`: `None` when systemd's user manager cannot be reached here.
fn systemctl(args: &[&str]) -> Option<std::process::Output> {
    let program = std::env::var_os("OBJECTOS_SYSTEMCTL").unwrap_or_else(|| "systemctl".into());
    let reachable = std::process::Command::new(&program).args(["--user", "show-environment"]).output().ok().is_some_and(|o| o.status.success());
    if !reachable {
        return None;
    }
    std::process::Command::new(&program).arg("--user").args(args).output().ok()
}

const NO_SYSTEMD: &str = "systemd's user manager is not running here (a container, or a session without it)";

pub(crate) async fn service(cli: &Cli, cmd: &ServiceCmd) -> Out {
    let data_dir = std::path::absolute(data_dir(cli)).map_err(|e| anyhow::anyhow!("the data directory: {e}"))?;
    let name = unit_name(&data_dir);
    let file = unit_dir()?.join(&name);
    match cmd {
        ServiceCmd::Install { listen } => {
            if !listen.ip().is_loopback() {
                return Err(anyhow::anyhow!("{listen} is not a loopback address: serve listens on this machine only until the HTTP API has accounts").into());
            }
            let program = std::env::current_exe().map_err(|e| anyhow::anyhow!("cannot tell where this program is: {e}"))?;
            std::fs::create_dir_all(file.parent().unwrap_or(Path::new("."))).map_err(|e| KernelError::Io { path: file.clone(), source: e })?;
            std::fs::write(&file, unit(&program, &data_dir, *listen)).map_err(|e| KernelError::Io { path: file.clone(), source: e })?;
            println!("wrote {}", file.display());
            match systemctl(&["daemon-reload"]).and_then(|_| systemctl(&["enable", "--now", &name])) {
                Some(o) if o.status.success() => println!("started {name}: the plugins of {} run in it, and again after a reboot once you log in (`loginctl enable-linger` runs it without a login)", data_dir.display()),
                Some(o) => return Err(anyhow::anyhow!("systemctl --user enable --now {name} failed: {}", String::from_utf8_lossy(&o.stderr).trim()).into()),
                None => println!("{NO_SYSTEMD}: start it in a session that has one with `systemctl --user enable --now {name}`, or have your init system run:\n  {} --data-dir {} serve --listen {listen}", program.display(), data_dir.display()),
            }
            Ok(())
        }
        ServiceCmd::Uninstall => {
            if let Some(o) = systemctl(&["disable", "--now", &name]) {
                if !o.status.success() && file.exists() {
                    eprintln!("objectos: warning: systemctl --user disable --now {name}: {}", printable(String::from_utf8_lossy(&o.stderr).trim()));
                }
            }
            match std::fs::remove_file(&file) {
                Ok(()) => println!("removed {}", file.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("no unit for {} ({} does not exist)", data_dir.display(), file.display()),
                Err(e) => return Err(KernelError::Io { path: file, source: e }.into()),
            }
            let _ = systemctl(&["daemon-reload"]);
            Ok(())
        }
        ServiceCmd::Status => {
            let state = systemctl(&["is-active", &name]).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
            let kernel = open(cli, false).await?;
            let runner = kernel.runner()?;
            kernel.flush();
            if cli.json {
                print_json(&json!({ "unit": file, "installed": file.exists(), "systemd": state, "runner": runner }));
                return Ok(());
            }
            println!("unit      {} ({})", file.display(), if file.exists() { "installed" } else { "not installed" });
            println!("systemd   {}", state.as_deref().unwrap_or(NO_SYSTEMD));
            match runner {
                Some(r) => println!("runner    {} (process {} on {}) since {}", printable(&r.what), r.pid, printable(&r.host), render::time(r.since)),
                None => println!("runner    none: no process runs the plugins of {} now", data_dir.display()),
            }
            Ok(())
        }
    }
}

/// The Prometheus text of the runner that answers at `address` (`http://HOST:PORT`, as the
/// lease records it), read over loopback HTTP with a deadline and a size bound.
pub(crate) fn runner_metrics(address: &str) -> Result<String, Failure> {
    use std::io::{Read, Write};
    const MAX: u64 = 16 << 20;
    let fail = |why: String| Failure::from(anyhow::anyhow!("the runner at {address} did not give its metrics: {why}"));
    let host = address.strip_prefix("http://").ok_or_else(|| fail("not an http:// address".into()))?;
    let addr: std::net::SocketAddr = host.parse().map_err(|e| fail(format!("{e}")))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(|e| fail(e.to_string()))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| fail(e.to_string()))?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    s.take(MAX).read_to_end(&mut raw).map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| fail("no complete answer".into()))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(fail(format!("HTTP {status}: {}", body.trim())));
    }
    // axum answers a known length; a chunked body would carry its sizes.
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Err(fail("a chunked answer".into()));
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_quoted_as_systemd_reads_it() {
        assert_eq!(quoted("/srv/shop data"), "\"/srv/shop data\"");
        assert_eq!(quoted(r#"/a"b\c%d"#), r#""/a\"b\\c%%d""#);
        assert_eq!(quoted("/x\ny"), "\"/x\\ny\"");
        let unit = unit(Path::new("/usr/bin/objectos"), Path::new("/srv/100%"), "127.0.0.1:7878".parse().unwrap());
        assert!(unit.contains("Description=ObjectOS: the plugins of /srv/100%%\n"), "{unit}");
        assert!(unit.contains("ExecStart=\"/usr/bin/objectos\" --data-dir \"/srv/100%%\" serve --listen 127.0.0.1:7878\n"), "{unit}");
        assert_ne!(unit_name(Path::new("/srv/a")), unit_name(Path::new("/srv/b")));
    }
}
