//! The seccomp filter handed to bubblewrap (`--seccomp FD`), and installed by
//! the gVisor driver's exec wrapper inside gVisor ([`apply`]): a deny list that
//! answers `EPERM` to syscalls a coding agent never needs and that widen the
//! kernel's attack surface (mounts, namespaces, keyrings, bpf, io_uring,
//! kernel modules, clocks, reboot), and an allow list of socket families
//! (`AF_UNIX`, `AF_INET`, `AF_INET6`, and `AF_NETLINK` for `NETLINK_ROUTE`
//! only): `AF_VSOCK` ignores network namespaces (on a VM host it reaches the
//! hypervisor), and packet, the other netlink protocols and the rest are
//! kernel surface no agent needs. `NETLINK_ROUTE` stays because
//! `getifaddrs(3)` needs it — Node's `os.networkInterfaces()` throws without
//! it, which dev servers call — and in the sandbox's own network namespace,
//! without capabilities, it can only read its loopback. Namespace creation is
//! also stopped by `--disable-userns` and by the empty capability set; this is
//! depth.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Syscalls denied outright.
// `c_long` is `i64` on the 64-bit targets seccompiler supports.
#[allow(clippy::useless_conversion)]
fn denied_syscalls() -> Vec<i64> {
    let mut v: Vec<libc::c_long> = vec![
        libc::SYS_acct,
        libc::SYS_add_key,
        libc::SYS_bpf,
        libc::SYS_clock_adjtime,
        libc::SYS_clock_settime,
        libc::SYS_delete_module,
        libc::SYS_finit_module,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fsopen,
        libc::SYS_fspick,
        libc::SYS_init_module,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_io_uring_setup,
        libc::SYS_kexec_file_load,
        libc::SYS_kexec_load,
        libc::SYS_keyctl,
        libc::SYS_lookup_dcookie,
        libc::SYS_mount,
        libc::SYS_mount_setattr,
        libc::SYS_move_mount,
        libc::SYS_name_to_handle_at,
        libc::SYS_open_by_handle_at,
        libc::SYS_open_tree,
        libc::SYS_perf_event_open,
        libc::SYS_pivot_root,
        libc::SYS_quotactl,
        libc::SYS_reboot,
        libc::SYS_request_key,
        libc::SYS_setns,
        libc::SYS_settimeofday,
        libc::SYS_swapoff,
        libc::SYS_swapon,
        libc::SYS_syslog,
        libc::SYS_umount2,
        libc::SYS_unshare,
        libc::SYS_userfaultfd,
        libc::SYS_vhangup,
        libc::SYS_adjtimex,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([libc::SYS_iopl, libc::SYS_ioperm, libc::SYS_uselib, libc::SYS_nfsservctl]);
    v.into_iter().map(i64::from).collect()
}

/// Namespace flags refused on `clone(2)`.
const CLONE_NS_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// The only socket families `socket(2)` and `socketpair(2)` may create
/// (and `socket(AF_NETLINK, _, NETLINK_ROUTE)`).
pub const ALLOWED_SOCKET_FAMILIES: [i32; 3] = [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6];

/// The compiled filter as the raw `struct sock_filter[]` bytes bwrap reads.
pub fn compile() -> anyhow::Result<Vec<u8>> {
    let program = program()?;
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for ins in program {
        bytes.extend_from_slice(&ins.code.to_ne_bytes());
        bytes.push(ins.jt);
        bytes.push(ins.jf);
        bytes.extend_from_slice(&ins.k.to_ne_bytes());
    }
    Ok(bytes)
}

/// Install the filter on the calling thread (and sets `no_new_privs`):
/// what the gVisor driver's exec wrapper does inside gVisor, whose kernel
/// enforces filters installed by its processes.
pub fn apply() -> anyhow::Result<()> {
    let program = program()?;
    seccompiler::apply_filter(&program).map_err(|e| anyhow!("install seccomp filter: {e}"))
}

/// The compiled filter.
#[allow(clippy::useless_conversion)]
fn program() -> anyhow::Result<BpfProgram> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| anyhow!("seccomp: unsupported architecture: {e:?}"))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in denied_syscalls() {
        rules.insert(nr, Vec::new());
    }
    let mut clone_rules = Vec::new();
    for flag in CLONE_NS_FLAGS {
        let cond = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)
            .map_err(|e| anyhow!("seccomp condition: {e:?}"))?;
        clone_rules.push(SeccompRule::new(vec![cond]).map_err(|e| anyhow!("seccomp rule: {e:?}"))?);
    }
    rules.insert(i64::from(libc::SYS_clone), clone_rules);
    // Rules match (and deny) when all their conditions hold; any rule of a
    // syscall may match.
    let cond = |arg: u8, op: SeccompCmpOp, value: i32| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value as u64)
            .map_err(|e| anyhow!("seccomp condition: {e:?}"))
    };
    let rule = |conds: Vec<SeccompCondition>| SeccompRule::new(conds).map_err(|e| anyhow!("seccomp rule: {e:?}"));
    let not_in = |families: &[i32]| -> anyhow::Result<SeccompRule> {
        rule(families.iter().map(|f| cond(0, SeccompCmpOp::Ne, *f)).collect::<anyhow::Result<Vec<_>>>()?)
    };
    let mut with_netlink = ALLOWED_SOCKET_FAMILIES.to_vec();
    with_netlink.push(libc::AF_NETLINK);
    let socket_rules = vec![
        not_in(&with_netlink)?,
        rule(vec![cond(0, SeccompCmpOp::Eq, libc::AF_NETLINK)?, cond(2, SeccompCmpOp::Ne, libc::NETLINK_ROUTE)?])?,
    ];
    rules.insert(i64::from(libc::SYS_socket), socket_rules);
    rules.insert(i64::from(libc::SYS_socketpair), vec![not_in(&ALLOWED_SOCKET_FAMILIES)?]);
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
        .map_err(|e| anyhow!("seccomp filter: {e:?}"))?;
    filter.try_into().map_err(|e| anyhow!("seccomp compile: {e:?}")).context("compile seccomp filter")
}

#[cfg(test)]
mod tests {
    #[test]
    fn compiles_to_whole_instructions() {
        let bytes = super::compile().expect("compile");
        assert!(!bytes.is_empty());
        assert_eq!(bytes.len() % 8, 0);
    }
}
