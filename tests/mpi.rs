//! MpiPool over real MPI jobs: each test starts `mpirun` as a subprocess (MPI initializes
//! once per process), with the `multiproc mpi-rank ROLE` program on every rank, under a
//! hard deadline, and checks that no rank or local worker outlives the job.

mod common;
use common::deadline;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

multiproc::test_support!();

const EXE: &str = env!("CARGO_BIN_EXE_multiproc");

/// What an mpirun job left: exit code, output, and how many of its processes (ranks and
/// local workers) were alive at most at once.
struct Job {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    peak: usize,
}

/// Pids of live processes whose environment holds `marker` (every rank and worker of a
/// job inherits it). Zombies have no environment left; their parent reaps them.
fn marked(marker: &str) -> Vec<u32> {
    let needle = format!("MULTIPROC_MPI_TEST={marker}");
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ"))
            && env.split(|&b| b == 0).any(|v| v == needle.as_bytes())
        {
            out.push(pid);
        }
    }
    out
}

/// The one-machine options: oversubscribe this small machine, no binding, yield when idle,
/// shared memory only; allowed as root (CI runs as root).
fn mpirun() -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "--bind-to", "none"])
        .args([
            "--mca",
            "mpi_yield_when_idle",
            "1",
            "--mca",
            "btl",
            "self,vader",
        ])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c
}

/// Runs `cmd` in its own process group; kills the group if it runs past `secs`. Fails the
/// test if any process of the job is left afterwards.
fn run_job(mut cmd: Command, secs: u64) -> Job {
    use std::os::unix::process::CommandExt;
    let marker = format!("{}-{:?}", std::process::id(), Instant::now());
    cmd.env("MULTIPROC_MPI_TEST", &marker)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run mpirun (is Open MPI installed?)");
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut so, &mut s).ok();
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut se, &mut s).ok();
        s
    });
    let end = Instant::now() + Duration::from_secs(secs);
    let mut peak = 0;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() >= end {
            break None;
        }
        peak = peak.max(marked(&marker).len());
        std::thread::sleep(Duration::from_millis(50));
    };
    let Some(status) = status else {
        let pg = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &pg]).status();
        for p in marked(&marker) {
            let _ = Command::new("kill")
                .args(["-KILL", &p.to_string()])
                .status();
        }
        let _ = child.wait();
        panic!("mpirun ran past {secs} s (hang); killed its process group");
    };
    // Ranks and workers go within moments of mpirun's exit.
    let gone_by = Instant::now() + Duration::from_secs(10);
    let mut left = marked(&marker);
    while !left.is_empty() && Instant::now() < gone_by {
        std::thread::sleep(Duration::from_millis(50));
        left = marked(&marker);
    }
    for p in &left {
        let _ = Command::new("kill")
            .args(["-KILL", &p.to_string()])
            .status();
    }
    assert!(
        left.is_empty(),
        "processes left behind by the job: {left:?}"
    );
    Job {
        code: status.code(),
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
        peak,
    }
}

fn ranks(n: u32, role: &str) -> Command {
    let mut c = mpirun();
    c.args(["-n", &n.to_string(), EXE, "mpi-rank", role]);
    c
}

fn result(job: &Job) -> String {
    job.stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT ").map(str::to_string))
        .unwrap_or_else(|| {
            panic!(
                "no result (exit {:?}):\n{}\n{}",
                job.code, job.stdout, job.stderr
            )
        })
}

#[test]
fn results_equal_a_serial_computation_for_10000_tasks_over_4_ranks() {
    deadline(200, || {
        // map, starmap, imap, imap_unordered, submit + wait + as_completed, and generic
        // Executor code: each checked against the serial computation on rank 0.
        let job = run_job(ranks(4, "serial"), 180);
        let r = result(&job);
        assert_eq!(job.code, Some(0), "{}", job.stderr);
        assert!(r.contains("\"ranks\":4"), "{r}");
        // The tasks spread over the ranks (each task reports the rank it ran on).
        let used = r.split("ranks_used\":{").nth(1).unwrap();
        let used = used.split('}').next().unwrap().split(',').count();
        assert!(used >= 3, "tasks ran on only {used} ranks: {r}");
    });
}

#[test]
fn crashes_aborts_exits_panics_and_timeouts_on_other_ranks_fail_only_their_tasks() {
    deadline(200, || {
        // Rank 0 only drives here, so every task runs on a non-zero rank; the program
        // checks each failure's kind, rank, host and index, then that the ranks still serve.
        let job = run_job(ranks(4, "faults"), 180);
        let r = result(&job);
        assert_eq!(job.code, Some(0), "{}\n{}", job.stdout, job.stderr);
        for what in [
            "SIGSEGV",
            "SIGABRT",
            "timed out",
            "exited with code 3",
            "panicked",
        ] {
            assert!(r.contains(what), "missing {what}: {r}");
        }
        assert!(r.contains("on MPI rank"), "{r}");
    });
}

#[test]
fn memory_limit_max_tasks_per_child_and_retries_hold_on_every_rank() {
    deadline(200, || {
        let job = run_job(ranks(4, "limits"), 180);
        let r = result(&job);
        assert_eq!(job.code, Some(0), "{}\n{}", job.stdout, job.stderr);
        assert!(r.contains("workers_seen"), "{r}");
    });
}

#[test]
fn on_threads_results_match_and_a_panic_fails_only_its_task() {
    deadline(200, || {
        let job = run_job(ranks(3, "threads"), 180);
        let r = result(&job);
        assert_eq!(job.code, Some(0), "{}\n{}", job.stdout, job.stderr);
        assert!(r.contains("\"threads\":true"), "{r}");
    });
}

#[test]
fn clean_shutdown_leaves_no_rank_or_local_worker_running() {
    deadline(200, || {
        // 4 ranks, each with one local worker (and fork server): at least 8 processes of
        // the job run at once; `run_job` fails if any of them outlives the job.
        let job = run_job(ranks(4, "serial"), 180);
        assert_eq!(job.code, Some(0), "{}", job.stderr);
        assert!(job.peak >= 8, "only {} processes of the job seen", job.peak);
    });
}

#[test]
fn a_rank_that_dies_ends_the_job_and_rank_0_does_not_hang() {
    deadline(120, || {
        // With `threads(true)`, a segfault takes its rank down; MPI then ends the job
        // (mpirun's default for a rank that dies), so rank 0 stops instead of waiting.
        let job = run_job(ranks(3, "rank-dies"), 100);
        assert_ne!(job.code, Some(0));
        assert!(!job.stdout.contains("outlived"), "{}", job.stdout);
        assert!(
            job.stderr.contains("signal 11") || job.stderr.contains("Segmentation"),
            "mpirun did not name the dead rank: {}",
            job.stderr
        );
    });
}

/// A copy of the program with another GNU build id (one byte of the note flipped): it runs
/// just like the original but claims to be another build.
fn other_build(dir: &std::path::Path) -> std::path::PathBuf {
    let mut bytes = std::fs::read(EXE).unwrap();
    // The note: namesz 4, descsz 20, type 3 (NT_GNU_BUILD_ID), "GNU\0", then the id.
    let head: &[u8] = &[4, 0, 0, 0, 20, 0, 0, 0, 3, 0, 0, 0, b'G', b'N', b'U', 0];
    let at = bytes
        .windows(head.len())
        .position(|w| w == head)
        .expect("the binary has a GNU build id");
    bytes[at + head.len()] ^= 0xff;
    let path = dir.join("multiproc-other-build");
    std::fs::write(&path, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_rank_running_another_build_is_refused_naming_its_rank_and_host() {
    deadline(120, || {
        let dir = std::env::temp_dir().join(format!("multiproc-mpi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let other = other_build(&dir);
        let mut c = mpirun();
        c.args(["-n", "2", EXE, "mpi-rank", "mismatch", ":", "-n", "1"])
            .arg(&other)
            .args(["mpi-rank", "mismatch"]);
        let job = run_job(c, 100);
        let _ = std::fs::remove_dir_all(&dir);
        assert_ne!(job.code, Some(0));
        let err = job
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("ERROR "))
            .unwrap_or_else(|| panic!("no error from rank 0: {}\n{}", job.stdout, job.stderr));
        assert!(err.contains("not the same build"), "{err}");
        assert!(err.contains("MPI rank 2 on host"), "{err}");
        assert!(err.contains("multiproc-other-build"), "{err}");
    });
}

/// Two "hosts" on this machine: network namespaces joined by a veth pair, each with its own
/// address (test-namespace addresses only) and, through `unshare --uts`, its own host name.
/// mpirun runs in the first; its rsh agent starts the daemon of the second with
/// `ip netns exec`, where ssh would log in to a real host. Removed on drop.
struct TwoHosts {
    dir: std::path::PathBuf,
    ns: [String; 2],
}

impl TwoHosts {
    const ADDR: [&'static str; 2] = ["10.231.0.1", "10.231.0.2"];

    fn new() -> TwoHosts {
        let id = std::process::id();
        let ns = [format!("mpt{id}a"), format!("mpt{id}b")];
        let dir = std::env::temp_dir().join(format!("multiproc-mpi-hosts-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = TwoHosts { dir, ns };
        let ip = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("run ip");
            assert!(st.success(), "ip {args:?} failed");
        };
        let (a, b) = (&hosts.ns[0], &hosts.ns[1]);
        let (va, vb) = (format!("{a}v"), format!("{b}v"));
        ip(&["netns", "add", a]);
        ip(&["netns", "add", b]);
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", a]);
        ip(&["link", "set", &vb, "netns", b]);
        for (ns, dev, addr) in [(a, &va, Self::ADDR[0]), (b, &vb, Self::ADDR[1])] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let agent = format!(
            "#!/bin/sh\nhost=$1; shift\ncase \"$host\" in\n  {}) ns={a}; name=host-a ;;\n  \
             {}) ns={b}; name=host-b ;;\n  *) echo \"unknown host $host\" >&2; exit 1 ;;\nesac\n\
             exec ip netns exec \"$ns\" unshare --uts sh -c \"hostname $name; $*\"\n",
            Self::ADDR[0],
            Self::ADDR[1]
        );
        std::fs::write(hosts.dir.join("rsh"), agent).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            hosts.dir.join("rsh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let list = format!("{} slots=2\n{} slots=2\n", Self::ADDR[0], Self::ADDR[1]);
        std::fs::write(hosts.dir.join("hostfile"), list).unwrap();
        hosts
    }

    /// mpirun over both hosts, `n` ranks placed round-robin by host, TCP between them.
    fn mpirun(&self, n: u32, role: &str) -> Command {
        let net = "10.231.0.0/24";
        let line = format!(
            "hostname host-a; exec mpirun --hostfile {hf} -n {n} --map-by node --bind-to none \
             --mca plm_rsh_agent {rsh} --mca oob_tcp_if_include {net} \
             --mca btl tcp,self,vader --mca btl_tcp_if_include {net} \
             --mca mpi_yield_when_idle 1 {EXE} mpi-rank {role}",
            hf = self.dir.join("hostfile").display(),
            rsh = self.dir.join("rsh").display(),
        );
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.ns[0],
            "unshare",
            "--uts",
            "sh",
            "-c",
            &line,
        ])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        c
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in &self.ns {
            // Deleting a namespace removes its end of the veth pair, and so the pair.
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn two_hosts_over_tcp_share_the_work_and_name_the_host_of_each_failure() {
    deadline(200, || {
        let hosts = TwoHosts::new();
        let job = run_job(hosts.mpirun(4, "serial"), 90);
        let r = result(&job);
        assert_eq!(job.code, Some(0), "{}\n{}", job.stdout, job.stderr);
        assert!(r.contains("\"host-a\"") && r.contains("\"host-b\""), "{r}");
        // Ranks alternate between the hosts (--map-by node): odd ranks are on host-b.
        let used = r
            .split("ranks_used\":{")
            .nth(1)
            .unwrap()
            .split('}')
            .next()
            .unwrap();
        assert!(
            used.split(", ").any(|x| x == "1" || x == "3"),
            "no task ran on host-b: {r}"
        );
        // Rank 0 only drives here: ranks 1 and 3 are on host-b, rank 2 on host-a.
        let job = run_job(hosts.mpirun(4, "faults"), 90);
        let r = result(&job);
        assert_eq!(job.code, Some(0), "{}\n{}", job.stdout, job.stderr);
        assert!(r.contains("host host-b)"), "{r}");
    });
}
