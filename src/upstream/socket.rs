//! Finding the engine's unix socket (SPEC section 3).

use std::path::{Path, PathBuf};

/// The socket setting: one configured path, or candidates tried in order
/// each time a new connection is needed, so a socket that appears after
/// start-up is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketChoice {
    Fixed(PathBuf),
    Auto(Vec<PathBuf>),
}

impl SocketChoice {
    /// Resolves the setting: a configured path wins; otherwise a `unix://`
    /// `DOCKER_HOST`, then the standard locations, then the rootless one.
    pub fn resolve(configured: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Self {
        if let Some(path) = configured {
            return SocketChoice::Fixed(path.to_path_buf());
        }
        let mut candidates = Vec::new();
        if let Some(host) = env("DOCKER_HOST") {
            if let Some(path) = host.strip_prefix("unix://") {
                if !path.is_empty() {
                    candidates.push(PathBuf::from(path));
                }
            }
        }
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
            SocketChoice::Fixed(path) => Ok(path),
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
    fn docker_host_then_standard_then_rootless() {
        let env = |name: &str| match name {
            "DOCKER_HOST" => Some("unix:///srv/docker.sock".to_string()),
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
                "/srv/docker.sock",
                "/var/run/docker.sock",
                "/run/docker.sock",
                "/run/user/1000/docker.sock"
            ]
        );
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
