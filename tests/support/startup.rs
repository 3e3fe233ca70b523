//! Building the proxy's command line, running it without a config file,
//! and runs that are expected to end by themselves (`--check-config`,
//! configurations the proxy must refuse to start with).

use super::*;

impl ProxyOptions {
    /// Runs without any config file (see [`ProxyOptions::no_config_file`]).
    pub fn without_config_file(mut self) -> Self {
        self.no_config_file = true;
        self
    }

    /// Runs the proxy with `--check-config` on this configuration.
    pub fn check_config(&self) -> Output {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut command = self.command(dir.path(), free_port());
        command.arg("--check-config");
        run_to_exit(command, "docker-api-proxy --check-config")
    }

    /// Starts the proxy on a configuration it must refuse: returns its
    /// output once it exited (panics if it still runs after 15 s).
    pub fn start_expecting_exit(&self) -> Output {
        let dir = tempfile::tempdir().expect("temporary directory");
        let command = self.command(dir.path(), free_port());
        run_to_exit(command, "docker-api-proxy")
    }

    /// The proxy command for this configuration, writing the config file
    /// (unless `no_config_file`) into `dir`, which is also its working
    /// directory.
    pub(crate) fn command(&self, dir: &Path, port: u16) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_docker-api-proxy"));
        if !self.no_config_file {
            let config = dir.join("config.yaml");
            let text = match &self.config_text {
                Some(text) => text.clone(),
                None => config_yaml(self, port),
            };
            std::fs::write(&config, text).expect("write config");
            command.arg("--config").arg(&config);
        }
        command
            .current_dir(dir)
            .env_remove("DOCKER_PROXY_PORT")
            .env_remove("DOCKER_SOCKET")
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_PROXY_SECRET")
            .env_remove("DOCKER_PROXY_CONFIG")
            .env_remove("MONOIO_FORCE_LEGACY_DRIVER")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        if !self.config_only || self.no_config_file {
            command
                .env("DOCKER_PROXY_PORT", port.to_string())
                .env("DOCKER_SOCKET", &self.socket);
        }
        if self.driver == Driver::Epoll {
            command.env("MONOIO_FORCE_LEGACY_DRIVER", "1");
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }
}

/// Runs a command to completion within 15 s (killed after that).
fn run_to_exit(mut command: Command, description: &str) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {description}: {e}"));
    let stdout = read_all_in_thread(child.stdout.take().expect("stdout pipe"));
    let stderr = read_all_in_thread(child.stderr.take().expect("stderr pipe"));
    let status = wait_for(Duration::from_secs(15), || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "`{description}` still running after 15 s\nstderr:\n{}",
            stderr.join().unwrap_or_default()
        );
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}
