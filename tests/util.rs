//! Test helpers: a scratch folder with files in it, and a way to run the real binary there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary folder that the binary runs in.
pub struct Workdir {
    dir: tempfile::TempDir,
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }

    /// Asserts the exit code, showing the output when it is not the one expected.
    #[track_caller]
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(self.code, code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    /// Writes a file (creating folders), relative to the work dir.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> &Workdir {
        let p = self.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap()
    }

    /// A plan saved by `plan --out` (gzip-compressed JSON), as JSON.
    pub fn read_plan(&self, rel: &str) -> serde_json::Value {
        let file = std::fs::File::open(self.join(rel)).unwrap();
        serde_json::from_reader(flate2::read::GzDecoder::new(file)).expect("a saved plan is gzip-compressed JSON")
    }

    /// Copies a folder of the repository (e.g. `fixtures/cases/x`) into `rel`.
    pub fn copy_dir(&self, from: &Path, rel: &str) {
        copy_dir(from, &self.join(rel));
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_telemetron-sync"));
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("TELEMETRON_STATE")
            .env_remove("TELEMETRON_LOG")
            .env_remove("TELEMETRON_API_KEY")
            .env_remove("TELEMETRON_BASE_URL");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out: Output = self.command(args).output().expect("run the binary");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Compares `actual` with the JSON file `expected` (relative to the repo); with
/// `UPDATE_EXPECT=1` in the environment, rewrites the file instead.
#[track_caller]
pub fn assert_json_file(actual: &serde_json::Value, expected: &Path) {
    let path = repo().join(expected);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_EXPECT=1 writes it)", path.display()));
    let want: serde_json::Value = serde_json::from_str(&text).unwrap();
    if *actual != want {
        panic!(
            "{} differs (UPDATE_EXPECT=1 rewrites it)\n--- actual\n{}",
            path.display(),
            serde_json::to_string_pretty(actual).unwrap()
        );
    }
}

/// An emulator served in-process on 127.0.0.1:0, on its own runtime, for as long as this lives.
pub struct Emu {
    pub emulator: telemetron_sync::emulator::Emulator,
    pub base_url: String,
    rt: Option<tokio::runtime::Runtime>,
    running: Option<telemetron_sync::emulator::Running>,
}

pub const KEY: &str = "tlm_test_key_0123456789";

impl Emu {
    pub fn start() -> Emu {
        Emu::with(|_| {})
    }

    pub fn with(tweak: impl FnOnce(&mut telemetron_sync::emulator::Config)) -> Emu {
        let mut config = telemetron_sync::emulator::Config { api_keys: vec![KEY.to_string()], ..Default::default() };
        tweak(&mut config);
        let emulator = telemetron_sync::emulator::Emulator::new(config);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let running = rt
            .block_on(telemetron_sync::emulator::spawn("127.0.0.1:0".parse().unwrap(), emulator.clone()))
            .expect("bind the emulator");
        Emu { emulator, base_url: running.base_url(), rt: Some(rt), running: Some(running) }
    }

    /// The emulator's whole state as its admin route gives it.
    pub fn state(&self) -> serde_json::Value {
        serde_json::to_value(self.emulator.state()).unwrap()
    }

    /// The writes Telemetron got: every request but the reads (`queryCustomer`, `getCustomer`),
    /// which include the check each writing run makes before its work.
    pub fn writes(&self) -> Vec<telemetron_sync::emulator::LoggedRequest> {
        let mut all = self.emulator.requests();
        all.retain(|r| !r.path.ends_with("/customer/queryCustomer") && !r.path.contains("/customer/getCustomer"));
        all
    }

    /// The first organization's state.
    pub fn org(&self) -> serde_json::Value {
        self.state()["organizations"][0].clone()
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        if let (Some(rt), Some(running)) = (self.rt.take(), self.running.take()) {
            let _ = rt.block_on(running.stop());
        }
    }
}

impl Workdir {
    /// Runs the binary against `emu` with the test key in the environment.
    pub fn run_api(&self, emu: &Emu, args: &[&str]) -> Run {
        self.run_at(&emu.base_url, KEY, args)
    }

    /// Runs the binary with this base URL and key in the environment.
    pub fn run_at(&self, base_url: &str, key: &str, args: &[&str]) -> Run {
        let out = self
            .command(args)
            .env("TELEMETRON_BASE_URL", base_url)
            .env("TELEMETRON_API_KEY", key)
            .output()
            .expect("run the binary");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Opens a snapshot as the tool does, through its page-checking VFS: a test's own writes keep
/// every page's checksum (a write through plain SQLite would read as damage).
pub fn open_snapshot(path: impl AsRef<Path>) -> rusqlite::Connection {
    telemetron_sync::snapshot::check_pages();
    rusqlite::Connection::open(path).unwrap()
}
