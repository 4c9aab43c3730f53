//! Finding SUMO, reading a configuration, launching the simulator with a TraCI port.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::xml::each_element;
use crate::TwinError;

/// SUMO's tools, found once.
#[derive(Debug, Clone)]
pub struct Sumo {
    pub bin_dir: PathBuf,
}

const HOW_TO_INSTALL: &str = "run scripts/install-sumo.sh (Eclipse SUMO 1.28.0 from PyPI \
into .venv-sumo), or set SUMO_HOME to an installation";

impl Sumo {
    /// `SUMO_HOME/bin`, then `.venv-sumo/bin` in the working directory or any of its
    /// parents, then `sumo` on `PATH`.
    pub fn locate() -> Result<Sumo, TwinError> {
        let mut candidates = Vec::new();
        if let Some(home) = std::env::var_os("SUMO_HOME") {
            candidates.push(PathBuf::from(home).join("bin"));
        }
        if let Ok(cwd) = std::env::current_dir() {
            for dir in cwd.ancestors() {
                candidates.push(dir.join(".venv-sumo/bin"));
            }
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        candidates
            .into_iter()
            .find(|d| d.join("sumo").is_file())
            .map(|bin_dir| Sumo { bin_dir })
            .ok_or_else(|| TwinError::NoSumo(HOW_TO_INSTALL.into()))
    }

    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// `sumo --version`'s first line.
    pub fn version(&self) -> Result<String, TwinError> {
        let out = Command::new(self.tool("sumo")).arg("--version").output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string())
    }
}

/// What a `.sumocfg` names, resolved against its directory.
#[derive(Debug, Clone, Default)]
pub struct SumoConfig {
    pub path: PathBuf,
    pub net: PathBuf,
    pub routes: Vec<PathBuf>,
    pub additional: Vec<PathBuf>,
    pub begin: Option<f64>,
    pub end: Option<f64>,
    pub step_length: Option<f64>,
}

impl SumoConfig {
    /// Reads and checks a configuration: every file it names must exist.
    pub fn load(path: &Path) -> Result<SumoConfig, TwinError> {
        if !path.is_file() {
            return Err(TwinError::Config(format!(
                "{}: no such SUMO configuration file",
                path.display()
            )));
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut cfg = SumoConfig {
            path: path.to_path_buf(),
            ..SumoConfig::default()
        };
        let mut net = None;
        let files = |v: &str| -> Vec<PathBuf> {
            v.split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(|s| dir.join(s))
                .collect()
        };
        each_element(path, |name, a, _| {
            let value = a.get("value");
            match (name, value) {
                ("net-file", Some(v)) => net = Some(dir.join(v)),
                ("route-files", Some(v)) => cfg.routes = files(v),
                ("additional-files", Some(v)) => cfg.additional = files(v),
                ("begin", Some(v)) => cfg.begin = time(v),
                ("end", Some(v)) => cfg.end = time(v),
                ("step-length", Some(v)) => cfg.step_length = time(v),
                _ => {}
            }
            Ok(())
        })?;
        cfg.net =
            net.ok_or_else(|| TwinError::Config(format!("{}: names no net-file", path.display())))?;
        for f in std::iter::once(&cfg.net)
            .chain(&cfg.routes)
            .chain(&cfg.additional)
        {
            if !f.is_file() {
                return Err(TwinError::Config(format!(
                    "{}: names {}, which does not exist",
                    path.display(),
                    f.display()
                )));
            }
        }
        Ok(cfg)
    }
}

fn time(v: &str) -> Option<f64> {
    v.trim().parse().ok()
}

/// A running SUMO with a TraCI port; killed when dropped.
pub struct Running {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Running {
    /// Starts `sumo -c cfg` with `args`, on a free loopback port, its output in `log`.
    pub fn start(
        sumo: &Sumo,
        cfg: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Running, TwinError> {
        let port = {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
            l.local_addr()?.port()
        };
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let child = Command::new(sumo.tool("sumo"))
            .arg("-c")
            .arg(cfg)
            .arg("--remote-port")
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                TwinError::Sumo(format!(
                    "could not start {}: {e}",
                    sumo.tool("sumo").display()
                ))
            })?;
        Ok(Running {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            log: log.to_path_buf(),
        })
    }

    /// Whether SUMO has exited, with its log's last lines when it has.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("SUMO exited ({status}): {}", self.log_tail())),
            _ => None,
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(8)..].join(" | ")
    }

    /// Waits for SUMO to finish writing its outputs after a TraCI close.
    pub fn wait(mut self) -> Result<(), TwinError> {
        let status = self.child.wait()?;
        if !status.success() {
            return Err(TwinError::Sumo(format!(
                "exited with {status}: {}",
                self.log_tail()
            )));
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
