//! Finding the engine's unix socket (SPEC section 3).

use std::path::{Path, PathBuf};

/// The socket setting: one configured path, or candidates tried in order
/// each time a new connection is needed, so a socket that appears after
/// start-up is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketChoice {
    /// `global.socket`, `DOCKER_SOCKET` or `--socket`.
    Fixed(PathBuf),
    /// A `unix://` `DOCKER_HOST`: named explicitly, so a missing socket is
    /// waited for (502 and not ready meanwhile), never replaced by another
    /// engine's socket.
    DockerHost(PathBuf),
    Auto(Vec<PathBuf>),
}

impl SocketChoice {
    /// Resolves the setting: a configured path wins; otherwise a `unix://`
    /// `DOCKER_HOST`, alone; otherwise the standard locations, then the
    /// rootless one, whichever exists.
    pub fn resolve(configured: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Self {
        if let Some(path) = configured {
            return SocketChoice::Fixed(path.to_path_buf());
        }
        if let Some(path) = docker_host_socket(env) {
            return SocketChoice::DockerHost(path);
        }
        let mut candidates = Vec::new();
        for path in ["/var/run/docker.sock", "/run/docker.sock"] {
            candidates.push(PathBuf::from(path));
        }
        if let Some(dir) = env("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            candidates.push(Path::new(&dir).join("docker.sock"));
        }
        candidates.dedup();
        SocketChoice::Auto(candidates)
    }

    /// The path to connect to now, or every path tried when none exists.
    pub fn current(&self) -> Result<&Path, Vec<PathBuf>> {
        match self {
            SocketChoice::Fixed(path) | SocketChoice::DockerHost(path) => Ok(path),
            SocketChoice::Auto(candidates) => candidates
                .iter()
                .find(|p| p.exists())
                .map(PathBuf::as_path)
                .ok_or_else(|| candidates.clone()),
        }
    }

    /// Human-readable description for the startup line.
    pub fn describe(&self) -> String {
        match self {
            SocketChoice::Fixed(path) => path.display().to_string(),
            SocketChoice::DockerHost(path) => format!("{} (DOCKER_HOST)", path.display()),
            SocketChoice::Auto(candidates) => match self.current() {
                Ok(path) => format!("{} (auto)", path.display()),
                Err(_) => format!(
                    "none found (auto: {})",
                    candidates
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        }
    }
}

/// The path of a `unix://` `DOCKER_HOST`, if that is what it holds.
fn docker_host_socket(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let host = env("DOCKER_HOST")?;
    let path = host.strip_prefix("unix://")?;
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// What `--check-config` prints about the engine socket: the path used,
/// why, which variables were read, and whether it exists now.
pub fn explain(configured: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> String {
    let choice = SocketChoice::resolve(configured, env);
    let shown = |name: &str| match env(name) {
        Some(value) => format!("{name}={value:?}"),
        None => format!("{name} unset"),
    };
    let missing = |path: &Path| {
        if path.exists() {
            String::new()
        } else {
            format!(
                "\n  warning: {} does not exist now: the proxy answers 502 and /readyz \
                reports not ready until it appears; it never falls back to another socket",
                path.display()
            )
        }
    };
    match &choice {
        SocketChoice::Fixed(path) => format!(
            "engine socket: {} (global.socket, DOCKER_SOCKET or --socket){}",
            path.display(),
            missing(path)
        ),
        SocketChoice::DockerHost(path) => format!(
            "engine socket: {} (from {}){}",
            path.display(),
            shown("DOCKER_HOST"),
            missing(path)
        ),
        SocketChoice::Auto(candidates) => {
            let list = candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let host_note = match env("DOCKER_HOST") {
                Some(value) => format!("DOCKER_HOST={value:?} (not unix://, ignored)"),
                None => "DOCKER_HOST unset".to_owned(),
            };
            let now = match choice.current() {
                Ok(path) => format!("{} (auto)", path.display()),
                Err(_) => "none found (auto); the proxy answers 502 until one appears".into(),
            };
            format!(
                "engine socket: {now}\n  read: {host_note}, {}; tried in order: {list}",
                shown("XDG_RUNTIME_DIR")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_path_wins() {
        let choice = SocketChoice::resolve(Some(Path::new("/tmp/x.sock")), &|_| {
            Some("unix:///elsewhere.sock".into())
        });
        assert_eq!(choice, SocketChoice::Fixed("/tmp/x.sock".into()));
    }

    #[test]
    fn standard_then_rootless() {
        let env = |name: &str| match name {
            "XDG_RUNTIME_DIR" => Some("/run/user/1000".to_string()),
            _ => None,
        };
        let SocketChoice::Auto(paths) = SocketChoice::resolve(None, &env) else {
            panic!()
        };
        let paths: Vec<_> = paths.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "/var/run/docker.sock",
                "/run/docker.sock",
                "/run/user/1000/docker.sock"
            ]
        );
    }

    /// A socket named by DOCKER_HOST is the only one used, also while it
    /// does not exist: another engine's socket is never substituted.
    #[test]
    fn a_unix_docker_host_is_used_alone_even_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("does-not-exist.sock");
        let host = format!("unix://{}", missing.display());
        let env = |name: &str| (name == "DOCKER_HOST").then(|| host.clone());
        let choice = SocketChoice::resolve(None, &env);
        assert_eq!(choice, SocketChoice::DockerHost(missing.clone()));
        assert_eq!(choice.current().unwrap(), missing.as_path());
        let text = explain(None, &env);
        assert!(
            text.contains("does-not-exist.sock (from DOCKER_HOST="),
            "{text}"
        );
        assert!(text.contains("never falls back"), "{text}");
    }

    #[test]
    fn explain_names_the_variables_read_for_the_auto_choice() {
        let env = |name: &str| match name {
            "DOCKER_HOST" => Some("tcp://127.0.0.1:2376".to_string()),
            _ => None,
        };
        let text = explain(None, &env);
        assert!(
            text.contains("DOCKER_HOST=\"tcp://127.0.0.1:2376\" (not unix://, ignored)"),
            "{text}"
        );
        assert!(text.contains("XDG_RUNTIME_DIR unset"), "{text}");
        assert!(text.contains("tried in order: /var/run/docker.sock, /run/docker.sock"));
    }

    #[test]
    fn tcp_docker_host_is_ignored() {
        let env = |name: &str| (name == "DOCKER_HOST").then(|| "tcp://1.2.3.4:2375".to_string());
        let SocketChoice::Auto(paths) = SocketChoice::resolve(None, &env) else {
            panic!()
        };
        assert_eq!(paths[0], PathBuf::from("/var/run/docker.sock"));
    }

    #[test]
    fn reports_every_path_tried_when_none_exists() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.sock");
        let choice = SocketChoice::Auto(vec![missing.clone()]);
        assert_eq!(choice.current().unwrap_err(), vec![missing]);
    }
}
