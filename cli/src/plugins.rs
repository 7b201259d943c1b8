//! `objectos plugins` and `objectos permissions`: the lifecycle and the grants.

use super::*;

pub(crate) async fn plugins(cli: &Cli, cmd: &PluginsCmd) -> Out {
    let mutating = !matches!(cmd, PluginsCmd::List | PluginsCmd::Show { .. } | PluginsCmd::Graph { .. } | PluginsCmd::Settings { .. });
    let kernel = open(cli, mutating).await?;
    let result = plugins_in(cli, cmd, &kernel).await.map_err(|f| f.suggest(&kernel));
    if mutating {
        kernel.shutdown().await;
    } else {
        kernel.flush();
    }
    result
}

pub(crate) async fn plugins_in(cli: &Cli, cmd: &PluginsCmd, kernel: &Kernel) -> Out {
    let show = |id: &str, verb: &str| -> Out {
        let info = kernel.plugin(id)?;
        if cli.json {
            print_json(&info);
        } else {
            println!("{verb} {} {} (now {})", info.manifest.id, info.manifest.version, info.state);
        }
        Ok(())
    };
    match cmd {
        PluginsCmd::List => {
            let list = kernel.plugins()?;
            if cli.json {
                print_json(&list);
            } else if list.is_empty() {
                println!("No plugins installed. Install a package with `objectos plugins install PATH`.");
            } else {
                print!("{}", render::plugin_table(&list));
            }
        }
        PluginsCmd::Show { id } => {
            let info = kernel.plugin(id)?;
            if cli.json {
                print_json(&info);
            } else {
                print!("{}", render::plugin_detail(&info));
            }
        }
        PluginsCmd::Settings { id } => {
            let settings = kernel.settings(id)?;
            if cli.json {
                print_json(&settings);
            } else {
                print!("{}", render::settings(id, &settings));
            }
        }
        PluginsCmd::Set { id, key, value, unset } => {
            let declared = kernel.settings(id)?;
            let kind = declared.iter().find(|s| &s.key == key).map(|s| s.setting.kind);
            let value = if *unset {
                serde_json::Value::Null
            } else {
                let text = match value {
                    Some(v) => v.clone(),
                    None => {
                        let mut line = String::new();
                        std::io::stdin().read_line(&mut line).map_err(|e| anyhow::anyhow!("reading the value of `{key}` from standard input: {e}"))?;
                        line.trim_end_matches(['\n', '\r']).to_string()
                    }
                };
                match kind {
                    Some(objectos_kernel::model::manifest::SettingKind::String) | None => serde_json::Value::String(text),
                    // Typed values are JSON (`5`, `true`); what does not parse is refused by type.
                    Some(_) => serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
                }
            };
            let mut change = serde_json::Map::new();
            change.insert(key.clone(), value);
            kernel.set_settings(id, change)?;
            let secret = declared.iter().any(|s| &s.key == key && s.setting.secret);
            if !cli.json {
                println!("{} {key} of {id}{}", if *unset { "unset" } else { "set" }, if secret && !*unset { " (secret: it will not be shown again)" } else { "" });
            }
        }
        PluginsCmd::Install { path, force, reinstall } => {
            let out = if *reinstall { kernel.reinstall_package(path).await? } else { kernel.install_package(path, *force).await? };
            if cli.json {
                print_json(&out);
            } else {
                match &out.upgraded_from {
                    Some(from) if *from == out.version => println!("Reinstalled {} {} (now {})", out.id, out.version, out.state),
                    Some(from) => println!("Upgraded {} from {from} to {} (now {})", out.id, out.version, out.state),
                    None => println!("Installed {} {} (now {})", out.id, out.version, out.state),
                }
                if !out.pending.is_empty() {
                    println!("It needs approval before it can be enabled: {}", printable(&out.pending.join(", ")));
                    println!("Review with `objectos permissions list {}`, approve with `objectos permissions grant {} --all`.", out.id, out.id);
                }
            }
        }
        PluginsCmd::Load { id } => match runner_elsewhere(kernel) {
            Some(runner) => ask_runner(cli, kernel, &runner, id, State::Loaded, false).await?,
            None => {
                kernel.load(id).await?;
                show(id, "Loaded")?;
            }
        },
        PluginsCmd::Enable { id, with_deps } => match runner_elsewhere(kernel) {
            Some(runner) => ask_runner(cli, kernel, &runner, id, State::Enabled, *with_deps).await?,
            None => {
                kernel.enable(id, *with_deps).await?;
                show(id, "Enabled")?;
            }
        },
        PluginsCmd::Disable { id, cascade } => match runner_elsewhere(kernel) {
            Some(runner) => ask_runner(cli, kernel, &runner, id, State::Disabled, *cascade).await?,
            None => {
                kernel.disable(id, *cascade).await?;
                show(id, "Disabled")?;
            }
        },
        PluginsCmd::Unload { id } => match runner_elsewhere(kernel) {
            Some(runner) => ask_runner(cli, kernel, &runner, id, State::Installed, false).await?,
            None => {
                kernel.unload(id).await?;
                show(id, "Unloaded")?;
            }
        },
        PluginsCmd::Uninstall { id, delete_records } => {
            kernel.uninstall_with(id, objectos_kernel::host::Uninstall { keep_records: !*delete_records }).await?;
            if cli.json {
                print_json(&json!({ "uninstalled": id }));
            } else {
                println!("Uninstalled {id}");
            }
        }
        PluginsCmd::Graph { format } => {
            let g = kernel.graph();
            match format {
                GraphFormat::Json => print_json(&g),
                GraphFormat::Dot => print!("{}", for_terminal(&render::graph_dot(&g))),
                GraphFormat::Text if cli.json => print_json(&g),
                GraphFormat::Text => print!("{}", render::graph_text(&g)),
            }
        }
    }
    Ok(())
}

/// Another process runs the plugins: ask it to bring `id` to `desired` (with the related
/// plugins), wait until it has, and say what it did.
async fn ask_runner(cli: &Cli, kernel: &Kernel, runner: &RunnerInfo, id: &str, desired: State, related: bool) -> Out {
    let outcome = objectos_admin::lifecycle::ask_runner(kernel, id, desired, related).await?;
    if cli.json {
        let list: Vec<Value> = outcome.iter().map(|r| json!({ "id": r.plugin, "state": r.state, "done": r.done, "error": r.error })).collect();
        print_json(&json!({ "runner": runner, "plugins": list }));
        return Ok(());
    }
    let by = format!("{} (process {})", runner.what, runner.pid);
    let verb = match desired {
        State::Enabled => "Enabled",
        State::Loaded => "Loaded",
        State::Installed => "Unloaded",
        _ => "Disabled",
    };
    if outcome.is_empty() {
        println!("{id} is {} already, in {by}", kernel.plugin(id)?.state);
    }
    for r in &outcome {
        println!("{verb} {} in {by} (now {})", r.plugin, r.state);
    }
    Ok(())
}

pub(crate) async fn permissions(cli: &Cli, cmd: &PermissionsCmd) -> Out {
    let start = matches!(cmd, PermissionsCmd::Revoke { .. });
    let kernel = open(cli, start).await?;
    let result: Out = async {
        match cmd {
            PermissionsCmd::List { id } => {
                let info = kernel.plugin(id)?;
                if cli.json {
                    print_json(&info.permissions);
                } else {
                    print!("{}", render::permissions(&info));
                }
            }
            PermissionsCmd::Grant { id, permissions, all } => {
                let req = if *all { GrantRequest::All } else { GrantRequest::Some(permissions.clone()) };
                let added = kernel.grant(id, req)?;
                let info = kernel.plugin(id)?;
                if cli.json {
                    print_json(&json!({ "granted": added, "pending": info.pending }));
                } else {
                    report_grants(&info, &added, "Granted");
                }
            }
            PermissionsCmd::Revoke { id, permissions, cascade } => {
                let removed = kernel.revoke(id, permissions, *cascade).await?;
                let info = kernel.plugin(id)?;
                if cli.json {
                    print_json(&json!({ "revoked": removed, "state": info.state }));
                } else {
                    report_grants(&info, &removed, "Revoked");
                }
            }
        }
        Ok(())
    }
    .await
    .map_err(|f: Failure| f.suggest(&kernel));
    if start {
        kernel.shutdown().await;
    } else {
        kernel.flush();
    }
    result
}

pub(crate) fn report_grants(info: &PluginInfo, changed: &[String], verb: &str) {
    if changed.is_empty() {
        println!("Nothing changed for {}.", info.manifest.id);
    } else {
        println!("{verb} for {}: {}", info.manifest.id, printable(&changed.join(", ")));
    }
    if info.pending.is_empty() {
        println!("{} is {}; no required permission is pending.", info.manifest.id, info.state);
    } else {
        println!("{} is {}; still pending: {}", info.manifest.id, info.state, printable(&info.pending.join(", ")));
    }
}
