//! Builds the web pages — the dashboard (`/`) and the GraphiQL playground (`/playground/`) in
//! `web/` — with npm and Vite into `$OUT_DIR/web`, which `src/web.rs` embeds in the binary.
//!
//! `npm ci` runs when `web/node_modules` is missing or older than the lock file, then
//! `npm run build` (Vite). Never with `NODE_ENV=production` or `--omit`: Vite and its native
//! packages are dev dependencies. With `CAREBRIDGE_SKIP_WEB=1`, or without npm / a recent enough
//! Node.js, a one-page placeholder is embedded instead and cargo prints a warning, so a machine
//! without Node.js still builds the gateway. A failing npm or Vite run fails the build.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

/// Vite 8 needs Node.js 20.19 or later.
const MIN_NODE: (u32, u32) = (20, 19);

/// What, under `web/`, changes the built pages.
const INPUTS: &[&str] = &[
    "src",
    "public",
    "index.html",
    "playground/index.html",
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "tsconfig.json",
];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let web = manifest_dir.join("web");
    let out = PathBuf::from(env("OUT_DIR")).join("web");
    println!("cargo:rerun-if-env-changed=CAREBRIDGE_SKIP_WEB");
    for input in INPUTS {
        println!("cargo:rerun-if-changed=web/{input}");
    }

    if std::env::var("CAREBRIDGE_SKIP_WEB").is_ok_and(|v| v == "1") {
        return placeholder(&out, "CAREBRIDGE_SKIP_WEB=1 is set");
    }
    if let Err(reason) = node_toolchain() {
        return placeholder(&out, &reason);
    }
    if needs_install(&web) {
        run(npm(&web).args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]));
    }
    run(npm(&web)
        .args([
            "run",
            "build",
            "--",
            "--logLevel",
            "error",
            "--emptyOutDir",
            "--outDir",
        ])
        .arg(&out));
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

/// npm in `web/`, in a clean environment: no `NODE_ENV` (production would drop Vite) and no
/// cargo `DEBUG` (the npm `debug` package would read it).
fn npm(web: &Path) -> Command {
    let mut command = Command::new("npm");
    command
        .current_dir(web)
        .env_remove("NODE_ENV")
        .env_remove("DEBUG")
        .env_remove("npm_config_production")
        .env_remove("npm_config_omit");
    command
}

/// `Ok` when npm is there and Node.js is recent enough for Vite; otherwise why not.
fn node_toolchain() -> Result<(), String> {
    let npm_ok = Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !npm_ok {
        return Err("npm was not found on PATH".into());
    }
    let version = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .ok_or("node was not found on PATH")?;
    let mut numbers = version
        .trim_start_matches('v')
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let found = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if found < MIN_NODE {
        return Err(format!(
            "Node.js {version} is too old for Vite (needs {}.{} or later)",
            MIN_NODE.0, MIN_NODE.1
        ));
    }
    Ok(())
}

/// `npm ci` is needed unless `node_modules` was installed after the lock file last changed.
fn needs_install(web: &Path) -> bool {
    let modified =
        |path: PathBuf| -> Option<SystemTime> { fs::metadata(path).ok()?.modified().ok() };
    let installed = modified(web.join("node_modules/.package-lock.json"));
    let locked = modified(web.join("package-lock.json"));
    let manifest = modified(web.join("package.json"));
    match (installed, locked, manifest) {
        (Some(installed), Some(locked), Some(manifest)) => {
            installed < locked || installed < manifest
        }
        _ => true,
    }
}

fn run(command: &mut Command) {
    let shown = format!("{command:?}");
    let output: Output = command
        .output()
        .unwrap_or_else(|error| panic!("could not start {shown}: {error}"));
    if !output.status.success() {
        panic!(
            "building the web pages failed: {shown} exited with {}\n--- stdout\n{}\n--- stderr\n{}\n\
             (set CAREBRIDGE_SKIP_WEB=1 to build the gateway without its web pages)",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }
}

/// Both pages as one static note, so `/` and `/playground/` still answer.
fn placeholder(out: &Path, reason: &str) {
    println!(
        "cargo:warning=web pages not built ({reason}); `/` and `/playground/` serve a placeholder. \
         Install Node.js >= {}.{} with npm and unset CAREBRIDGE_SKIP_WEB to build them.",
        MIN_NODE.0, MIN_NODE.1
    );
    let reason_html = html_escape(reason);
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>CareBridge</title><link rel=\"icon\" href=\"data:,\"></head>\
         <body><h1>CareBridge</h1><p>This build of CareBridge has no web pages ({reason_html}). \
         The GraphQL API is at <code>/graphql</code>. Rebuild with Node.js &ge; {}.{} and npm \
         to get the dashboard and the playground.</p></body></html>\n",
        MIN_NODE.0, MIN_NODE.1
    );
    let write = |path: PathBuf, text: &str| {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    };
    if out.exists() {
        fs::remove_dir_all(out).unwrap_or_else(|e| panic!("clear {}: {e}", out.display()));
    }
    write(out.join("index.html"), &page);
    write(out.join("playground/index.html"), &page);
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
