//! The floor under any network round trip on this machine: a bare TCP exchange on 127.0.0.1
//! between two processes on different CPUs, with no protocol and no work. The echo side runs on
//! ECHO_CPU (started here through `taskset`), reads REQUEST bytes and answers REPLY bytes; this
//! side sends one request every GAP_US µs (busy-waiting, as the load generator does) and
//! busy-polls for the reply. Two runs: back to back, where the echo CPU never idles, and at
//! GAP_US, where it idles between requests and each request must wake it.
//!
//! ```text
//! taskset -c 1 cargo bench --bench loopback_rtt -- ECHO_CPU [GAP_US] [REQUEST] [REPLY] [COUNT]
//! ```
//!
//! The defaults (1000 µs, 3 300 and 350 bytes) match mnist-mlp single-row requests over the
//! HTTP binary path at 1 000 requests/s: what this prints at GAP_US is the part of that path's
//! latency that no server can remove.

mod args;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Exchanges before the timed ones.
const WARMUP: usize = 200;

fn main() -> Result<()> {
    let Some(args) = args::required_args(
        "loopback_rtt ECHO_CPU [GAP_US] [REQUEST_BYTES] [REPLY_BYTES] [COUNT]  (run pinned: taskset -c OTHER_CPU)",
    ) else {
        return Ok(());
    };
    if args[0] == "--echo" {
        return echo(&args[1..]);
    }
    let number = |i: usize, default: usize, name: &str| -> Result<usize> {
        args.get(i)
            .map_or(Ok(default), |s| s.parse())
            .with_context(|| name.to_string())
    };
    let echo_cpu = number(0, 0, "ECHO_CPU")?;
    let gap = Duration::from_micros(number(1, 1000, "GAP_US")? as u64);
    let (request, reply) = (number(2, 3300, "REQUEST")?, number(3, 350, "REPLY")?);
    let count = number(4, 5000, "COUNT")?;

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let mut child = Command::new("taskset")
        .arg("-c")
        .arg(echo_cpu.to_string())
        .arg(std::env::current_exe()?)
        .args(["--echo", &port.to_string(), &request.to_string()])
        .arg(reply.to_string())
        .spawn()
        .context("starting the echo side with taskset")?;
    let (mut stream, _) = listener.accept()?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    println!(
        "TCP on 127.0.0.1, echo on CPU {echo_cpu}: {request}-byte request, {reply}-byte reply"
    );
    println!("| pause between requests | p50 µs | p90 µs | p99 µs |");
    println!("|---|---|---|---|");
    for pause in [Duration::ZERO, gap] {
        let mut times = exchange(&mut stream, pause, request, reply, count)?;
        times.sort_unstable();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
        println!(
            "| {pause:?} | {:.1} | {:.1} | {:.1} |",
            at(0.5),
            at(0.9),
            at(0.99)
        );
    }
    drop(stream);
    child.wait()?;
    Ok(())
}

/// Times `count` exchanges, one every `pause`.
fn exchange(
    stream: &mut TcpStream,
    pause: Duration,
    request: usize,
    reply: usize,
    count: usize,
) -> Result<Vec<Duration>> {
    let out = vec![1u8; request];
    let mut inbox = vec![0u8; reply.max(1)];
    let mut times = Vec::with_capacity(count);
    for i in 0..WARMUP + count {
        let due = Instant::now() + pause;
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        let start = Instant::now();
        write_all_nonblocking(stream, &out)?;
        let mut got = 0;
        while got < reply {
            match stream.read(&mut inbox[..reply - got]) {
                Ok(0) => bail!("the echo side closed"),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(e) => return Err(e.into()),
            }
        }
        if i >= WARMUP {
            times.push(start.elapsed());
        }
    }
    Ok(times)
}

fn write_all_nonblocking(stream: &mut TcpStream, mut bytes: &[u8]) -> Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The echo side: blocking reads (its CPU idles between requests, as a server's does).
fn echo(args: &[String]) -> Result<()> {
    let [port, request, reply] = args else {
        bail!("--echo PORT REQUEST REPLY");
    };
    let (request, reply): (usize, usize) = (request.parse()?, reply.parse()?);
    let mut stream = TcpStream::connect(("127.0.0.1", port.parse::<u16>()?))?;
    stream.set_nodelay(true)?;
    let mut inbox = vec![0u8; request.max(1)];
    let answer = vec![2u8; reply];
    loop {
        let mut got = 0;
        while got < request {
            match stream.read(&mut inbox[..request - got])? {
                0 => return Ok(()),
                n => got += n,
            }
        }
        stream.write_all(&answer)?;
    }
}
