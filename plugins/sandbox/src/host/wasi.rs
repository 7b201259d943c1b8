//! WASI 0.2 as a plugin gets it: linked interface by interface, over a context that holds only
//! the plugin's granted folders.

use objectos_kernel::PluginContext;

use super::HostState;

/// WASI as a plugin gets it: clocks, random, and the folders it was granted, each at its own
/// absolute path (read-only for `fs.read`). No environment variables, no arguments, stdin
/// empty, stdout and stderr discarded (a plugin writes to its log). Sockets are not linked at
/// all ([`link_wasi`]): web requests go through the `http` import, which checks each. The
/// folders are those granted when the instance starts; the `files` import reads the grants at
/// each call.
pub(super) fn plugin_wasi(ctx: &PluginContext) -> wasmtime_wasi::WasiCtx {
    use wasmtime_wasi::{DirPerms, FilePerms};
    let mut b = wasmtime_wasi::WasiCtxBuilder::new();
    let host = ctx.host_folders();
    for f in ctx.folders() {
        // WASI's file calls are not checked one by one as the `files` import's are, so a
        // folder is not preopened at all when it holds the host's own data or lies in it,
        // or when it is no longer the folder the admin approved.
        if !objectos_kernel::model::views::host_folders_meeting(&f.path, &host).is_empty() {
            ctx.logger().warn(format!("the granted folder {} holds ObjectOS's own data, so the plugin's WASI file system does not get it (the files interface does, without that data)", f.path.display()));
            continue;
        }
        if let Err(why) = super::files::open_granted(&f) {
            ctx.logger().warn(format!("{why}; the plugin's WASI file system does not get it"));
            continue;
        }
        let (dirs, files) = if f.write { (DirPerms::all(), FilePerms::all()) } else { (DirPerms::READ, FilePerms::READ) };
        if let Err(e) = b.preopened_dir(&f.path, f.path.to_string_lossy(), dirs, files) {
            ctx.logger().warn(format!("the granted folder {} is not available to the plugin's WASI file system: {e}", f.path.display()));
        }
    }
    b.build()
}

/// The WASI 0.2 packages a component may import, each linked interface by interface by
/// [`link_wasi`]: `wasi:sockets` is not among them, so a component importing it is refused at
/// install with its name, and nothing of it exists in an instance.
pub(crate) const WASI_LINKED: [&str; 5] = ["wasi:cli/", "wasi:clocks/", "wasi:filesystem/", "wasi:io/", "wasi:random/"];

/// The resource table, for WASI's io interfaces.
struct WasiIo;

impl wasmtime::component::HasData for WasiIo {
    type Data<'a> = &'a mut wasmtime::component::ResourceTable;
}

/// Link the WASI interfaces of [`WASI_LINKED`], one by one (as wasmtime-wasi's own
/// `add_to_linker_sync` does, without sockets): the context each reaches is [`plugin_wasi`]'s.
pub(crate) fn link_wasi(l: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sync};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
    type S = HostState;
    clocks::wall_clock::add_to_linker::<S, WasiClocks>(l, S::clocks)?;
    clocks::monotonic_clock::add_to_linker::<S, WasiClocks>(l, S::clocks)?;
    random::random::add_to_linker::<S, WasiRandom>(l, S::random)?;
    random::insecure::add_to_linker::<S, WasiRandom>(l, S::random)?;
    random::insecure_seed::add_to_linker::<S, WasiRandom>(l, S::random)?;
    // The command world's interfaces that guest toolchains import: the environment and the
    // arguments are empty, stdin is empty, what is written out goes nowhere, exit ends the call.
    cli::exit::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::environment::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stdin::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stdout::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stderr::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_input::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_output::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stdin::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stdout::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stderr::add_to_linker::<S, WasiCli>(l, S::cli)?;
    filesystem::preopens::add_to_linker::<S, WasiFilesystem>(l, S::filesystem)?;
    sync::filesystem::types::add_to_linker::<S, WasiFilesystem>(l, S::filesystem)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<S, WasiIo>(l, |s| &mut s.table)?;
    sync::io::poll::add_to_linker::<S, WasiIo>(l, |s| &mut s.table)?;
    sync::io::streams::add_to_linker::<S, WasiIo>(l, |s| &mut s.table)?;
    Ok(())
}
