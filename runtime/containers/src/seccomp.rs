//! ketch's `RuntimeDefault` seccomp profile for Linux containers: an allow list, following
//! Docker's (moby `profiles/seccomp`) and containerd's default profiles. Every syscall not
//! listed fails with `EPERM`.
//!
//! # What is allowed
//!
//! [`ALLOWED`]: what Docker's current default profile allows every container (x86_64 names),
//! plus [`ALLOWED_COMPAT`], the names that exist only in the 32-bit x86 ABI (`mmap2`,
//! `socketcall`, the `*_time64` calls), so 32-bit binaries run as they do under Docker. A
//! container's capabilities add the groups Docker's `includes.caps` adds ([`BY_CAPABILITY`]:
//! `SYS_ADMIN` → `mount`, `unshare`, `setns`…; `SYS_MODULE` → `init_module`…), since the
//! kernel checks the capability itself and a capability granted on purpose should work.
//! `chroot` is in the `SYS_CHROOT` group, which containerd's default capabilities include.
//! Argument filters, as Docker's: `socket` for every family but `AF_VSOCK` (40);
//! `personality` only for the five personas Docker allows; `clone` only without namespace
//! flags (`0x7E020000`) unless the container has `SYS_ADMIN`; `clone3`, whose flags live in
//! memory seccomp cannot read, fails with `ENOSYS` (so libc falls back to `clone`) unless the
//! container has `SYS_ADMIN`.
//!
//! # What is not, on purpose
//!
//! io_uring (`io_uring_setup`, `io_uring_enter`, `io_uring_register`), as in Docker's current
//! profile: an io_uring submission performs operations no seccomp filter sees, and io_uring
//! has been the source of many kernel exploits. Also everything Docker leaves out: the
//! keyring (`add_key`, `keyctl`, `request_key`), `kexec_*`, `userfaultfd`, `move_pages`,
//! swap, obsolete calls (`uselib`, `ustat`, `sysfs`, `_sysctl`, `nfsservctl`).
//!
//! # What this costs, honestly
//!
//! A syscall the kernel adds after this list was written fails with `EPERM` until the list
//! learns it. And runc resolves names with the libseccomp it was built with, skipping names
//! that library does not know: on Debian 12 (runc 1.1.5, libseccomp 2.5.4) the newest
//! entries (`cachestat`, `fchmodat2`, `map_shadow_stack`, the `futex_wait` family, `mseal`)
//! are skipped, so they fail with `EPERM` too — stricter, and libc does not depend on them.
//! `ptrace`, `process_vm_readv` and `process_vm_writev` are allowed as Docker allows them on
//! kernels from 4.8 on (where a traced process can no longer escape its seccomp filter);
//! the kernel's ptrace access checks still apply.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// `errno` for everything not allowed: `EPERM`, Docker's `defaultErrnoRet`, what programs
/// expect from an operation they may not perform.
pub const EPERM: u32 = 1;

/// `errno` for `clone3`: `ENOSYS` makes glibc (and others) fall back to `clone`, whose flags
/// seccomp can inspect.
const ENOSYS: u32 = 38;

/// `AF_VSOCK`: sockets to the hypervisor, refused as Docker refuses them.
const AF_VSOCK: u64 = 40;

/// The namespace flags of `clone(2)` (`CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
/// CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`): Docker's mask.
const CLONE_NAMESPACE_MASK: u64 = 0x7E02_0000;

/// The `personality(2)` arguments allowed: `PER_LINUX`, `PER_LINUX32`, `UNAME26`,
/// `PER_LINUX32|UNAME26` and the query `0xffffffff` (Docker's list).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Syscalls every container may make, x86_64 names (a test checks each against libc's
/// numbers); runc skips the few a given architecture lacks.
pub const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "clock_adjtime",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_requeue",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "modify_ldt",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "process_vm_readv",
    "process_vm_writev",
    "pselect6",
    "ptrace",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "write",
    "writev",
];

/// Syscalls of the 32-bit x86 ABI with no x86_64 counterpart, allowed for 32-bit binaries
/// (a test checks each against the i386 numbers).
pub const ALLOWED_COMPAT: &[&str] = &[
    "_llseek",
    "_newselect",
    "chown32",
    "clock_adjtime64",
    "clock_getres_time64",
    "clock_gettime64",
    "clock_nanosleep_time64",
    "fadvise64_64",
    "fchown32",
    "fcntl64",
    "fstat64",
    "fstatat64",
    "fstatfs64",
    "ftruncate64",
    "futex_time64",
    "getegid32",
    "geteuid32",
    "getgid32",
    "getgroups32",
    "getresgid32",
    "getresuid32",
    "getuid32",
    "io_pgetevents_time64",
    "ipc",
    "lchown32",
    "lstat64",
    "mmap2",
    "mq_timedreceive_time64",
    "mq_timedsend_time64",
    "ppoll_time64",
    "pselect6_time64",
    "recvmmsg_time64",
    "rt_sigtimedwait_time64",
    "sched_rr_get_interval_time64",
    "semtimedop_time64",
    "sendfile64",
    "setfsgid32",
    "setfsuid32",
    "setgid32",
    "setgroups32",
    "setregid32",
    "setresgid32",
    "setresuid32",
    "setreuid32",
    "setuid32",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "stat64",
    "statfs64",
    "timer_gettime64",
    "timer_settime64",
    "timerfd_gettime64",
    "timerfd_settime64",
    "truncate64",
    "ugetrlimit",
    "utimensat_time64",
    "waitpid",
];

/// Syscalls a capability (Kubernetes spelling) adds, Docker's `includes.caps` groups.
pub const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "SYS_ADMIN",
        &[
            "bpf",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount2",
            "unshare",
        ],
    ),
    ("SYS_BOOT", &["reboot"]),
    ("SYS_CHROOT", &["chroot"]),
    (
        "SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("SYS_PACCT", &["acct"]),
    ("SYS_PTRACE", &["kcmp", "pidfd_getfd", "process_madvise"]),
    ("SYS_RAWIO", &["iopl", "ioperm"]),
    ("SYS_TIME", &["settimeofday", "clock_settime"]),
    ("SYS_TTY_CONFIG", &["vhangup"]),
    (
        "SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("SYSLOG", &["syslog"]),
    ("BPF", &["bpf"]),
    ("PERFMON", &["perf_event_open"]),
];

/// The 32-bit x86 names of [`BY_CAPABILITY`]'s groups.
const BY_CAPABILITY_COMPAT: &[(&str, &[&str])] = &[
    ("SYS_ADMIN", &["umount"]),
    ("SYS_TIME", &["stime"]),
    ("SYS_TIME", &["clock_settime64"]),
];

/// The seccomp architectures the filter covers: the native one and the compat ABIs a binary of
/// this machine could use to reach the same kernel with other syscall numbers.
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    }
}

/// `CAP_SYS_ADMIN` / `sys_admin` → `SYS_ADMIN`.
fn normalize(cap: &str) -> String {
    let upper = cap.to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_string()
}

fn allow(names: Vec<String>, args: Option<Vec<LinuxSeccompArg>>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names);
    s.set_action(LinuxSeccompAction::ScmpActAllow);
    s.set_errno_ret(None);
    s.set_args(args);
    s
}

fn arg0(op: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(value)
        .op(op);
    match value_two {
        Some(v) => b.value_two(v),
        None => b,
    }
    .build()
    .expect("a builder whose every field has a default cannot fail")
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_string()).collect()
}

/// ketch's `RuntimeDefault` profile for a container whose final capability set (bounding,
/// after `add`/`drop`) is `effective_caps`, given as Kubernetes names (`NET_ADMIN`) or with
/// the `CAP_` prefix, any case. See the module docs for what is allowed and why.
pub fn default_profile(effective_caps: &[String]) -> LinuxSeccomp {
    let caps: Vec<String> = effective_caps.iter().map(|c| normalize(c)).collect();
    let has = |cap: &str| caps.iter().any(|c| c == cap);

    let mut names = strings(ALLOWED);
    names.extend(strings(ALLOWED_COMPAT));
    for (cap, group) in BY_CAPABILITY.iter().chain(BY_CAPABILITY_COMPAT) {
        if has(cap) {
            for name in *group {
                if !names.iter().any(|n| n == name) {
                    names.push((*name).to_string());
                }
            }
        }
    }
    if has("SYS_ADMIN") {
        names.extend(strings(&["clone", "clone3"]));
    }
    let mut syscalls = vec![allow(names, None)];
    syscalls.push(allow(
        vec!["socket".into()],
        Some(vec![arg0(LinuxSeccompOperator::ScmpCmpNe, AF_VSOCK, None)]),
    ));
    for persona in PERSONALITIES {
        syscalls.push(allow(
            vec!["personality".into()],
            Some(vec![arg0(LinuxSeccompOperator::ScmpCmpEq, persona, None)]),
        ));
    }
    if !has("SYS_ADMIN") {
        // `flags & mask == 0`: no namespace flag set.
        syscalls.push(allow(
            vec!["clone".into()],
            Some(vec![arg0(
                LinuxSeccompOperator::ScmpCmpMaskedEq,
                CLONE_NAMESPACE_MASK,
                Some(0),
            )]),
        ));
        let mut clone3 = LinuxSyscall::default();
        clone3.set_names(vec!["clone3".into()]);
        clone3.set_action(LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(ENOSYS));
        syscalls.push(clone3);
    }

    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(EPERM));
    profile.set_architectures(Some(architectures()));
    profile.set_syscalls(Some(syscalls));
    profile
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Names allowed without an argument filter.
    fn allowed(p: &LinuxSeccomp) -> BTreeSet<String> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.args().is_none() && s.action() == LinuxSeccompAction::ScmpActAllow)
            .flat_map(|s| s.names().iter().cloned())
            .collect()
    }

    fn caps(names: &[&str]) -> Vec<String> {
        strings(names)
    }

    #[test]
    fn everything_not_listed_fails_with_eperm() {
        let p = default_profile(&[]);
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(EPERM));
        let allowed = allowed(&p);
        assert_eq!(
            allowed.len(),
            ALLOWED.len() + ALLOWED_COMPAT.len(),
            "no duplicates"
        );
        for name in [
            "read",
            "openat",
            "execve",
            "futex",
            "epoll_wait",
            "ptrace",
            "arch_prctl",
        ] {
            assert!(allowed.contains(name), "{name} is allowed");
        }
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "keyctl",
            "add_key",
            "kexec_load",
            "init_module",
            "reboot",
            "userfaultfd",
            "open_by_handle_at",
            "chroot",
            "clone",
            "clone3",
            "socket",
            "personality",
        ] {
            assert!(!allowed.contains(name), "{name} is not allowed outright");
        }
    }

    #[test]
    fn io_uring_is_blocked_as_in_dockers_current_profile() {
        for caps in [caps(&[]), caps(&["SYS_ADMIN", "SYS_PTRACE", "SYS_NICE"])] {
            let p = default_profile(&caps);
            let names: BTreeSet<&String> = p
                .syscalls()
                .iter()
                .flatten()
                .flat_map(|s| s.names())
                .collect();
            for n in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
                assert!(!names.iter().any(|m| m.as_str() == n), "{n} is blocked");
            }
        }
    }

    #[test]
    fn containerds_default_capabilities_allow_chroot_and_nothing_else_extra() {
        let defaults: Vec<String> = crate::spec::DEFAULT_CAPABILITIES.map(String::from).to_vec();
        let with = allowed(&default_profile(&defaults));
        let without = allowed(&default_profile(&[]));
        let extra: Vec<&String> = with.difference(&without).collect();
        assert_eq!(extra, ["chroot"]);
    }

    #[test]
    fn an_added_capability_allows_the_group_docker_allows_for_it() {
        let added = |cap: &str| {
            let with = allowed(&default_profile(&caps(&[cap])));
            let without = allowed(&default_profile(&[]));
            with.difference(&without)
                .cloned()
                .collect::<BTreeSet<String>>()
        };
        let set = |names: &[&str]| {
            names
                .iter()
                .map(|n| (*n).to_string())
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(
            added("CAP_SYS_MODULE"),
            set(&["delete_module", "finit_module", "init_module"])
        );
        assert_eq!(
            added("sys_ptrace"),
            set(&["kcmp", "pidfd_getfd", "process_madvise"])
        );
        assert_eq!(
            added("SYS_TIME"),
            set(&["clock_settime", "clock_settime64", "settimeofday", "stime"])
        );
        assert_eq!(added("SYS_BOOT"), set(&["reboot"]));
        assert_eq!(added("SYS_RAWIO"), set(&["ioperm", "iopl"]));
        assert_eq!(added("DAC_READ_SEARCH"), set(&["open_by_handle_at"]));
        let admin = added("SYS_ADMIN");
        for n in [
            "mount", "umount", "umount2", "unshare", "setns", "bpf", "clone", "clone3",
        ] {
            assert!(admin.contains(n), "SYS_ADMIN allows {n}");
        }
        assert!(!admin.contains("kexec_load") && !admin.contains("keyctl"));
        // With SYS_ADMIN, clone and clone3 have no filter left.
        let p = default_profile(&caps(&["SYS_ADMIN"]));
        let filtered: Vec<_> = p
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.args().is_some() || s.action() != LinuxSeccompAction::ScmpActAllow)
            .flat_map(|s| s.names().iter())
            .collect();
        assert!(!filtered.iter().any(|n| *n == "clone" || *n == "clone3"));
    }

    #[test]
    fn clone_is_allowed_without_namespace_flags_and_clone3_reports_enosys() {
        let p = default_profile(&[]);
        let syscalls = p.syscalls().as_ref().unwrap();
        let clone: Vec<_> = syscalls
            .iter()
            .filter(|s| s.names() == &["clone".to_string()])
            .collect();
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].action(), LinuxSeccompAction::ScmpActAllow);
        let arg = clone[0].args().as_ref().unwrap()[0];
        assert_eq!(arg.index(), 0);
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(arg.value(), 0x7E02_0000, "Docker's namespace mask");
        assert_eq!(arg.value_two(), Some(0), "no flag of the mask set");
        let clone3 = syscalls
            .iter()
            .find(|s| s.names() == &["clone3".to_string()])
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(ENOSYS));
        assert_eq!(clone3.action(), LinuxSeccompAction::ScmpActErrno);
    }

    #[test]
    fn socket_is_allowed_for_every_family_but_vsock_and_personality_for_five_personas() {
        let p = default_profile(&[]);
        let rules = |name: &str| -> Vec<LinuxSeccompArg> {
            p.syscalls()
                .iter()
                .flatten()
                .filter(|s| s.names() == &[name.to_string()])
                .map(|s| {
                    assert_eq!(s.action(), LinuxSeccompAction::ScmpActAllow);
                    s.args().as_ref().unwrap()[0]
                })
                .collect()
        };
        let socket = rules("socket");
        assert_eq!(socket.len(), 1);
        assert_eq!(socket[0].op(), LinuxSeccompOperator::ScmpCmpNe);
        assert_eq!(socket[0].value(), 40);
        let personas: Vec<u64> = rules("personality")
            .iter()
            .map(|a| {
                assert_eq!(a.op(), LinuxSeccompOperator::ScmpCmpEq);
                a.value()
            })
            .collect();
        assert_eq!(personas, [0, 8, 0x20000, 0x20008, 0xffff_ffff]);
    }

    #[test]
    fn the_profile_serializes_as_runc_expects() {
        let json = serde_json::to_value(default_profile(&[])).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                json["architectures"],
                serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
            );
        }
        assert_eq!(json["syscalls"][0]["action"], "SCMP_ACT_ALLOW");
        assert!(json["syscalls"][0].get("errnoRet").is_none());
        assert_eq!(
            json["syscalls"][1]["args"][0],
            serde_json::json!({"index": 0, "value": 40, "op": "SCMP_CMP_NE"})
        );
    }

    #[test]
    fn every_capability_of_a_group_is_a_linux_capability() {
        for (cap, _) in BY_CAPABILITY.iter().chain(BY_CAPABILITY_COMPAT) {
            assert_eq!(ketch_api::core::linux_capability(cap), Some(*cap));
        }
    }

    /// A name that does not exist would be a dead entry (runc skips it silently). The numbers
    /// come from libc, so a misspelt name fails to compile; the few syscalls newer than the
    /// pinned libc have their numbers from the kernel's `unistd_64.h`.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_x86_64_name_is_a_syscall_of_x86_64() {
        use nix::libc;
        let table: &[(&str, i64)] = &[
            ("accept", libc::SYS_accept),
            ("accept4", libc::SYS_accept4),
            ("access", libc::SYS_access),
            ("acct", libc::SYS_acct),
            ("adjtimex", libc::SYS_adjtimex),
            ("alarm", libc::SYS_alarm),
            ("arch_prctl", libc::SYS_arch_prctl),
            ("bind", libc::SYS_bind),
            ("bpf", libc::SYS_bpf),
            ("brk", libc::SYS_brk),
            ("cachestat", 451),
            ("capget", libc::SYS_capget),
            ("capset", libc::SYS_capset),
            ("chdir", libc::SYS_chdir),
            ("chmod", libc::SYS_chmod),
            ("chown", libc::SYS_chown),
            ("chroot", libc::SYS_chroot),
            ("clock_adjtime", libc::SYS_clock_adjtime),
            ("clock_getres", libc::SYS_clock_getres),
            ("clock_gettime", libc::SYS_clock_gettime),
            ("clock_nanosleep", libc::SYS_clock_nanosleep),
            ("clock_settime", libc::SYS_clock_settime),
            ("clone", libc::SYS_clone),
            ("clone3", libc::SYS_clone3),
            ("close", libc::SYS_close),
            ("close_range", libc::SYS_close_range),
            ("connect", libc::SYS_connect),
            ("copy_file_range", libc::SYS_copy_file_range),
            ("creat", libc::SYS_creat),
            ("delete_module", libc::SYS_delete_module),
            ("dup", libc::SYS_dup),
            ("dup2", libc::SYS_dup2),
            ("dup3", libc::SYS_dup3),
            ("epoll_create", libc::SYS_epoll_create),
            ("epoll_create1", libc::SYS_epoll_create1),
            ("epoll_ctl", libc::SYS_epoll_ctl),
            ("epoll_ctl_old", libc::SYS_epoll_ctl_old),
            ("epoll_pwait", libc::SYS_epoll_pwait),
            ("epoll_pwait2", libc::SYS_epoll_pwait2),
            ("epoll_wait", libc::SYS_epoll_wait),
            ("epoll_wait_old", libc::SYS_epoll_wait_old),
            ("eventfd", libc::SYS_eventfd),
            ("eventfd2", libc::SYS_eventfd2),
            ("execve", libc::SYS_execve),
            ("execveat", libc::SYS_execveat),
            ("exit", libc::SYS_exit),
            ("exit_group", libc::SYS_exit_group),
            ("faccessat", libc::SYS_faccessat),
            ("faccessat2", libc::SYS_faccessat2),
            ("fadvise64", libc::SYS_fadvise64),
            ("fallocate", libc::SYS_fallocate),
            ("fanotify_init", libc::SYS_fanotify_init),
            ("fanotify_mark", libc::SYS_fanotify_mark),
            ("fchdir", libc::SYS_fchdir),
            ("fchmod", libc::SYS_fchmod),
            ("fchmodat", libc::SYS_fchmodat),
            ("fchmodat2", libc::SYS_fchmodat2),
            ("fchown", libc::SYS_fchown),
            ("fchownat", libc::SYS_fchownat),
            ("fcntl", libc::SYS_fcntl),
            ("fdatasync", libc::SYS_fdatasync),
            ("fgetxattr", libc::SYS_fgetxattr),
            ("finit_module", libc::SYS_finit_module),
            ("flistxattr", libc::SYS_flistxattr),
            ("flock", libc::SYS_flock),
            ("fork", libc::SYS_fork),
            ("fremovexattr", libc::SYS_fremovexattr),
            ("fsconfig", libc::SYS_fsconfig),
            ("fsetxattr", libc::SYS_fsetxattr),
            ("fsmount", libc::SYS_fsmount),
            ("fsopen", libc::SYS_fsopen),
            ("fspick", libc::SYS_fspick),
            ("fstat", libc::SYS_fstat),
            ("fstatfs", libc::SYS_fstatfs),
            ("fsync", libc::SYS_fsync),
            ("ftruncate", libc::SYS_ftruncate),
            ("futex", libc::SYS_futex),
            ("futex_requeue", 456),
            ("futex_wait", 455),
            ("futex_waitv", libc::SYS_futex_waitv),
            ("futex_wake", 454),
            ("futimesat", libc::SYS_futimesat),
            ("get_mempolicy", libc::SYS_get_mempolicy),
            ("get_robust_list", libc::SYS_get_robust_list),
            ("get_thread_area", libc::SYS_get_thread_area),
            ("getcpu", libc::SYS_getcpu),
            ("getcwd", libc::SYS_getcwd),
            ("getdents", libc::SYS_getdents),
            ("getdents64", libc::SYS_getdents64),
            ("getegid", libc::SYS_getegid),
            ("geteuid", libc::SYS_geteuid),
            ("getgid", libc::SYS_getgid),
            ("getgroups", libc::SYS_getgroups),
            ("getitimer", libc::SYS_getitimer),
            ("getpeername", libc::SYS_getpeername),
            ("getpgid", libc::SYS_getpgid),
            ("getpgrp", libc::SYS_getpgrp),
            ("getpid", libc::SYS_getpid),
            ("getppid", libc::SYS_getppid),
            ("getpriority", libc::SYS_getpriority),
            ("getrandom", libc::SYS_getrandom),
            ("getresgid", libc::SYS_getresgid),
            ("getresuid", libc::SYS_getresuid),
            ("getrlimit", libc::SYS_getrlimit),
            ("getrusage", libc::SYS_getrusage),
            ("getsid", libc::SYS_getsid),
            ("getsockname", libc::SYS_getsockname),
            ("getsockopt", libc::SYS_getsockopt),
            ("gettid", libc::SYS_gettid),
            ("gettimeofday", libc::SYS_gettimeofday),
            ("getuid", libc::SYS_getuid),
            ("getxattr", libc::SYS_getxattr),
            ("init_module", libc::SYS_init_module),
            ("inotify_add_watch", libc::SYS_inotify_add_watch),
            ("inotify_init", libc::SYS_inotify_init),
            ("inotify_init1", libc::SYS_inotify_init1),
            ("inotify_rm_watch", libc::SYS_inotify_rm_watch),
            ("io_cancel", libc::SYS_io_cancel),
            ("io_destroy", libc::SYS_io_destroy),
            ("io_getevents", libc::SYS_io_getevents),
            ("io_pgetevents", 333),
            ("io_setup", libc::SYS_io_setup),
            ("io_submit", libc::SYS_io_submit),
            ("ioctl", libc::SYS_ioctl),
            ("ioperm", libc::SYS_ioperm),
            ("iopl", libc::SYS_iopl),
            ("ioprio_get", libc::SYS_ioprio_get),
            ("ioprio_set", libc::SYS_ioprio_set),
            ("kcmp", libc::SYS_kcmp),
            ("kill", libc::SYS_kill),
            ("landlock_add_rule", libc::SYS_landlock_add_rule),
            ("landlock_create_ruleset", libc::SYS_landlock_create_ruleset),
            ("landlock_restrict_self", libc::SYS_landlock_restrict_self),
            ("lchown", libc::SYS_lchown),
            ("lgetxattr", libc::SYS_lgetxattr),
            ("link", libc::SYS_link),
            ("linkat", libc::SYS_linkat),
            ("listen", libc::SYS_listen),
            ("listxattr", libc::SYS_listxattr),
            ("llistxattr", libc::SYS_llistxattr),
            ("lookup_dcookie", libc::SYS_lookup_dcookie),
            ("lremovexattr", libc::SYS_lremovexattr),
            ("lseek", libc::SYS_lseek),
            ("lsetxattr", libc::SYS_lsetxattr),
            ("lstat", libc::SYS_lstat),
            ("madvise", libc::SYS_madvise),
            ("map_shadow_stack", 453),
            ("mbind", libc::SYS_mbind),
            ("membarrier", libc::SYS_membarrier),
            ("memfd_create", libc::SYS_memfd_create),
            ("memfd_secret", libc::SYS_memfd_secret),
            ("mincore", libc::SYS_mincore),
            ("mkdir", libc::SYS_mkdir),
            ("mkdirat", libc::SYS_mkdirat),
            ("mknod", libc::SYS_mknod),
            ("mknodat", libc::SYS_mknodat),
            ("mlock", libc::SYS_mlock),
            ("mlock2", libc::SYS_mlock2),
            ("mlockall", libc::SYS_mlockall),
            ("mmap", libc::SYS_mmap),
            ("modify_ldt", libc::SYS_modify_ldt),
            ("mount", libc::SYS_mount),
            ("mount_setattr", libc::SYS_mount_setattr),
            ("move_mount", libc::SYS_move_mount),
            ("mprotect", libc::SYS_mprotect),
            ("mq_getsetattr", libc::SYS_mq_getsetattr),
            ("mq_notify", libc::SYS_mq_notify),
            ("mq_open", libc::SYS_mq_open),
            ("mq_timedreceive", libc::SYS_mq_timedreceive),
            ("mq_timedsend", libc::SYS_mq_timedsend),
            ("mq_unlink", libc::SYS_mq_unlink),
            ("mremap", libc::SYS_mremap),
            ("mseal", libc::SYS_mseal),
            ("msgctl", libc::SYS_msgctl),
            ("msgget", libc::SYS_msgget),
            ("msgrcv", libc::SYS_msgrcv),
            ("msgsnd", libc::SYS_msgsnd),
            ("msync", libc::SYS_msync),
            ("munlock", libc::SYS_munlock),
            ("munlockall", libc::SYS_munlockall),
            ("munmap", libc::SYS_munmap),
            ("name_to_handle_at", libc::SYS_name_to_handle_at),
            ("nanosleep", libc::SYS_nanosleep),
            ("newfstatat", libc::SYS_newfstatat),
            ("open", libc::SYS_open),
            ("open_by_handle_at", libc::SYS_open_by_handle_at),
            ("open_tree", libc::SYS_open_tree),
            ("openat", libc::SYS_openat),
            ("openat2", libc::SYS_openat2),
            ("pause", libc::SYS_pause),
            ("perf_event_open", libc::SYS_perf_event_open),
            ("personality", libc::SYS_personality),
            ("pidfd_getfd", libc::SYS_pidfd_getfd),
            ("pidfd_open", libc::SYS_pidfd_open),
            ("pidfd_send_signal", libc::SYS_pidfd_send_signal),
            ("pipe", libc::SYS_pipe),
            ("pipe2", libc::SYS_pipe2),
            ("pkey_alloc", libc::SYS_pkey_alloc),
            ("pkey_free", libc::SYS_pkey_free),
            ("pkey_mprotect", libc::SYS_pkey_mprotect),
            ("poll", libc::SYS_poll),
            ("ppoll", libc::SYS_ppoll),
            ("prctl", libc::SYS_prctl),
            ("pread64", libc::SYS_pread64),
            ("preadv", libc::SYS_preadv),
            ("preadv2", libc::SYS_preadv2),
            ("prlimit64", libc::SYS_prlimit64),
            ("process_madvise", libc::SYS_process_madvise),
            ("process_mrelease", libc::SYS_process_mrelease),
            ("process_vm_readv", libc::SYS_process_vm_readv),
            ("process_vm_writev", libc::SYS_process_vm_writev),
            ("pselect6", libc::SYS_pselect6),
            ("ptrace", libc::SYS_ptrace),
            ("pwrite64", libc::SYS_pwrite64),
            ("pwritev", libc::SYS_pwritev),
            ("pwritev2", libc::SYS_pwritev2),
            ("quotactl", libc::SYS_quotactl),
            ("quotactl_fd", libc::SYS_quotactl_fd),
            ("read", libc::SYS_read),
            ("readahead", libc::SYS_readahead),
            ("readlink", libc::SYS_readlink),
            ("readlinkat", libc::SYS_readlinkat),
            ("readv", libc::SYS_readv),
            ("reboot", libc::SYS_reboot),
            ("recvfrom", libc::SYS_recvfrom),
            ("recvmmsg", libc::SYS_recvmmsg),
            ("recvmsg", libc::SYS_recvmsg),
            ("remap_file_pages", libc::SYS_remap_file_pages),
            ("removexattr", libc::SYS_removexattr),
            ("rename", libc::SYS_rename),
            ("renameat", libc::SYS_renameat),
            ("renameat2", libc::SYS_renameat2),
            ("restart_syscall", libc::SYS_restart_syscall),
            ("rmdir", libc::SYS_rmdir),
            ("rseq", libc::SYS_rseq),
            ("rt_sigaction", libc::SYS_rt_sigaction),
            ("rt_sigpending", libc::SYS_rt_sigpending),
            ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
            ("rt_sigqueueinfo", libc::SYS_rt_sigqueueinfo),
            ("rt_sigreturn", libc::SYS_rt_sigreturn),
            ("rt_sigsuspend", libc::SYS_rt_sigsuspend),
            ("rt_sigtimedwait", libc::SYS_rt_sigtimedwait),
            ("rt_tgsigqueueinfo", libc::SYS_rt_tgsigqueueinfo),
            ("sched_get_priority_max", libc::SYS_sched_get_priority_max),
            ("sched_get_priority_min", libc::SYS_sched_get_priority_min),
            ("sched_getaffinity", libc::SYS_sched_getaffinity),
            ("sched_getattr", libc::SYS_sched_getattr),
            ("sched_getparam", libc::SYS_sched_getparam),
            ("sched_getscheduler", libc::SYS_sched_getscheduler),
            ("sched_rr_get_interval", libc::SYS_sched_rr_get_interval),
            ("sched_setaffinity", libc::SYS_sched_setaffinity),
            ("sched_setattr", libc::SYS_sched_setattr),
            ("sched_setparam", libc::SYS_sched_setparam),
            ("sched_setscheduler", libc::SYS_sched_setscheduler),
            ("sched_yield", libc::SYS_sched_yield),
            ("seccomp", libc::SYS_seccomp),
            ("select", libc::SYS_select),
            ("semctl", libc::SYS_semctl),
            ("semget", libc::SYS_semget),
            ("semop", libc::SYS_semop),
            ("semtimedop", libc::SYS_semtimedop),
            ("sendfile", libc::SYS_sendfile),
            ("sendmmsg", libc::SYS_sendmmsg),
            ("sendmsg", libc::SYS_sendmsg),
            ("sendto", libc::SYS_sendto),
            ("set_mempolicy", libc::SYS_set_mempolicy),
            ("set_mempolicy_home_node", libc::SYS_set_mempolicy_home_node),
            ("set_robust_list", libc::SYS_set_robust_list),
            ("set_thread_area", libc::SYS_set_thread_area),
            ("set_tid_address", libc::SYS_set_tid_address),
            ("setdomainname", libc::SYS_setdomainname),
            ("setfsgid", libc::SYS_setfsgid),
            ("setfsuid", libc::SYS_setfsuid),
            ("setgid", libc::SYS_setgid),
            ("setgroups", libc::SYS_setgroups),
            ("sethostname", libc::SYS_sethostname),
            ("setitimer", libc::SYS_setitimer),
            ("setns", libc::SYS_setns),
            ("setpgid", libc::SYS_setpgid),
            ("setpriority", libc::SYS_setpriority),
            ("setregid", libc::SYS_setregid),
            ("setresgid", libc::SYS_setresgid),
            ("setresuid", libc::SYS_setresuid),
            ("setreuid", libc::SYS_setreuid),
            ("setrlimit", libc::SYS_setrlimit),
            ("setsid", libc::SYS_setsid),
            ("setsockopt", libc::SYS_setsockopt),
            ("settimeofday", libc::SYS_settimeofday),
            ("setuid", libc::SYS_setuid),
            ("setxattr", libc::SYS_setxattr),
            ("shmat", libc::SYS_shmat),
            ("shmctl", libc::SYS_shmctl),
            ("shmdt", libc::SYS_shmdt),
            ("shmget", libc::SYS_shmget),
            ("shutdown", libc::SYS_shutdown),
            ("sigaltstack", libc::SYS_sigaltstack),
            ("signalfd", libc::SYS_signalfd),
            ("signalfd4", libc::SYS_signalfd4),
            ("socket", libc::SYS_socket),
            ("socketpair", libc::SYS_socketpair),
            ("splice", libc::SYS_splice),
            ("stat", libc::SYS_stat),
            ("statfs", libc::SYS_statfs),
            ("statx", libc::SYS_statx),
            ("symlink", libc::SYS_symlink),
            ("symlinkat", libc::SYS_symlinkat),
            ("sync", libc::SYS_sync),
            ("sync_file_range", libc::SYS_sync_file_range),
            ("syncfs", libc::SYS_syncfs),
            ("sysinfo", libc::SYS_sysinfo),
            ("syslog", libc::SYS_syslog),
            ("tee", libc::SYS_tee),
            ("tgkill", libc::SYS_tgkill),
            ("time", libc::SYS_time),
            ("timer_create", libc::SYS_timer_create),
            ("timer_delete", libc::SYS_timer_delete),
            ("timer_getoverrun", libc::SYS_timer_getoverrun),
            ("timer_gettime", libc::SYS_timer_gettime),
            ("timer_settime", libc::SYS_timer_settime),
            ("timerfd_create", libc::SYS_timerfd_create),
            ("timerfd_gettime", libc::SYS_timerfd_gettime),
            ("timerfd_settime", libc::SYS_timerfd_settime),
            ("times", libc::SYS_times),
            ("tkill", libc::SYS_tkill),
            ("truncate", libc::SYS_truncate),
            ("umask", libc::SYS_umask),
            ("umount2", libc::SYS_umount2),
            ("uname", libc::SYS_uname),
            ("unlink", libc::SYS_unlink),
            ("unlinkat", libc::SYS_unlinkat),
            ("unshare", libc::SYS_unshare),
            ("utime", libc::SYS_utime),
            ("utimensat", libc::SYS_utimensat),
            ("utimes", libc::SYS_utimes),
            ("vfork", libc::SYS_vfork),
            ("vhangup", libc::SYS_vhangup),
            ("vmsplice", libc::SYS_vmsplice),
            ("wait4", libc::SYS_wait4),
            ("waitid", libc::SYS_waitid),
            ("write", libc::SYS_write),
            ("writev", libc::SYS_writev),
        ];
        let known: BTreeSet<&str> = table.iter().map(|(n, _)| *n).collect();
        let numbers: BTreeSet<i64> = table.iter().map(|(_, n)| *n).collect();
        assert_eq!(numbers.len(), table.len(), "two names for one number");
        let mut listed: BTreeSet<&str> = ALLOWED.iter().copied().collect();
        for (_, group) in BY_CAPABILITY {
            listed.extend(group.iter().copied());
        }
        listed.extend(["clone", "clone3", "socket", "personality"]);
        assert_eq!(listed, known);
    }

    /// The 32-bit names, with their numbers from the kernel's `asm/unistd_32.h`; none of them
    /// is an x86_64 name.
    #[test]
    fn every_compat_name_is_a_syscall_of_32_bit_x86_only() {
        let table: &[(&str, i64)] = &[
            ("_llseek", 140),
            ("_newselect", 142),
            ("chown32", 212),
            ("clock_adjtime64", 405),
            ("clock_getres_time64", 406),
            ("clock_gettime64", 403),
            ("clock_nanosleep_time64", 407),
            ("clock_settime64", 404),
            ("fadvise64_64", 272),
            ("fchown32", 207),
            ("fcntl64", 221),
            ("fstat64", 197),
            ("fstatat64", 300),
            ("fstatfs64", 269),
            ("ftruncate64", 194),
            ("futex_time64", 422),
            ("getegid32", 202),
            ("geteuid32", 201),
            ("getgid32", 200),
            ("getgroups32", 205),
            ("getresgid32", 211),
            ("getresuid32", 209),
            ("getuid32", 199),
            ("io_pgetevents_time64", 416),
            ("ipc", 117),
            ("lchown32", 198),
            ("lstat64", 196),
            ("mmap2", 192),
            ("mq_timedreceive_time64", 419),
            ("mq_timedsend_time64", 418),
            ("ppoll_time64", 414),
            ("pselect6_time64", 413),
            ("recvmmsg_time64", 417),
            ("rt_sigtimedwait_time64", 421),
            ("sched_rr_get_interval_time64", 423),
            ("semtimedop_time64", 420),
            ("sendfile64", 239),
            ("setfsgid32", 216),
            ("setfsuid32", 215),
            ("setgid32", 214),
            ("setgroups32", 206),
            ("setregid32", 204),
            ("setresgid32", 210),
            ("setresuid32", 208),
            ("setreuid32", 203),
            ("setuid32", 213),
            ("sigprocmask", 126),
            ("sigreturn", 119),
            ("socketcall", 102),
            ("stat64", 195),
            ("statfs64", 268),
            ("stime", 25),
            ("timer_gettime64", 408),
            ("timer_settime64", 409),
            ("timerfd_gettime64", 410),
            ("timerfd_settime64", 411),
            ("truncate64", 193),
            ("ugetrlimit", 191),
            ("umount", 22),
            ("utimensat_time64", 412),
            ("waitpid", 7),
        ];
        let known: BTreeSet<&str> = table.iter().map(|(n, _)| *n).collect();
        let mut listed: BTreeSet<&str> = ALLOWED_COMPAT.iter().copied().collect();
        for (_, group) in BY_CAPABILITY_COMPAT {
            listed.extend(group.iter().copied());
        }
        assert_eq!(listed, known);
        for name in &listed {
            assert!(!ALLOWED.contains(name), "{name}");
            assert!(
                BY_CAPABILITY.iter().all(|(_, g)| !g.contains(name)),
                "{name}"
            );
        }
    }
}
