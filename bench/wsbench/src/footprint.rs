//! Footprint: start a server, time it from just before `spawn` to its first `200` on a
//! readiness URL (polled every 0.5 ms), let it idle, read its RSS, stop it with SIGTERM and wait
//! for it. Blocking code on purpose: no runtime between the clock and the process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::rss_kib;

#[derive(clap::Args)]
pub struct Args {
    /// host:port the server will listen on.
    #[arg(long)]
    server: SocketAddr,
    /// Readiness path polled until it answers 200.
    #[arg(long, default_value = "/readyz")]
    ready_path: String,
    /// Idle time between ready and the RSS reading.
    #[arg(long, default_value_t = 2000)]
    settle_ms: u64,
    /// The server's stdout and stderr go here.
    #[arg(long)]
    log: PathBuf,
    /// The server command line.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// `GET path` on a fresh connection: is the answer a 200?
fn answers_200(server: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&server, Duration::from_millis(100)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET {path} HTTP/1.1\r\nhost: {server}\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

pub fn run(args: Args) -> Result<(), String> {
    let log = std::fs::File::create(&args.log)
        .map_err(|e| format!("cannot create {}: {e}", args.log.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let (program, rest) = args.command.split_first().ok_or("no command")?;
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let pid = child.id();
    let outcome = (|| {
        loop {
            if answers_200(args.server, &args.ready_path) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{program} exited before it was ready: {status}"));
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("{program} not ready after 30 s"));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let ready_ms = started.elapsed().as_secs_f64() * 1e3;
        std::thread::sleep(Duration::from_millis(args.settle_ms));
        let (rss, peak) = rss_kib(pid)?;
        Ok((ready_ms, rss, peak))
    })();
    // Stop it by its PID with SIGTERM (graceful: the database is left as a clean shutdown
    // leaves it, so the next round starts on the same file state).
    let _signalled = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let stopping = Instant::now();
    while !matches!(child.try_wait(), Ok(Some(_))) {
        if stopping.elapsed() > Duration::from_secs(10) {
            let _killed = child.kill();
            let _reaped = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (ready_ms, rss, peak) = outcome?;
    println!(
        "ready after {ready_ms:.1} ms; idle RSS {rss} KiB ({:.1} MiB), peak {peak} KiB",
        rss as f64 / 1024.0
    );
    println!("RESULT ready_ms={ready_ms:.2} rss_kib={rss} hwm_kib={peak} pid={pid}");
    Ok(())
}
