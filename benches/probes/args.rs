//! The probes' command-line arguments: `cargo bench` appends `--bench` after a probe's own.

/// The probe's own arguments, without the `--bench` that `cargo bench` appends.
pub fn probe_args() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect()
}

/// The probe's own arguments; `None`, after printing `usage`, when there are none: a plain
/// `cargo bench` runs every bench target, and there a probe that needs arguments only says how
/// to run it.
#[allow(dead_code)] // not every probe needs arguments
pub fn required_args(usage: &str) -> Option<Vec<String>> {
    let args = probe_args();
    if args.is_empty() {
        eprintln!("usage: {usage}");
        return None;
    }
    Some(args)
}

/// A comma list of counts (`arg`, else `default`); `name` labels a value that does not parse.
#[allow(dead_code)] // not every probe takes lists
pub fn usize_list(arg: Option<&String>, default: &str, name: &str) -> anyhow::Result<Vec<usize>> {
    use anyhow::Context;
    arg.map_or(default, |s| s.as_str())
        .split(',')
        .map(|v| v.parse().with_context(|| format!("{name}: {v}")))
        .collect()
}
