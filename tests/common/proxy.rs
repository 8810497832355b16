//! The proxy under test and what it stands in front of: a fresh [`Env`] (sim PKI, CA
//! directory), sim enclaves, the one builder of "config + proxy" ([`Harness`]), started
//! in-process or as the real binary ([`Binary`]).

use std::path::PathBuf;

/// A temporary directory with a sim test PKI in `pki/` (root.pem, collateral.json), removed on drop.
#[cfg(feature = "sim")]
pub struct Env {
    pub dir: PathBuf,
    pub pki: ratls_proxy::sim::SimPki,
    pub now: ratls_proxy::dcap::time::UnixTime,
}

#[cfg(feature = "sim")]
impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(feature = "sim")]
impl Env {
    /// The local CA certificate a proxy using `dir/ca` creates.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca/ca.pem")
    }

    /// The proxy listening at `proxy` with this env's CA, as its clients see it.
    pub fn via(&self, proxy: impl super::Addr) -> super::Via {
        super::Via::new(proxy, &self.ca_pem())
    }
}

/// A fresh [`Env`], unique per test binary, process and call.
#[cfg(feature = "sim")]
pub fn env() -> Env {
    let dir = super::scratch_dir();
    let now = ratls_proxy::dcap::time::UnixTime::now();
    let pki = ratls_proxy::sim::SimPki::load_or_create(&dir.join("pki"), now).expect("sim PKI");
    Env { dir, pki, now }
}

/// A sim enclave on a free loopback port.
#[cfg(feature = "sim")]
pub async fn start_sim(
    env: &Env,
    config: ratls_proxy::sim::SimConfig,
) -> ratls_proxy::sim::SimEnclave {
    ratls_proxy::sim::SimEnclave::start(
        &env.pki,
        config,
        "127.0.0.1:0".parse().expect("addr"),
        env.now,
    )
    .await
    .expect("sim starts")
}

/// A sim enclave on a free loopback port, its default configuration changed by `f`.
#[cfg(feature = "sim")]
pub async fn start_sim_with(
    env: &Env,
    f: impl FnOnce(&mut ratls_proxy::sim::SimConfig),
) -> ratls_proxy::sim::SimEnclave {
    let mut config = ratls_proxy::sim::SimConfig::default();
    f(&mut config);
    start_sim(env, config).await
}

/// The MRENCLAVE the harness's policies trust by default (the sim's default identity).
pub const TRUSTED: &str = "e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1";

/// An MRENCLAVE no sim has unless told: a policy listing only it refuses the default sim.
pub const OTHER: &str = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b";

/// The ports of one real binary: its listener, its admin listener, one sidecar route.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub proxy: u16,
    pub admin: u16,
    pub route: u16,
}

impl Ports {
    /// Ports that were free a moment ago.
    pub fn free() -> Self {
        Self {
            proxy: super::free_port(),
            admin: super::free_port(),
            route: super::free_port(),
        }
    }
}

/// One `[[enclave]]` of a [`Harness`] config.
#[cfg(feature = "sim")]
#[derive(Clone)]
pub struct Entry {
    hosts: Vec<String>,
    connect_to: std::net::SocketAddr,
    mrenclave: String,
    extra: String,
}

/// The one builder of "config + proxy" for every test file: a config text over an [`Env`]
/// (its CA directory, sim root and collateral), then a proxy started from it, in-process
/// (the library, to read counters) or as the real binary.
#[cfg(feature = "sim")]
#[derive(Clone)]
pub struct Harness<'e> {
    env: &'e Env,
    listen: u16,
    admin: Option<u16>,
    top: String,
    limits: String,
    collateral: String,
    collateral_keys: String,
    entries: Vec<Entry>,
    tail: String,
}

#[cfg(feature = "sim")]
impl<'e> Harness<'e> {
    /// Listen on a free port, admin off, the sim PKI's root and collateral, no enclaves.
    pub fn new(env: &'e Env) -> Self {
        Self {
            env,
            listen: 0,
            admin: None,
            top: String::new(),
            limits: String::new(),
            collateral: env.dir.join("pki/collateral.json").display().to_string(),
            collateral_keys: String::new(),
            entries: Vec::new(),
            tail: String::new(),
        }
    }

    /// The proxy listener's port (0: any free port; in-process only).
    pub fn listen(mut self, port: u16) -> Self {
        self.listen = port;
        self
    }

    /// Listens on `ports.proxy`, the admin listener on `ports.admin`.
    pub fn ports(self, ports: Ports) -> Self {
        self.listen(ports.proxy).admin(ports.admin)
    }

    /// Turns the admin listener on at `port` (the real binary only: in-process, whoever
    /// starts the proxy starts the admin listener, and `start` does not).
    pub fn admin(mut self, port: u16) -> Self {
        self.admin = Some(port);
        self
    }

    /// Top-level keys (`unmatched = "deny"`, ...).
    pub fn top(mut self, text: &str) -> Self {
        self.top.push_str(text);
        self.top.push('\n');
        self
    }

    /// Keys under `[limits]`.
    pub fn limits(mut self, text: &str) -> Self {
        self.limits.push_str(text);
        self.limits.push('\n');
        self
    }

    /// The collateral source: a bundle file or directory.
    pub fn collateral(self, path: &std::path::Path) -> Self {
        self.collateral_source(&path.display().to_string())
    }

    /// The collateral source as written (`pcs`, a PCCS URL, a path).
    pub fn collateral_source(mut self, source: &str) -> Self {
        self.collateral = source.to_owned();
        self
    }

    /// Keys under `[collateral]` besides `source` (`early = "enforce"`, ...).
    pub fn collateral_keys(mut self, text: &str) -> Self {
        self.collateral_keys.push_str(text);
        self.collateral_keys.push('\n');
        self
    }

    /// An `[[enclave]]` for `host` dialled at `addr`, trusting [`TRUSTED`].
    pub fn enclave(self, host: &str, addr: std::net::SocketAddr) -> Self {
        self.enclave_with(&[host], addr, TRUSTED, "")
    }

    /// An `[[enclave]]` with its hosts, MRENCLAVE allow-list and extra keys.
    pub fn enclave_with(
        mut self,
        hosts: &[&str],
        addr: std::net::SocketAddr,
        mrenclave: &str,
        extra: &str,
    ) -> Self {
        self.entries.push(Entry {
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            connect_to: addr,
            mrenclave: mrenclave.to_owned(),
            extra: extra.to_owned(),
        });
        self
    }

    /// Text appended after the enclaves (`[[route]]` tables, ...).
    pub fn tail(mut self, text: &str) -> Self {
        self.tail.push_str(text);
        self.tail.push('\n');
        self
    }

    /// The config text.
    pub fn text(&self) -> String {
        let admin = self
            .admin
            .map_or_else(String::new, |p| format!("127.0.0.1:{p}"));
        let mut text = format!(
            "listen = \"127.0.0.1:{}\"\nadmin_listen = \"{admin}\"\nshutdown_grace_secs = 10\n{}\n[limits]\n{}\n[ca]\ndir = \"{}\"\n[trust]\nroot_ca = \"{}\"\n[collateral]\nsource = \"{}\"\n{}",
            self.listen,
            self.top,
            self.limits,
            self.env.dir.join("ca").display(),
            self.env.dir.join("pki/root.pem").display(),
            self.collateral,
            self.collateral_keys,
        );
        for e in &self.entries {
            let hosts: Vec<String> = e.hosts.iter().map(|h| format!("\"{h}\"")).collect();
            text.push_str(&format!(
                "\n[[enclave]]\nhosts = [{}]\nmrenclave = [\"{}\"]\nconnect_to = \"{}\"\n{}\n",
                hosts.join(", "),
                e.mrenclave,
                e.connect_to,
                e.extra
            ));
        }
        text.push_str(&self.tail);
        text
    }

    /// Writes the config as `name` in the env's directory.
    pub fn write(&self, name: &str) -> PathBuf {
        let path = self.env.dir.join(name);
        std::fs::write(&path, self.text()).expect("write config");
        path
    }

    /// The validated config.
    pub fn config(&self) -> ratls_proxy::Config {
        ratls_proxy::Config::from_toml(&self.text(), "harness", std::path::Path::new("/"))
            .expect("config")
    }

    /// The proxy, in-process.
    pub async fn start(&self) -> ratls_proxy::Running {
        let config = self.config();
        let (anchor, setup) =
            ratls_proxy::trust_and_collateral(&config.source, !config.enclaves.is_empty())
                .expect("trust and collateral");
        let ca = ratls_proxy::LocalCa::load_or_create(&config.ca_dir, self.env.now).expect("ca");
        std::sync::Arc::new(ratls_proxy::Proxy::new(config, &anchor, setup, ca))
            .start()
            .await
            .expect("start")
    }

    /// The real binary with this config written as `name`, once it accepts connections on
    /// its admin port (if on) or proxy port.
    pub async fn start_binary(&self, name: &str) -> Binary {
        Binary::start(
            &self.write(name),
            self.admin.unwrap_or(self.listen),
            &[],
            false,
        )
        .await
    }
}

/// The real `ratls-proxy run --config` process, killed on drop.
pub struct Binary {
    pub child: std::process::Child,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Binary {
    /// Starts the binary with `config` (after `args`) and waits until `port` accepts.
    /// With `json_logs`, logs are JSON on a piped stderr; otherwise discarded.
    pub async fn start(
        config: &std::path::Path,
        port: u16,
        args: &[&str],
        json_logs: bool,
    ) -> Self {
        use std::process::Stdio;
        let mut cmd = super::command();
        if json_logs {
            cmd.args(["--log-format", "json"]);
        }
        // Without JSON logs the proxy's stderr goes to a file, read back only if it fails to
        // start: a CI box under load must say why, not just that it timed out.
        let log =
            std::env::temp_dir().join(format!("ratls-binary-{}-{port}.log", std::process::id()));
        let stderr = if json_logs {
            Stdio::piped()
        } else {
            std::fs::File::create(&log).map_or_else(|_| Stdio::null(), Stdio::from)
        };
        let child = cmd
            .args(args)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", if json_logs { "info" } else { "warn" })
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the binary starts");
        let mut b = Self { child };
        // Up to 30 s: a 2-core CI box running other test binaries' proxies and sims can be
        // slow to schedule a new process; a proxy that exits is reported at once.
        for _ in 0..1200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                let _ = std::fs::remove_file(&log);
                return b;
            }
            if let Ok(Some(status)) = b.child.try_wait() {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("the proxy exited before listening on {port} ({status}): {said}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("the proxy did not start listening on {port} within 30 s: {said}");
    }

    /// Sends `sig` (`-HUP`, `-TERM`) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success());
    }

    /// Sends `sig` (`-TERM`, `-KILL`) and returns every line the process logged (started
    /// with JSON logs), read to the end of its stderr.
    pub async fn stop(&mut self, sig: &str) -> Vec<String> {
        use std::io::BufRead;
        self.signal(sig);
        let stderr = self
            .child
            .stderr
            .take()
            .expect("stderr piped: JSON logs on");
        tokio::task::spawn_blocking(move || {
            std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .collect()
        })
        .await
        .expect("join")
    }

    /// The JSON log lines, collected as the process writes them (started with JSON logs;
    /// its stderr drained so it never blocks on a full pipe).
    pub fn log_lines(&mut self) -> std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> {
        use std::io::BufRead;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = self
            .child
            .stderr
            .take()
            .expect("stderr piped: JSON logs on");
        let into = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    into.lock().expect("lines").push(v);
                }
            }
        });
        lines
    }
}

/// The access-log records among JSON log `lines` (the others are skipped).
pub fn access_lines(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "ratls_proxy::access")
        .collect()
}
