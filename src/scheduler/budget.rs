//! [`ThreadBudget`]: one thread budget per scheduler, from the CPUs this process may actually
//! use ([`CpuLimits`]).
//!
//! The budget is the smaller of the CPU affinity mask and the cgroup CPU quota (v2 `cpu.max`,
//! v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`, taking the tightest limit on the cgroup's path),
//! never the host's core count. [`CpuLimits::discover`] reads `/proc` and `/sys` once; the
//! parsers are pure functions over the files' text.

use std::fmt;
use std::path::Path;

/// What limits the CPUs this process can use. Not part of the stable API: tests set it through
/// `SchedulerConfig::cpu_limits` to pin the budget.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CpuLimits {
    /// CPUs in the affinity mask (`Cpus_allowed_list` of `/proc/self/status`).
    pub affinity: Option<usize>,
    /// CPUs' worth of time the cgroup quota allows (e.g. 1.5), `None` if unlimited or unknown.
    pub quota: Option<f64>,
    /// What the standard library reports, used only when neither of the above is known.
    pub fallback: Option<usize>,
}

impl CpuLimits {
    /// Reads the affinity mask and the cgroup quota of the calling process.
    /// Missing files (other systems, no cgroup) leave the field `None`.
    pub fn discover() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let affinity = read("/proc/self/status").and_then(|s| parse_status_cpus_allowed(&s));
        let quota = read("/proc/self/cgroup").and_then(|cgroups| {
            let paths = parse_proc_self_cgroup(&cgroups);
            quota_v2(&paths).or_else(|| quota_v1(&paths))
        });
        let fallback = std::thread::available_parallelism().ok().map(usize::from);
        CpuLimits {
            affinity,
            quota,
            fallback,
        }
    }

    /// Whole CPUs available: min(affinity, ⌈quota⌉), at least 1.
    pub fn cpus(&self) -> usize {
        let quota = self.quota.map(|q| (q.ceil() as usize).max(1));
        match (self.affinity, quota) {
            (Some(a), Some(q)) => a.min(q),
            (Some(a), None) => a,
            (None, Some(q)) => q,
            (None, None) => self.fallback.unwrap_or(1),
        }
        .max(1)
    }
}

/// How the process's threads are split. Batches large enough to fork run on the shared rayon
/// pool; each model's worker thread gathers requests, copies rows, answers callers, and blocks
/// while its batch runs on the pool.
///
/// The pool has [`ThreadBudget::pool_threads`] threads: the `threads` the scheduler was
/// configured with, else the CPUs this process may use ([`ThreadBudget::cpus`], the smaller of
/// the affinity mask and the cgroup quota). With `inline_small_batches` (the scheduler's
/// default), a worker runs a batch too small to fork (one task) itself, saving two thread
/// hand-offs per batch; then up to `pool_threads` + one per busy model compute at once, and the
/// report says so. Without it, at most `pool_threads` threads compute at once.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ThreadBudget {
    limits: CpuLimits,
    cpus: usize,
    overridden: bool,
    pub(crate) pool_threads: usize,
    workers_per_model: usize,
    pub(crate) inline_small_batches: bool,
}

impl ThreadBudget {
    /// The budget for `limits`: a pool of `threads` threads, or one per CPU.
    pub(crate) fn new(limits: CpuLimits, threads: Option<usize>) -> Self {
        let cpus = limits.cpus();
        ThreadBudget {
            limits,
            cpus,
            overridden: threads.is_some(),
            pool_threads: threads.unwrap_or(cpus).max(1),
            workers_per_model: 1,
            inline_small_batches: false,
        }
    }

    /// CPUs this process may use: min(affinity, ⌈cgroup quota⌉), at least 1.
    pub fn cpus(&self) -> usize {
        self.cpus
    }

    /// CPUs in the affinity mask, if known.
    pub fn affinity(&self) -> Option<usize> {
        self.limits.affinity
    }

    /// CPUs' worth of time the cgroup quota allows, `None` if unlimited or unknown.
    pub fn quota(&self) -> Option<f64> {
        self.limits.quota
    }

    /// Threads of the shared compute pool that runs every model's batches.
    pub fn pool_threads(&self) -> usize {
        self.pool_threads
    }

    /// Whether the pool's size was configured (`threads` or `pool`) rather than discovered.
    pub fn configured(&self) -> bool {
        self.overridden
    }

    /// Coordinating threads per loaded model.
    pub fn workers_per_model(&self) -> usize {
        self.workers_per_model
    }

    /// Whether workers run one-task batches themselves instead of handing them to the pool.
    pub fn inline_small_batches(&self) -> bool {
        self.inline_small_batches
    }
}

impl fmt::Display for ThreadBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: Option<usize>| v.map_or("unknown".to_string(), |v| v.to_string());
        write!(
            f,
            "thread budget: {} cpus (affinity {}, cgroup quota {}), compute pool {} threads ({}), \
             {} worker per model {}",
            self.cpus,
            opt(self.limits.affinity),
            self.limits
                .quota
                .map_or("none".to_string(), |q| format!("{q:.2} cpus")),
            self.pool_threads,
            if self.overridden {
                "set by config"
            } else {
                "one per cpu"
            },
            self.workers_per_model,
            if self.inline_small_batches {
                "(runs one-task batches itself: up to pool + one per busy model compute at once)"
            } else {
                "(coordinates only; kernels run on the pool)"
            }
        )
    }
}

/// Counts the CPUs in a list such as `0-3,8,10-11` (the kernel's cpulist format).
pub(crate) fn parse_cpu_list(list: &str) -> Option<usize> {
    let list = list.trim();
    if list.is_empty() {
        return None;
    }
    let mut count = 0;
    for part in list.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a {
                    return None;
                }
                count += b - a + 1;
            }
            None => {
                part.parse::<usize>().ok()?;
                count += 1;
            }
        }
    }
    Some(count)
}

/// The affinity CPU count from the text of `/proc/self/status`.
pub(crate) fn parse_status_cpus_allowed(status: &str) -> Option<usize> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(parse_cpu_list)
}

/// CPUs allowed by a cgroup v2 `cpu.max` (`"150000 100000"` → 1.5; `"max 100000"` → `None`).
pub(crate) fn parse_cgroup_v2_cpu_max(text: &str) -> Option<f64> {
    let mut it = text.split_whitespace();
    let quota = it.next()?;
    let period: f64 = it.next().map_or(Some(100_000.0), |p| p.parse().ok())?;
    if quota == "max" || period <= 0.0 {
        return None;
    }
    let quota: f64 = quota.parse().ok()?;
    (quota > 0.0).then(|| quota / period)
}

/// CPUs allowed by cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` (`-1` = unlimited).
pub(crate) fn parse_cgroup_v1_quota(quota_us: &str, period_us: &str) -> Option<f64> {
    let quota: i64 = quota_us.trim().parse().ok()?;
    let period: i64 = period_us.trim().parse().ok()?;
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// The process's cgroup paths from the text of `/proc/self/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CgroupPaths {
    /// The unified (v2) hierarchy path, from the `0::/path` line.
    pub v2: Option<String>,
    /// The v1 `cpu` controller path.
    pub v1_cpu: Option<String>,
}

/// Parses `/proc/self/cgroup` (`id:controllers:path` per line).
pub(crate) fn parse_proc_self_cgroup(text: &str) -> CgroupPaths {
    let mut paths = CgroupPaths::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            paths.v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "cpu") {
            paths.v1_cpu = Some(path.to_string());
        }
    }
    paths
}

/// `path` and each of its ancestors, deepest first: `/a/b` → `/a/b`, `/a`, ``.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let path = path.trim_end_matches('/');
    std::iter::successors(Some(path), |p| p.rfind('/').map(|i| &p[..i]))
}

fn tightest(limits: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    limits.flatten().reduce(f64::min)
}

fn quota_v2(paths: &CgroupPaths) -> Option<f64> {
    let path = paths.v2.as_deref()?;
    let root = Path::new("/sys/fs/cgroup");
    tightest(ancestors(path).map(|p| {
        let file = root.join(p.trim_start_matches('/')).join("cpu.max");
        std::fs::read_to_string(file)
            .ok()
            .and_then(|t| parse_cgroup_v2_cpu_max(&t))
    }))
}

fn quota_v1(paths: &CgroupPaths) -> Option<f64> {
    let path = paths.v1_cpu.as_deref()?;
    ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"]
        .iter()
        .map(Path::new)
        .find(|root| root.exists())
        .and_then(|root| {
            tightest(ancestors(path).map(|p| {
                let dir = root.join(p.trim_start_matches('/'));
                let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
                parse_cgroup_v1_quota(&read("cpu.cfs_quota_us")?, &read("cpu.cfs_period_us")?)
            }))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), Some(7));
        assert_eq!(parse_cpu_list("5"), Some(1));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a-b"), None);
        let status = "Name:\tx\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\nMems_allowed:\t1\n";
        assert_eq!(parse_status_cpus_allowed(status), Some(2));
        assert_eq!(parse_status_cpus_allowed("Name: x\n"), None);
    }

    #[test]
    fn cgroup_v2_cpu_max() {
        assert_eq!(parse_cgroup_v2_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cgroup_v2_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cgroup_v2_cpu_max("50000"), Some(0.5));
        assert_eq!(parse_cgroup_v2_cpu_max(""), None);
        assert_eq!(parse_cgroup_v2_cpu_max("x 100000"), None);
    }

    #[test]
    fn cgroup_v1_quota() {
        assert_eq!(parse_cgroup_v1_quota("-1\n", "100000\n"), None);
        assert_eq!(parse_cgroup_v1_quota("200000", "100000"), Some(2.0));
        assert_eq!(parse_cgroup_v1_quota("25000", "100000"), Some(0.25));
        assert_eq!(parse_cgroup_v1_quota("x", "100000"), None);
    }

    #[test]
    fn proc_self_cgroup() {
        let v1 = "9:name=systemd:/\n4:memory:/a\n2:cpu,cpuacct:/docker/abc\n0::/\n";
        assert_eq!(
            parse_proc_self_cgroup(v1),
            CgroupPaths {
                v2: Some("/".into()),
                v1_cpu: Some("/docker/abc".into())
            }
        );
        let v2 = "0::/user.slice/app.scope\n";
        assert_eq!(
            parse_proc_self_cgroup(v2).v2.as_deref(),
            Some("/user.slice/app.scope")
        );
        assert_eq!(parse_proc_self_cgroup(v2).v1_cpu, None);
    }

    #[test]
    fn ancestors_walk_to_the_root() {
        let all: Vec<&str> = ancestors("/a/b/").collect();
        assert_eq!(all, ["/a/b", "/a", ""]);
        assert_eq!(ancestors("/").collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn discovery_on_this_machine_is_within_the_host() {
        let limits = CpuLimits::discover();
        let host = std::thread::available_parallelism().map_or(1, usize::from);
        let cpus = limits.cpus();
        assert!(
            (1..=host.max(limits.affinity.unwrap_or(1))).contains(&cpus),
            "{limits:?}"
        );
    }

    #[test]
    fn budget_is_the_tightest_limit() {
        let limits = |affinity, quota| CpuLimits {
            affinity,
            quota,
            fallback: Some(64),
        };
        assert_eq!(limits(Some(8), Some(1.5)).cpus(), 2);
        assert_eq!(limits(Some(2), Some(6.0)).cpus(), 2);
        assert_eq!(limits(Some(4), None).cpus(), 4);
        assert_eq!(limits(None, Some(0.2)).cpus(), 1);
        assert_eq!(limits(None, None).cpus(), 64);
        let b = ThreadBudget::new(limits(Some(8), Some(3.0)), None);
        assert_eq!((b.cpus, b.pool_threads, b.overridden), (3, 3, false));
        let b = ThreadBudget::new(limits(Some(4), None), Some(2));
        assert_eq!((b.cpus, b.pool_threads, b.overridden), (4, 2, true));
        assert!(b.to_string().contains("compute pool 2 threads"));
    }
}
