//! `docker-api-proxy setup`: the interactive configuration wizard.
//!
//! `ask` puts the questions (through `dialoguer`, on the terminal) and checks
//! each answer with `check`; `model` and `templates` turn the answers into a
//! config file written by `render`. Before anything is written the whole file
//! goes through [`crate::config::load_from_str`], the loader behind
//! `--check-config`, with the environment variables the file references set
//! to the generated tokens; a file that would not load is never written.
//! Existing files are only replaced with `--force`, and the result is 0600.

mod ask;
mod check;
mod model;
mod render;
mod templates;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use model::{Answers, Auth, Secret};

/// Run the wizard and write `output`; `force` allows replacing a file.
pub fn run(output: &Path, force: bool) -> ExitCode {
    if output.exists() && !force {
        eprintln!(
            "docker-api-proxy setup: {} already exists; not touching it\n  \
             fix: choose another file with --output PATH, or pass --force to replace it",
            output.display()
        );
        return ExitCode::FAILURE;
    }
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        eprintln!(
            "docker-api-proxy setup: the wizard is interactive and needs a terminal\n  \
             fix: run it from a shell, or write the file by hand (see config.yaml)"
        );
        return ExitCode::FAILURE;
    }
    eprintln!("docker-api-proxy setup: writes {}", output.display());
    let answers = match ask::answers() {
        Ok(answers) => answers,
        Err(error) => {
            let _ = dialoguer::console::Term::stderr().show_cursor();
            eprintln!("\nsetup cancelled ({error}); nothing was written");
            return ExitCode::FAILURE;
        }
    };
    match finish(&answers, output, force) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("docker-api-proxy setup: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Validate, write and report.
fn finish(answers: &Answers, output: &Path, force: bool) -> Result<(), String> {
    let text = answers.render();
    let env = answers.env();
    let warnings = validate(&text, &env)?;
    write(output, &text, force)?;
    println!("\nwrote {} (mode 0600)", output.display());
    for warning in warnings {
        println!("  warning: {warning}");
    }
    print_next_steps(answers, output, &env);
    Ok(())
}

/// Load `text` as `--check-config` would, with `env` as the environment.
/// Returns the loader's warnings, or every error.
pub fn validate(text: &str, env: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let lookup = |name: &str| env.get(name).cloned();
    match crate::config::load_from_str(text, &lookup, &crate::config::Overrides::default()) {
        Ok(config) => {
            if let Some(tls) = &config.settings.tls {
                crate::tls::server_config(tls).map_err(|e| {
                    format!(
                        "the TLS files do not load:\n{}",
                        crate::config::ConfigErrors(e)
                    )
                })?;
            }
            Ok(config.warnings)
        }
        Err(errors) => Err(format!(
            "refusing to write a configuration that does not load \
             (this is a bug in the wizard, please report it):\n{errors}"
        )),
    }
}

/// Write `text` with mode 0600: to a new file beside `output`, then renamed
/// over it, so a crash never leaves half a policy.
fn write(output: &Path, text: &str, force: bool) -> Result<(), String> {
    if output.exists() && !force {
        return Err(format!(
            "{} appeared while the wizard ran; not replacing it",
            output.display()
        ));
    }
    let name = output
        .file_name()
        .ok_or_else(|| format!("{} is not a file path", output.display()))?;
    let temp = output.with_file_name(format!(
        ".{}.setup-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
        })
        .and_then(|()| std::fs::rename(&temp, output));
    result.map_err(|error| {
        let _ = std::fs::remove_file(&temp);
        format!("cannot write {}: {error}", output.display())
    })
}

fn print_next_steps(answers: &Answers, output: &Path, env: &BTreeMap<String, String>) {
    if !env.is_empty() {
        println!(
            "\nThe file reads its secrets from the environment. Set them where the proxy runs"
        );
        println!("(for the systemd unit: /etc/docker-api-proxy/env, without \"export\"):");
        for (name, value) in env {
            println!("  export {name}={value}");
        }
    }
    if let Auth::Shared(Secret::Literal(_)) = &answers.auth {
        println!(
            "\nThe shared secret is written in {}; keep that file private.",
            output.display()
        );
    }
    let scheme = if answers.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = match answers.bind {
        std::net::IpAddr::V6(addr) if addr.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(addr) => format!("[{addr}]"),
        std::net::IpAddr::V4(addr) if addr.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V4(addr) => addr.to_string(),
    };
    println!(
        "\nCheck it:   docker-api-proxy --check-config --config {}",
        output.display()
    );
    println!("Run it:     docker-api-proxy --config {}", output.display());
    println!("Try it:     curl {scheme}://{host}:{}/_ping", answers.port);
    if !matches!(answers.auth, Auth::None) {
        println!("            (with -H \"Authorization: Bearer <token>\")");
    }
}
