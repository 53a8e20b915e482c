//! What tells the machine from the program in a serve-sim run, and the pinning it needs: CPU
//! sets from the command line, pinning a thread to one (`sched_setaffinity`), each thread's CPU
//! time, run-queue wait and context switches (`/proc/self/task/TID/{schedstat,status}`), and each
//! CPU's busy and steal time (`/proc/stat`). Linux only; elsewhere pinning is refused and the
//! figures are absent.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A set of CPU numbers, as `taskset -c` writes it: `0`, `0,2`, `0-3,6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSet(Vec<usize>);

impl CpuSet {
    /// The CPUs, ascending, without repeats.
    pub fn cpus(&self) -> &[usize] {
        &self.0
    }

    /// How many CPUs.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl FromStr for CpuSet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a CPU list (e.g. 0 or 0,2 or 0-3)");
        let number = |s: &str| s.trim().parse::<usize>().map_err(|_| bad());
        let mut cpus = Vec::new();
        for part in text.split(',') {
            match part.split_once('-') {
                Some((low, high)) => {
                    let (low, high) = (number(low)?, number(high)?);
                    if low > high {
                        return Err(bad());
                    }
                    cpus.extend(low..=high);
                }
                None => cpus.push(number(part)?),
            }
        }
        if cpus.iter().any(|&c| c >= MAX_CPUS) {
            return Err(format!("`{text}`: CPU numbers go up to {}", MAX_CPUS - 1));
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(CpuSet(cpus))
    }
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut i = 0;
        while i < self.0.len() {
            let mut j = i;
            while j + 1 < self.0.len() && self.0[j + 1] == self.0[j] + 1 {
                j += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if j > i {
                write!(f, "{}-{}", self.0[i], self.0[j])?;
            } else {
                write!(f, "{}", self.0[i])?;
            }
            i = j + 1;
        }
        Ok(())
    }
}

/// CPUs a `cpu_set_t` holds.
const MAX_CPUS: usize = 1024;

/// Pins the calling thread to `cpus`.
#[cfg(target_os = "linux")]
pub fn pin_current_thread(cpus: &CpuSet) -> std::io::Result<()> {
    // SAFETY: `cpu_set_t` is plain bits, valid all zero; CPU_SET is given numbers below
    // MAX_CPUS (= CPU_SETSIZE, checked when parsing); sched_setaffinity reads `size_of` bytes
    // of the set, which lives across the call. Pid 0 is the calling thread.
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus.cpus() {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn pin_current_thread(_cpus: &CpuSet) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "pinning threads to CPUs is implemented for Linux only",
    ))
}

/// Makes the calling thread's sleeps end on time: Linux lets a sleep of a normal thread overrun
/// by up to its timer slack (50 µs by default), more than the gap between two requests at tens of
/// thousands per second, which would make an open-loop sender fall behind its own schedule.
/// Best effort: elsewhere, or when refused, sleeps keep the default slack.
pub fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument (nanoseconds, here 1) and changes only
    // the calling thread's timer slack; it touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// Runs the calling thread only when its CPU has nothing else to do (`SCHED_IDLE`), for
/// bookkeeping that must never delay the threads it shares a CPU with. Best effort: elsewhere, or
/// when refused, the thread keeps its priority.
pub fn idle_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: sched_setscheduler reads the `sched_param`, which lives across the call; pid 0 is
    // the calling thread, and SCHED_IDLE requires priority 0 and no privilege.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}

/// The calling thread's kernel id, where there is one.
pub fn current_tid() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions and cannot fail.
        Some(unsafe { libc::gettid() })
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// One thread's scheduling over an interval (or since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ThreadUsage {
    /// Time on a CPU, ns.
    pub cpu_ns: u64,
    /// Time runnable but waiting for a CPU (its run queue), ns.
    pub runqueue_ns: u64,
    /// Times it gave up the CPU itself (blocked or slept).
    pub voluntary: u64,
    /// Times it was preempted.
    pub involuntary: u64,
}

impl ThreadUsage {
    /// The thread `tid` of this process so far, if it is alive and /proc has it.
    pub fn of(tid: i32) -> Option<Self> {
        let dir = format!("/proc/self/task/{tid}");
        let schedstat = std::fs::read_to_string(format!("{dir}/schedstat")).ok()?;
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        let (cpu_ns, runqueue_ns) = parse_schedstat(&schedstat)?;
        let (voluntary, involuntary) = parse_switches(&status)?;
        Some(ThreadUsage {
            cpu_ns,
            runqueue_ns,
            voluntary,
            involuntary,
        })
    }

    /// The calling thread so far.
    pub fn current() -> Option<Self> {
        Self::of(current_tid()?)
    }

    /// What happened since `earlier`.
    pub fn since(self, earlier: ThreadUsage) -> Self {
        ThreadUsage {
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            runqueue_ns: self.runqueue_ns.saturating_sub(earlier.runqueue_ns),
            voluntary: self.voluntary.saturating_sub(earlier.voluntary),
            involuntary: self.involuntary.saturating_sub(earlier.involuntary),
        }
    }
}

/// `/proc/.../schedstat`: time on CPU and time waiting on a run queue, ns, then timeslices.
fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some((fields.next()??, fields.next()??))
}

/// `/proc/.../status`: the voluntary and involuntary context switches.
fn parse_switches(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((
        field("voluntary_ctxt_switches:")?,
        field("nonvoluntary_ctxt_switches:")?,
    ))
}

/// Runs `body` on the calling thread, pinned to `cpus` when given, and returns what it gave
/// with the thread's usage over it.
pub fn measured<T>(cpus: Option<&CpuSet>, body: impl FnOnce() -> T) -> (T, Option<ThreadUsage>) {
    if let Some(cpus) = cpus
        && let Err(e) = pin_current_thread(cpus)
    {
        // The CPUs were checked before any thread started; this is not expected.
        eprintln!("warning: cannot pin a load-generator thread to CPUs {cpus}: {e}");
    }
    let before = ThreadUsage::current();
    let value = body();
    let usage = ThreadUsage::current()
        .zip(before)
        .map(|(after, before)| after.since(before));
    (value, usage)
}

/// One CPU's time from `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// The CPU's number.
    pub cpu: usize,
    /// user + nice + system + irq + softirq.
    pub busy: u64,
    /// Time the hypervisor ran something else while this virtual CPU wanted to run.
    pub steal: u64,
    /// idle + iowait.
    pub idle: u64,
}

/// Every CPU's ticks now (empty where /proc/stat is missing).
pub fn cpu_ticks() -> Vec<CpuTicks> {
    std::fs::read_to_string("/proc/stat")
        .map(|t| parse_proc_stat(&t))
        .unwrap_or_default()
}

/// The `cpuN` lines of `/proc/stat`.
fn parse_proc_stat(text: &str) -> Vec<CpuTicks> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let cpu = fields.next()?.strip_prefix("cpu")?.parse::<usize>().ok()?;
            let v: Vec<u64> = fields.map_while(|f| f.parse().ok()).collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            // user nice system idle iowait irq softirq steal guest guest_nice
            Some(CpuTicks {
                cpu,
                busy: at(0) + at(1) + at(2) + at(5) + at(6),
                steal: at(7),
                idle: at(3) + at(4),
            })
        })
        .collect()
}

/// Milliseconds per clock tick of /proc/stat.
pub fn ms_per_tick() -> f64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if hz > 0 {
            return 1000.0 / hz as f64;
        }
    }
    10.0
}

/// One CPU over a run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuOverRun {
    /// The CPU's number.
    pub cpu: usize,
    /// Busy (any process), ms.
    pub busy_ms: f64,
    /// Stolen by the hypervisor, ms.
    pub steal_ms: f64,
    /// Idle, ms.
    pub idle_ms: f64,
}

/// CPU time (ns) and name of threads, keyed by `(pid, tid)`.
pub type ThreadTimes = HashMap<(u32, u32), (String, u64)>;

/// CPU time of every thread of every other process (kernel threads included): what ran on the
/// machine besides us. Empty where there is no `/proc`.
pub fn other_threads() -> ThreadTimes {
    let own = std::process::id();
    let mut threads = HashMap::new();
    for (pid, process) in numbered_entries(std::path::Path::new("/proc")) {
        if pid == own {
            continue;
        }
        for (tid, task) in numbered_entries(&process.join("task")) {
            let cpu_ns = std::fs::read_to_string(task.join("schedstat"))
                .ok()
                .and_then(|text| parse_schedstat(&text))
                .map(|(cpu_ns, _)| cpu_ns);
            let name = std::fs::read_to_string(task.join("comm"));
            if let (Some(cpu_ns), Ok(name)) = (cpu_ns, name) {
                threads.insert((pid, tid), (name.trim().to_string(), cpu_ns));
            }
        }
    }
    threads
}

/// The entries of `dir` named by a number (processes in `/proc`, threads in `task/`), with their
/// paths; none if `dir` cannot be read (the process may have exited).
fn numbered_entries(dir: &std::path::Path) -> impl Iterator<Item = (u32, std::path::PathBuf)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let number = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((number, entry.path()))
        })
}

/// Another process's thread over a run.
#[derive(Debug, Clone, Serialize)]
pub struct OtherThread {
    /// Its name (`comm`), e.g. `kworker/0:1` or `kdamond.0`.
    pub name: String,
    /// Process id.
    pub pid: u32,
    /// Time it ran, ms, on any CPU.
    pub cpu_ms: f64,
}

/// The other threads that ran between two [`other_threads`] readings, busiest first.
pub fn others_between(before: &ThreadTimes, after: &ThreadTimes) -> Vec<OtherThread> {
    let mut ran: Vec<OtherThread> = after
        .iter()
        .filter_map(|(&(pid, tid), (name, cpu_ns))| {
            let earlier = before.get(&(pid, tid)).map_or(0, |(_, ns)| *ns);
            let ns = cpu_ns.saturating_sub(earlier);
            (ns > 0).then(|| OtherThread {
                name: name.clone(),
                pid,
                cpu_ms: ns as f64 / 1e6,
            })
        })
        .collect();
    ran.sort_by(|a, b| b.cpu_ms.total_cmp(&a.cpu_ms));
    ran
}

/// Each CPU's time between two `/proc/stat` readings.
pub fn cpus_between(before: &[CpuTicks], after: &[CpuTicks]) -> Vec<CpuOverRun> {
    let ms = ms_per_tick();
    after
        .iter()
        .filter_map(|a| {
            let b = before.iter().find(|b| b.cpu == a.cpu)?;
            Some(CpuOverRun {
                cpu: a.cpu,
                busy_ms: a.busy.saturating_sub(b.busy) as f64 * ms,
                steal_ms: a.steal.saturating_sub(b.steal) as f64 * ms,
                idle_ms: a.idle.saturating_sub(b.idle) as f64 * ms,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_as_taskset_writes_them() {
        let set: CpuSet = "3,0-1,1".parse().unwrap();
        assert_eq!(set.cpus(), [0, 1, 3]);
        assert_eq!(set.len(), 3);
        assert_eq!(set.to_string(), "0-1,3");
        assert_eq!("1".parse::<CpuSet>().unwrap().to_string(), "1");
        for bad in ["", "a", "2-1", "1,", "-1", "5000"] {
            assert!(bad.parse::<CpuSet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn other_threads_are_the_ones_that_ran_busiest_first() {
        let reading = |entries: &[(u32, u32, &str, u64)]| -> ThreadTimes {
            entries
                .iter()
                .map(|&(pid, tid, name, ns)| ((pid, tid), (name.to_string(), ns)))
                .collect()
        };
        let before = reading(&[(7, 7, "idle-one", 5_000_000), (8, 9, "kworker", 1_000_000)]);
        let after = reading(&[
            (7, 7, "idle-one", 5_000_000),
            (8, 9, "kworker", 1_500_000),
            // Started during the run: all its time counts.
            (10, 10, "kdamond.0", 2_000_000),
        ]);
        let ran = others_between(&before, &after);
        let names: Vec<_> = ran
            .iter()
            .map(|o| (o.name.as_str(), o.pid, o.cpu_ms))
            .collect();
        assert_eq!(names, [("kdamond.0", 10, 2.0), ("kworker", 8, 0.5)]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn other_threads_include_other_processes_and_not_ours() {
        let threads = other_threads();
        let own = std::process::id();
        assert!(threads.keys().all(|&(pid, _)| pid != own));
        // The init process (pid 1) is always there.
        assert!(threads.keys().any(|&(pid, _)| pid == 1), "{threads:?}");
    }

    #[test]
    fn proc_files_parse() {
        assert_eq!(parse_schedstat("1234 567 8\n"), Some((1234, 567)));
        assert_eq!(parse_schedstat("x"), None);
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(parse_switches(status), Some((12, 3)));
        let stat = "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\ncpu1 10 0 0 20 0 0 0 5\nintr 1 2\n";
        let cpus = parse_proc_stat(stat);
        assert_eq!(
            cpus,
            [
                CpuTicks {
                    cpu: 0,
                    busy: 1 + 2 + 3 + 6 + 7,
                    steal: 8,
                    idle: 4 + 5
                },
                CpuTicks {
                    cpu: 1,
                    busy: 10,
                    steal: 5,
                    idle: 20
                },
            ]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pinned_thread_sees_its_own_usage() {
        let (spins, usage) = std::thread::spawn(|| {
            let set = CpuSet(vec![0]);
            measured(Some(&set), || {
                let start = std::time::Instant::now();
                let mut n = 0u64;
                while start.elapsed() < std::time::Duration::from_millis(20) {
                    n = std::hint::black_box(n + 1);
                }
                n
            })
        })
        .join()
        .unwrap();
        assert!(spins > 0);
        let usage = usage.expect("/proc/self/task is readable");
        assert!(usage.cpu_ns > 1_000_000, "{usage:?}");
    }
}
