//! ketch's default seccomp profile for Linux containers: allow by default, and return `EPERM`
//! for the syscalls Docker's default profile keeps from unprivileged containers.
//!
//! # Why a deny list
//!
//! Docker (and containerd's `RuntimeDefault`) ship an allow list: a few hundred syscalls are
//! allowed and everything else fails with `EPERM`. That is the stricter design, but it has a
//! cost: a syscall missing from the list breaks a program, and the list has to track every
//! kernel and every architecture (a new syscall stays broken until the list, and the runtime
//! shipping it, catch up). ketch instead allows by default and denies the syscalls that
//! Docker withholds *because they expose kernel surface*: module loading, kexec, the keyring,
//! mounting and namespaces, `bpf`, `perf_event_open`, clock setting, tracing other processes,
//! NUMA policy, swap, accounting, obsolete syscalls. Capabilities the container is given lift
//! the matching denies the way Docker's `includes.caps` does (e.g. `SYS_ADMIN` allows
//! `mount`), since the kernel still checks the capability itself.
//!
//! This is honestly less strict than Docker's allow list: a syscall Docker does not list and
//! ketch does not deny (anything added to the kernel after this list was written) is allowed,
//! and runc silently skips a name its libseccomp does not know, so on an old libseccomp a
//! recent entry (`mount_setattr`, `set_mempolicy_home_node`) is not enforced. The namespace
//! flags of `clone` are filtered like Docker does (the same mask), and `clone3`, whose flags
//! live in memory seccomp cannot read, fails with `ENOSYS` so libc falls back to `clone`.
//!
//! One deliberate difference from Docker's current profile: `ptrace`, `process_vm_readv` and
//! `process_vm_writev` are denied unless the container has `SYS_PTRACE` (Docker allows them on
//! kernels ≥ 4.8), so debuggers in a container need that capability. `clock_adjtime` and
//! `name_to_handle_at` are allowed, as Docker allows them: reading the clock state and
//! creating a handle need no privilege, and the kernel still checks changing the clock
//! (`CAP_SYS_TIME`) and opening a handle (`open_by_handle_at`, denied here).

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// `errno` the denied syscalls return: `EPERM`, what Docker returns and what programs expect
/// from an operation they may not perform.
const EPERM: u32 = 1;

/// `errno` for `clone3`: `ENOSYS` makes glibc (and others) fall back to `clone`, whose flags
/// seccomp can inspect.
const ENOSYS: u32 = 38;

/// The namespace flags of `clone(2)` (`CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
/// CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`), each denied without
/// `SYS_ADMIN` like `unshare(2)`: together they are Docker's mask `0x7E020000`.
const CLONE_NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

/// Denied syscalls and the capability (Kubernetes spelling) that lifts each deny, `None` when
/// no capability does, following Docker's `includes.caps`. Every name exists on x86_64 (a test
/// checks them against libc's syscall numbers); on aarch64, runc skips the few that do not.
const DENIED: &[(&str, Option<&str>)] = &[
    // Kernel modules and kexec: load code into the host kernel.
    ("init_module", Some("SYS_MODULE")),
    ("finit_module", Some("SYS_MODULE")),
    ("delete_module", Some("SYS_MODULE")),
    ("create_module", None),
    ("get_kernel_syms", None),
    ("query_module", None),
    ("kexec_load", None),
    ("kexec_file_load", None),
    // The kernel keyring is not namespaced.
    ("add_key", None),
    ("keyctl", None),
    ("request_key", None),
    // Mounts and namespaces: the basis of most container escapes.
    ("mount", Some("SYS_ADMIN")),
    ("umount2", Some("SYS_ADMIN")),
    ("pivot_root", Some("SYS_ADMIN")),
    ("fsopen", Some("SYS_ADMIN")),
    ("fsconfig", Some("SYS_ADMIN")),
    ("fsmount", Some("SYS_ADMIN")),
    ("fspick", Some("SYS_ADMIN")),
    ("move_mount", Some("SYS_ADMIN")),
    ("open_tree", Some("SYS_ADMIN")),
    ("mount_setattr", Some("SYS_ADMIN")),
    ("unshare", Some("SYS_ADMIN")),
    ("setns", Some("SYS_ADMIN")),
    ("sethostname", Some("SYS_ADMIN")),
    ("setdomainname", Some("SYS_ADMIN")),
    ("quotactl", Some("SYS_ADMIN")),
    ("quotactl_fd", Some("SYS_ADMIN")),
    ("fanotify_init", Some("SYS_ADMIN")),
    ("lookup_dcookie", Some("SYS_ADMIN")),
    // Reading files by handle bypasses the mount namespace ("shocker").
    ("open_by_handle_at", Some("DAC_READ_SEARCH")),
    // Kernel introspection and programmable kernel code.
    ("bpf", Some("BPF")),
    ("perf_event_open", Some("PERFMON")),
    ("syslog", Some("SYSLOG")),
    // The clock is not namespaced.
    ("settimeofday", Some("SYS_TIME")),
    ("clock_settime", Some("SYS_TIME")),
    // Other processes' memory.
    ("ptrace", Some("SYS_PTRACE")),
    ("process_vm_readv", Some("SYS_PTRACE")),
    ("process_vm_writev", Some("SYS_PTRACE")),
    ("kcmp", Some("SYS_PTRACE")),
    ("pidfd_getfd", Some("SYS_PTRACE")),
    ("process_madvise", Some("SYS_PTRACE")),
    // NUMA policy and page migration affect the whole host.
    ("get_mempolicy", Some("SYS_NICE")),
    ("set_mempolicy", Some("SYS_NICE")),
    ("set_mempolicy_home_node", Some("SYS_NICE")),
    ("mbind", Some("SYS_NICE")),
    ("move_pages", None),
    // Host-wide switches.
    ("reboot", Some("SYS_BOOT")),
    ("acct", Some("SYS_PACCT")),
    ("swapon", None),
    ("swapoff", None),
    ("ioperm", Some("SYS_RAWIO")),
    ("iopl", Some("SYS_RAWIO")),
    ("vhangup", Some("SYS_TTY_CONFIG")),
    // A frequent exploit primitive (stalls the kernel on a page fault).
    ("userfaultfd", None),
    // Obsolete: only old exploits use them.
    ("nfsservctl", None),
    ("_sysctl", None),
    ("sysfs", None),
    ("uselib", None),
    ("ustat", None),
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

fn rule(names: Vec<String>, errno: u32, args: Option<Vec<LinuxSeccompArg>>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names);
    s.set_action(LinuxSeccompAction::ScmpActErrno);
    s.set_errno_ret(Some(errno));
    s.set_args(args);
    s
}

/// ketch's default profile for a container whose final capability set (bounding, after
/// `add`/`drop`) is `effective_caps`, given as Kubernetes names (`NET_ADMIN`) or with the
/// `CAP_` prefix, any case. See the module docs for what is denied and why.
pub fn default_profile(effective_caps: &[String]) -> LinuxSeccomp {
    let caps: Vec<String> = effective_caps.iter().map(|c| normalize(c)).collect();
    let has = |cap: &str| caps.iter().any(|c| c == cap);

    let denied: Vec<String> = DENIED
        .iter()
        .filter(|(_, lifted_by)| !lifted_by.is_some_and(&has))
        .map(|(name, _)| (*name).to_string())
        .collect();
    let mut syscalls = vec![rule(denied, EPERM, None)];
    if !has("SYS_ADMIN") {
        // One rule per flag: seccomp compares `arg & mask == value`, so "any flag set" is an
        // OR of rules, which libseccomp builds from several rules for one syscall.
        for flag in CLONE_NAMESPACE_FLAGS {
            // `arg0 & flag == flag`: the flag is set.
            let arg = LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(flag)
                .value_two(flag)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build()
                .expect("a builder whose every field has a default cannot fail");
            syscalls.push(rule(vec!["clone".into()], EPERM, Some(vec![arg])));
        }
        syscalls.push(rule(vec!["clone3".into()], ENOSYS, None));
    }

    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActAllow);
    profile.set_architectures(Some(architectures()));
    profile.set_syscalls(Some(syscalls));
    profile
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn denied_with_eperm(p: &LinuxSeccomp) -> BTreeSet<String> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.args().is_none() && s.errno_ret() == Some(EPERM))
            .flat_map(|s| s.names().iter().cloned())
            .collect()
    }

    #[test]
    fn without_capabilities_every_listed_syscall_fails_with_eperm() {
        let p = default_profile(&[]);
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        let denied = denied_with_eperm(&p);
        assert_eq!(denied.len(), DENIED.len(), "no duplicates in DENIED");
        for name in [
            "mount",
            "ptrace",
            "bpf",
            "keyctl",
            "kexec_load",
            "unshare",
            "reboot",
        ] {
            assert!(denied.contains(name), "{name} is denied");
        }
        // Docker allows these to everyone; denying them would break programs for nothing.
        for name in [
            "clock_adjtime",
            "name_to_handle_at",
            "chroot",
            "personality",
        ] {
            assert!(!denied.contains(name), "{name} is allowed");
        }
    }

    #[test]
    fn containerds_default_capabilities_lift_no_deny() {
        let defaults: Vec<String> = crate::spec::DEFAULT_CAPABILITIES.map(String::from).to_vec();
        assert_eq!(default_profile(&defaults), default_profile(&[]));
    }

    #[test]
    fn an_added_capability_lifts_the_denies_docker_lifts_for_it() {
        let p = default_profile(&["CAP_SYS_ADMIN".into()]);
        let denied = denied_with_eperm(&p);
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "fsopen",
        ] {
            assert!(!denied.contains(name), "SYS_ADMIN allows {name}");
        }
        assert!(denied.contains("ptrace") && denied.contains("kexec_load"));
        // Namespace creation through clone/clone3 is allowed too.
        let names: Vec<_> = p
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names().iter())
            .collect();
        assert!(!names.iter().any(|n| *n == "clone" || *n == "clone3"));

        let lifted = |cap: &str, names: &[&str]| {
            let denied = denied_with_eperm(&default_profile(&[cap.to_string()]));
            for n in names {
                assert!(!denied.contains(*n), "{cap} allows {n}");
            }
            assert_eq!(
                denied.len(),
                DENIED.len() - names.len(),
                "{cap} lifts only {names:?}"
            );
        };
        lifted(
            "sys_ptrace",
            &[
                "ptrace",
                "process_vm_readv",
                "process_vm_writev",
                "kcmp",
                "pidfd_getfd",
                "process_madvise",
            ],
        );
        lifted("SYS_TIME", &["settimeofday", "clock_settime"]);
        lifted(
            "SYS_MODULE",
            &["init_module", "finit_module", "delete_module"],
        );
        lifted("SYS_BOOT", &["reboot"]);
        lifted("SYS_PACCT", &["acct"]);
        lifted("SYS_RAWIO", &["ioperm", "iopl"]);
    }

    #[test]
    fn clone_with_a_namespace_flag_fails_and_clone3_reports_enosys_without_sys_admin() {
        let p = default_profile(&[]);
        let syscalls = p.syscalls().as_ref().unwrap();
        let clone: Vec<_> = syscalls
            .iter()
            .filter(|s| s.names() == &["clone".to_string()])
            .collect();
        assert_eq!(clone.len(), CLONE_NAMESPACE_FLAGS.len());
        let mask = clone.iter().fold(0u64, |m, s| {
            let arg = s.args().as_ref().unwrap()[0];
            assert_eq!(arg.index(), 0);
            assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
            assert_eq!(Some(arg.value()), arg.value_two(), "flag set ⇒ deny");
            assert_eq!(s.errno_ret(), Some(EPERM));
            m | arg.value()
        });
        assert_eq!(mask, 0x7E02_0000, "Docker's namespace mask");
        let clone3 = syscalls
            .iter()
            .find(|s| s.names() == &["clone3".to_string()])
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(ENOSYS));
        assert_eq!(clone3.action(), LinuxSeccompAction::ScmpActErrno);
    }

    #[test]
    fn the_profile_serializes_as_runc_expects() {
        let json = serde_json::to_value(default_profile(&[])).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                json["architectures"],
                serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
            );
        }
        assert_eq!(json["syscalls"][0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(json["syscalls"][0]["errnoRet"], 1);
        assert_eq!(
            json["syscalls"][1]["args"][0],
            serde_json::json!({
                "index": 0,
                "value": 0x20000,
                "valueTwo": 0x20000,
                "op": "SCMP_CMP_MASKED_EQ"
            })
        );
    }

    #[test]
    fn every_lifting_capability_is_a_linux_capability() {
        for (name, cap) in DENIED {
            if let Some(cap) = cap {
                assert_eq!(
                    ketch_api::core::linux_capability(cap),
                    Some(*cap),
                    "{name}: {cap}"
                );
            }
        }
    }

    /// A name that does not exist on x86_64 would be a dead entry (runc skips it silently). The
    /// numbers come from libc, so a misspelt name fails to compile; the three syscalls Linux
    /// removed long ago are no longer in libc, so their numbers are from `asm/unistd_64.h`.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_denied_syscall_exists_on_x86_64() {
        use nix::libc;
        let table: &[(&str, i64)] = &[
            ("acct", libc::SYS_acct),
            ("add_key", libc::SYS_add_key),
            ("bpf", libc::SYS_bpf),
            ("clock_settime", libc::SYS_clock_settime),
            ("create_module", 174),
            ("delete_module", libc::SYS_delete_module),
            ("fanotify_init", libc::SYS_fanotify_init),
            ("finit_module", libc::SYS_finit_module),
            ("fsconfig", libc::SYS_fsconfig),
            ("fsmount", libc::SYS_fsmount),
            ("fsopen", libc::SYS_fsopen),
            ("fspick", libc::SYS_fspick),
            ("get_kernel_syms", 177),
            ("get_mempolicy", libc::SYS_get_mempolicy),
            ("init_module", libc::SYS_init_module),
            ("ioperm", libc::SYS_ioperm),
            ("iopl", libc::SYS_iopl),
            ("kcmp", libc::SYS_kcmp),
            ("kexec_file_load", libc::SYS_kexec_file_load),
            ("kexec_load", libc::SYS_kexec_load),
            ("keyctl", libc::SYS_keyctl),
            ("lookup_dcookie", libc::SYS_lookup_dcookie),
            ("mbind", libc::SYS_mbind),
            ("mount", libc::SYS_mount),
            ("mount_setattr", libc::SYS_mount_setattr),
            ("move_mount", libc::SYS_move_mount),
            ("move_pages", libc::SYS_move_pages),
            ("nfsservctl", libc::SYS_nfsservctl),
            ("open_by_handle_at", libc::SYS_open_by_handle_at),
            ("open_tree", libc::SYS_open_tree),
            ("perf_event_open", libc::SYS_perf_event_open),
            ("pidfd_getfd", libc::SYS_pidfd_getfd),
            ("pivot_root", libc::SYS_pivot_root),
            ("process_madvise", libc::SYS_process_madvise),
            ("process_vm_readv", libc::SYS_process_vm_readv),
            ("process_vm_writev", libc::SYS_process_vm_writev),
            ("ptrace", libc::SYS_ptrace),
            ("query_module", 178),
            ("quotactl", libc::SYS_quotactl),
            ("quotactl_fd", libc::SYS_quotactl_fd),
            ("reboot", libc::SYS_reboot),
            ("request_key", libc::SYS_request_key),
            ("set_mempolicy", libc::SYS_set_mempolicy),
            ("set_mempolicy_home_node", libc::SYS_set_mempolicy_home_node),
            ("setdomainname", libc::SYS_setdomainname),
            ("sethostname", libc::SYS_sethostname),
            ("setns", libc::SYS_setns),
            ("settimeofday", libc::SYS_settimeofday),
            ("swapoff", libc::SYS_swapoff),
            ("swapon", libc::SYS_swapon),
            ("syslog", libc::SYS_syslog),
            ("_sysctl", libc::SYS__sysctl),
            ("sysfs", libc::SYS_sysfs),
            ("umount2", libc::SYS_umount2),
            ("unshare", libc::SYS_unshare),
            ("uselib", libc::SYS_uselib),
            ("userfaultfd", libc::SYS_userfaultfd),
            ("ustat", libc::SYS_ustat),
            ("vhangup", libc::SYS_vhangup),
        ];
        let known: BTreeSet<&str> = table.iter().map(|(n, _)| *n).collect();
        let denied: BTreeSet<&str> = DENIED.iter().map(|(n, _)| *n).collect();
        assert_eq!(denied, known);
    }
}
