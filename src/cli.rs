//! The command line: flags, `--check-config`, `explain` and `setup`.
//!
//! Flags are the highest-precedence source of settings (SPEC section 3);
//! they become [`Overrides`] for `crate::config`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

use crate::auth::{AuthOutcome, Authenticator, LockoutTable};
use crate::config::{self, AuthMode, Overrides};
use crate::http::target;
use crate::policy::{JsonBody, Request, Verdict};

/// Policy-enforcing proxy for the Docker Engine API.
#[derive(Debug, Parser)]
#[command(name = "docker-api-proxy", version, about)]
pub struct Args {
    /// Configuration file. Default: $DOCKER_PROXY_CONFIG, then ./config.yaml.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// TCP port to listen on (overrides DOCKER_PROXY_PORT and global.port).
    #[arg(long)]
    pub port: Option<u16>,

    /// Address to bind (overrides global.bind).
    #[arg(long)]
    pub bind: Option<IpAddr>,

    /// Docker Engine socket (overrides DOCKER_SOCKET and global.socket).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Worker threads, one per core (overrides global.workers).
    #[arg(long)]
    pub workers: Option<usize>,

    /// Load and validate the configuration, print the effective settings,
    /// rules and warnings, and exit (0 when valid).
    #[arg(long)]
    pub check_config: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate one hypothetical request against the policy, offline.
    /// Exit code 0 when it would be allowed, 1 when refused.
    Explain(ExplainArgs),
    /// Interactive wizard that writes a configuration file which passes
    /// `--check-config`.
    Setup(SetupArgs),
}

#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// File to write. Default: config.yaml.
    #[arg(long, default_value = "config.yaml", value_name = "PATH")]
    pub output: PathBuf,
    /// Replace the file if it already exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Request method, e.g. POST.
    pub method: String,
    /// Request target with optional query, e.g. /v1.41/containers/create?name=x.
    pub target: String,
    /// Request header as NAME:VALUE (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// File holding the JSON request body.
    #[arg(long, value_name = "FILE")]
    pub body: Option<PathBuf>,
    /// Client IP address. Default: 127.0.0.1.
    #[arg(long, default_value = "127.0.0.1")]
    pub client_ip: IpAddr,
    /// Bearer token to authenticate with (its role is used).
    #[arg(long, conflicts_with = "role")]
    pub token: Option<String>,
    /// Role to evaluate as, without authenticating.
    #[arg(long)]
    pub role: Option<String>,
}

impl Args {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            port: self.port,
            bind: self.bind,
            socket: self.socket.clone(),
            workers: self.workers,
        }
    }
}

/// Exit code of `--check-config` for a configuration that loads but under
/// which the proxy refuses every request (authentication fails closed).
pub const EXIT_REFUSES_EVERYTHING: u8 = 2;

/// `--check-config`: exit 0 and a report when valid, 1 and every error
/// when not, [`EXIT_REFUSES_EVERYTHING`] when valid but authentication
/// fails closed: a deploy check (systemd `ExecStartPre`, CI) must not pass
/// a proxy that answers every request with 401.
pub fn check_config(overrides: &Overrides) -> ExitCode {
    match config::load(overrides) {
        Ok(config) => {
            let mut problems = Vec::new();
            if let Some(tls) = &config.settings.tls {
                if let Err(errors) = crate::tls::server_config(tls) {
                    problems.extend(errors);
                }
            }
            if !problems.is_empty() {
                eprintln!("{}", config::ConfigErrors(problems));
                eprintln!("configuration is invalid");
                return ExitCode::FAILURE;
            }
            let mut report = config::render_check(&config);
            let env = |name: &str| std::env::var(name).ok();
            report.push_str(&format!(
                "\n{}\n",
                crate::upstream::socket::explain(config.settings.socket.as_deref(), &env)
            ));
            let code = if let config::AuthMode::FailClosed { reason } = &config.auth {
                report.push_str(&format!(
                    "\nconfiguration is valid, but the proxy would refuse every request: \
                    authentication fails closed ({reason})\n"
                ));
                ExitCode::from(EXIT_REFUSES_EVERYTHING)
            } else {
                report.push_str("configuration is valid\n");
                ExitCode::SUCCESS
            };
            print_stdout(&report);
            code
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "configuration is invalid ({})",
                count_problems(errors.0.len())
            );
            ExitCode::FAILURE
        }
    }
}

/// Writes a report to stdout. A reader that went away (`| head`) is not
/// an error worth a panic: the rest of the report is dropped quietly.
fn print_stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(error) => eprintln!("docker-api-proxy: cannot write the report: {error}"),
    }
}

/// `setup`: runs the configuration wizard.
pub fn setup(args: &SetupArgs) -> ExitCode {
    crate::setup::run(&args.output, args.force)
}

/// "1 problem", "3 problems".
pub fn count_problems(n: usize) -> String {
    if n == 1 {
        "1 problem".to_owned()
    } else {
        format!("{n} problems")
    }
}

/// `explain`: evaluates one request offline and prints why.
pub fn explain(overrides: &Overrides, args: &ExplainArgs) -> ExitCode {
    match explain_text(overrides, args) {
        Ok((text, allowed)) => {
            print_stdout(&text);
            if allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            eprintln!("docker-api-proxy explain: {message}");
            ExitCode::from(2)
        }
    }
}

fn explain_text(overrides: &Overrides, args: &ExplainArgs) -> Result<(String, bool), String> {
    let config = config::load(overrides).map_err(|e| e.to_string())?;
    let method = args.method.to_ascii_uppercase();
    let target = match target::canonicalize_request(&method, args.target.as_bytes()) {
        Ok(target) => target,
        Err(error) => {
            return Ok((
                format!("decision: refused with 400 before any rule: {error}\n"),
                false,
            ));
        }
    };
    let mut headers = Vec::new();
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("--header {header:?} must look like NAME:VALUE"))?;
        headers.push((name.trim().to_owned(), value.trim().as_bytes().to_vec()));
    }
    let role = match (&args.token, &args.role) {
        (Some(token), _) => {
            let authenticator =
                Authenticator::new(&config.auth, &config.lockout, LockoutTable::new().into());
            let value = format!("Bearer {token}");
            match authenticator.authenticate(
                args.client_ip,
                Some(value.as_bytes()),
                None,
                Instant::now(),
            ) {
                AuthOutcome::Ok(identity) => identity.role.map(|r| r.to_string()),
                AuthOutcome::Unauthorized(message) => {
                    return Ok((format!("decision: refused with 401: {message}\n"), false));
                }
                AuthOutcome::LockedOut { .. } => None,
            }
        }
        (None, Some(role)) => Some(role.clone()),
        (None, None) => match &config.auth {
            AuthMode::None => None,
            AuthMode::FailClosed { reason } => {
                let text = format!(
                    "authentication: not configured ({reason})\n\
                     decision: refused with 401 before any rule\n"
                );
                return Ok((text, false));
            }
            AuthMode::Bearer { .. } | AuthMode::Mtls { .. } => {
                let text = "authentication: required by this configuration, and neither \
                            --token nor --role was given\n\
                            decision: refused with 401 before any rule (pass --token TOKEN, \
                            or --role ROLE to evaluate the rules as that role)\n";
                return Ok((text.to_owned(), false));
            }
        },
    };
    let body = match &args.body {
        Some(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            match JsonBody::parse(&bytes) {
                Ok(body) => Some(body),
                Err(error) => {
                    return Ok((
                        format!("decision: refused with 400 before any rule: {error}\n"),
                        false,
                    ));
                }
            }
        }
        None => None,
    };
    let header_refs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let request = Request {
        method: &method,
        path: &target.path,
        api_version: &target.api_version,
        query: &target.query,
        headers: &header_refs,
        client_ip: args.client_ip,
        role: role.as_deref(),
    };
    if let Err(message) = crate::proxy::admit::refuse_before_rules(&config.policy, &request) {
        return Ok((
            format!("decision: refused with 400 before any rule: {message}\n"),
            false,
        ));
    }
    let (decision, mut text) = config.policy.explain(&request, body.as_ref());
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let allowed = decision.verdict == Verdict::Allow;
    Ok((text, allowed))
}
