//! The README's walkthrough works as written (issue 41): its block is run command by command,
//! as a newcomer would paste it, in a copy of the repository's sample — the emulator it starts
//! included — and each command must exit as the block says (0, or the `# exit N` beside it).
//! The README's config example is one the tool takes.

use std::process::{Child, Command, Stdio};

use crate::util::{Workdir, repo};

const BIN: &str = env!("CARGO_BIN_EXE_telemetron-sync");

/// The fenced block after the `<!-- walkthrough` marker, its continued lines joined.
fn walkthrough(readme: &str) -> Vec<String> {
    let start = readme.find("<!-- walkthrough").expect("the walkthrough marker");
    let block = &readme[start..];
    let body = &block[block.find("```sh\n").expect("a sh block") + 6..];
    let body = &body[..body.find("```").expect("the block's end")];
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current += part,
            None => {
                current += line;
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

/// Kills the emulator the walkthrough started, however the test ends.
struct Background(Option<Child>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let commands = walkthrough(&readme);
    assert!(commands.len() >= 10, "{commands:?}");
    let w = Workdir::new();
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    // A port of its own: the block's 8080 may be taken on this machine.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut emulator = Background(None);
    for command in &commands {
        let (command, expected) = match command.split_once("# exit ") {
            Some((c, code)) => (c.trim().to_string(), code.trim().parse::<i32>().unwrap()),
            None => (command.split(" #").next().unwrap().trim().to_string(), 0),
        };
        let command = command.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
        if let Some(vars) = command.strip_prefix("export ") {
            for var in vars.split_whitespace() {
                let (k, v) = var.split_once('=').unwrap();
                env.push((k.to_string(), v.to_string()));
            }
            continue;
        }
        if command == "kill %1" {
            drop(std::mem::replace(&mut emulator, Background(None)));
            continue;
        }
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(words[0], "telemetron-sync", "{command}");
        if let Some(args) = command.strip_suffix('&') {
            let args: Vec<&str> = args.split_whitespace().skip(1).collect();
            let mut child = Command::new(BIN)
                .args(&args)
                .current_dir(w.path())
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // It says where it listens once it does.
            let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            std::io::BufRead::read_line(&mut out, &mut line).unwrap();
            assert!(line.contains("listening on"), "{line}");
            emulator = Background(Some(child));
            continue;
        }
        let out = Command::new(BIN)
            .args(&words[1..])
            .current_dir(w.path())
            .env_remove("TELEMETRON_API_KEY")
            .env_remove("TELEMETRON_BASE_URL")
            .env_remove("TELEMETRON_STATE")
            .env_remove("TELEMETRON_CONFIG")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{command}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(emulator.0.is_none(), "the walkthrough stops the emulator it started");
    // What it says it leaves behind.
    assert!(w.read("day2.md").contains("telemetron-sync plan"), "the Markdown report");
    assert!(w.join("day2.plan").is_file() && w.join("demo.db").is_file());
}

/// The README's config example is taken as it is (its paths made local).
#[test]
fn the_readme_config_example_is_valid() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("```toml\n").expect("a toml block") + 8;
    let example = &readme[start..];
    let example = &example[..example.find("```").unwrap()];
    let w = Workdir::new();
    std::fs::create_dir_all(w.join("exports")).unwrap();
    let local = example
        .replace("/var/lib/telemetron-sync/", &format!("{}/", w.path().display()))
        .replace("/srv/erp-exports", &w.join("exports").display().to_string());
    w.write("config.toml", local);
    w.run(&["--config", "config.toml", "snapshot", "migrate"]).expect(0);
    assert!(w.join("state.db").is_file());
}
