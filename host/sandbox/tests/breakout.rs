//! Break-out attempts, each asserting it fails. Run as root (the server runs as
//! root here and in CI): the sandbox must still be unable to touch the host.

mod common;

use std::os::unix::fs::PermissionsExt;

use bridle_sandbox::{EgressPolicy, Networking};
use common::*;

per_variant!(
    runs_unprivileged_with_no_capabilities,
    cannot_write_outside_workspace_even_after_remount,
    cannot_write_proc_sys_or_change_devices,
    cannot_create_nested_namespaces,
    cannot_read_server_data_dir_or_keys_or_other_sessions,
    cannot_see_host_processes,
    no_direct_network_host_loopback_included,
    proxy_enforces_allowed_hosts,
    unrestricted_still_closes_host_loopback,
    placed_read_only_files_cannot_be_changed,
);

fn limited(hosts: &[&str]) -> EgressPolicy {
    EgressPolicy {
        networking: Networking::Limited {
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            allow_package_managers: false,
            allow_mcp_servers: false,
        },
        ..EgressPolicy::default()
    }
}

async fn runs_unprivileged_with_no_capabilities(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    let d = v.driver(tmp.path());
    let sbx = v.claim(&d, spec("caps")).await;
    let out = sh(&*sbx, "id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status").await;
    let s = out.stdout_str();
    assert!(s.starts_with(&format!("{}\n", v.inside_uid(&sbx))), "{s}");
    assert!(s.contains("CapEff:\t0000000000000000"), "{s}");
    assert!(s.contains("CapBnd:\t0000000000000000"), "{s}");
    // gVisor's /proc shows no NoNewPrivs line; the seccomp filter needs it.
    assert!(s.contains("NoNewPrivs:\t1") || v.is_gvisor(), "{s}");
    assert!(s.contains("Seccomp:\t2"), "{s}");
    let host_uid = sbx.host_uid().unwrap();
    assert!(host_uid >= 600_000, "sandbox host uid {host_uid}");
    if v.is_gvisor() {
        // No host process runs the agent's code: gVisor's kernel serves its
        // system calls (and enforces the seccomp filter).
        sbx.release().await.unwrap();
        return;
    }
    // On the host, the sandbox's processes belong to the sandbox's own uid.
    let status = std::fs::read_to_string(format!("/proc/{}/status", sbx.bwrap_pid().unwrap())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.contains(&host_uid.to_string()), "{uid_line}");
    assert!(!uid_line.split_whitespace().skip(1).any(|u| u == "0"), "{uid_line}");
    sbx.release().await.unwrap();
}

async fn cannot_write_outside_workspace_even_after_remount(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    let d = v.driver(tmp.path());
    let sbx = v.claim(&d, spec("writes")).await;
    let probe = format!("bridle_escape_probe_{}", std::process::id());
    let script = format!(
        r#"
        for f in /usr/{p} /etc/{p} /usr/bin/{p} /run/bridle/{p} /{p}; do
          if touch "$f" 2>/dev/null; then echo "WROTE $f"; fi
        done
        for m in /usr / /etc /run/bridle; do
          if mount -o remount,bind,rw "$m" 2>/dev/null; then echo "REMOUNTED $m"; fi
        done
        if touch /usr/{p} 2>/dev/null; then echo "WROTE-AFTER-REMOUNT /usr/{p}"; fi
        if mount -t tmpfs none /usr 2>/dev/null; then echo "MOUNTED tmpfs"; fi
        echo ok > /workspace/inside.txt && echo WORKSPACE-OK
        echo ok > /tmp/t && echo TMP-OK
        echo ok > /mnt/session/uploads/{p} && echo UPLOADS-OK
        echo ok > /mnt/session/outputs/{p} && echo OUTPUTS-OK
        if touch /mnt/{p} 2>/dev/null; then echo "WROTE /mnt/{p}"; fi
        "#,
        p = probe
    );
    let out = sh(&*sbx, &script).await;
    let s = out.stdout_str();
    assert!(!s.contains("REMOUNTED"), "{s}");
    assert!(!s.contains("WROTE /usr") && !s.contains("WROTE /etc"), "{s}");
    assert!(!s.contains("WROTE /run"), "{s}");
    assert!(!s.contains("WROTE-AFTER-REMOUNT"), "{s}");
    assert!(!s.contains("MOUNTED"), "{s}");
    assert!(s.contains("WORKSPACE-OK") && s.contains("TMP-OK"), "{s}");
    // The agent's outputs directory takes files; the rest of /mnt does not. Uploads are the
    // host's to place: a read-only bind with either driver.
    assert!(s.contains("OUTPUTS-OK"), "{s}");
    assert!(!s.contains("UPLOADS-OK"), "{s}");
    assert!(!s.contains("WROTE /mnt"), "{s}");
    for f in ["/mnt/session/uploads", "/mnt/session/outputs", "/mnt"] {
        assert!(!std::path::Path::new(f).join(&probe).exists(), "host {f}/{probe} was created");
    }
    for dir in ["/usr", "/etc", "/usr/bin", "/"] {
        assert!(!std::path::Path::new(dir).join(&probe).exists(), "host {dir}/{probe} was created");
    }
    // The workspace write landed on the host, owned by the sandbox uid.
    let ws = d.workspace_path("writes").join("inside.txt");
    assert_eq!(std::fs::read_to_string(&ws).unwrap(), "ok\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&ws).unwrap().uid(), sbx.host_uid().unwrap());
    // /tmp is private: nothing appears in the host's /tmp.
    sbx.release().await.unwrap();
}

async fn cannot_write_proc_sys_or_change_devices(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    let d = v.driver(tmp.path());
    let sbx = v.claim(&d, spec("sysctl")).await;
    let before_core = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let before_null = std::fs::metadata("/dev/null").unwrap().permissions().mode();
    let out = sh(
        &*sbx,
        r#"
        if echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then echo WROTE-DROP-CACHES; fi
        if echo '|/tmp/evil' > /proc/sys/kernel/core_pattern 2>/dev/null; then echo WROTE-CORE-PATTERN; fi
        if echo 1 > /proc/sysrq-trigger 2>/dev/null; then echo WROTE-SYSRQ; fi
        if chmod 0604 /dev/null 2>/dev/null; then echo CHMOD-DEVNULL; fi
        if chown 1000 /dev/null 2>/dev/null; then echo CHOWN-DEVNULL; fi
        if mknod /tmp/sda b 8 0 2>/dev/null; then echo MKNOD; fi
        if [ -e /dev/sda ] || [ -e /dev/vda ] || [ -e /dev/mem ] || [ -e /dev/kmsg ]; then echo HOST-DEVICES; fi
        echo done
        "#,
    )
    .await;
    let s = out.stdout_str();
    for bad in [
        "WROTE-DROP-CACHES",
        "WROTE-CORE-PATTERN",
        "WROTE-SYSRQ",
        "CHMOD-DEVNULL",
        "CHOWN-DEVNULL",
        "MKNOD",
        "HOST-DEVICES",
    ] {
        assert!(!s.contains(bad), "{bad}: {s}");
    }
    assert!(s.contains("done"), "{s}");
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(), before_core);
    assert_eq!(std::fs::metadata("/dev/null").unwrap().permissions().mode(), before_null);
    sbx.release().await.unwrap();
}

async fn cannot_create_nested_namespaces(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    let d = v.driver(tmp.path());
    let sbx = v.claim(&d, spec("userns")).await;
    let out = sh(
        &*sbx,
        r#"
        if unshare -U -r true 2>/dev/null; then echo USERNS; fi
        if unshare -U true 2>/dev/null; then echo USERNS2; fi
        if unshare -n true 2>/dev/null; then echo NETNS; fi
        if unshare -m true 2>/dev/null; then echo MNTNS; fi
        unshare -U -r true; echo "rc=$?"
        "#,
    )
    .await;
    let s = out.stdout_str();
    assert!(!s.contains("USERNS") && !s.contains("NETNS") && !s.contains("MNTNS"), "{s}");
    assert!(s.contains("rc=1"), "{s} / {}", out.stderr_str());
    sbx.release().await.unwrap();
}

async fn cannot_read_server_data_dir_or_keys_or_other_sessions(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    // A fake server data dir, root-only, with a secret key and a database; the
    // sandbox state dir is its sibling (the driver refuses a state dir that the
    // sandbox uids cannot traverse, see `state_dir_inside_private_data_dir_is_refused`).
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = data.join("secret.key");
    let secret = "FAKE-SERVER-KEY-5d1c0a7e";
    std::fs::write(&key, secret).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(data.join("bridle.db"), format!("db {secret}")).unwrap();
    let d = v.driver(tmp.path());

    let a = v.claim(&d, spec("sess-a")).await;
    let b = v.claim(&d, spec("sess-b")).await;
    assert_ne!(a.host_uid(), b.host_uid(), "one uid per sandbox");
    let out = sh(&*a, "echo 'A-PRIVATE' > /workspace/a.txt && echo ok").await;
    assert!(out.status.success());

    let script = format!(
        r#"
        cat {key} 2>/dev/null && echo READ-KEY
        ls {data} 2>/dev/null && echo LISTED-DATA
        cat {data}/bridle.db 2>/dev/null && echo READ-DB
        ls {ws_a} 2>/dev/null && echo LISTED-OTHER-WS
        cat /proc/1/root{key} 2>/dev/null && echo READ-VIA-PROC
        grep -rs '{secret}' /workspace /tmp /run /etc /proc/self/fd 2>/dev/null && echo FOUND-SECRET
        grep -rs 'A-PRIVATE' /workspace /tmp /run 2>/dev/null && echo FOUND-OTHER-SESSION
        for p in /proc/[0-9]*; do
          for f in $p/fd/*; do readlink "$f"; done
        done 2>/dev/null | grep -F '{tmp}' && echo LEAKED-HOST-FD
        echo done
        "#,
        key = key.display(),
        data = data.display(),
        ws_a = d.workspace_path("sess-a").display(),
        tmp = tmp.path().display(),
        secret = secret,
    );
    let out = sh(&*b, &script).await;
    let s = out.stdout_str();
    for bad in [
        "READ-KEY",
        "LISTED-DATA",
        "READ-DB",
        "LISTED-OTHER-WS",
        "READ-VIA-PROC",
        "FOUND-SECRET",
        "FOUND-OTHER-SESSION",
        "LEAKED-HOST-FD",
    ] {
        assert!(!s.contains(bad), "{bad}: {s}");
    }
    assert!(!s.contains(secret), "{s}");
    assert!(s.contains("done"), "{s}");
    a.release().await.unwrap();
    b.release().await.unwrap();
}

async fn cannot_see_host_processes(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    let d = v.driver(tmp.path());
    let sbx = v.claim(&d, spec("pids")).await;
    let me = std::process::id();
    let out = sh(
        &*sbx,
        &format!(
            "ls -d /proc/[0-9]* | wc -l; kill -0 {me} 2>/dev/null && echo SIGNALLED-HOST; \
             ps -eo pid,comm --no-headers; hostname"
        ),
    )
    .await;
    let s = out.stdout_str();
    let count: usize = s.lines().next().unwrap().trim().parse().unwrap();
    assert!(count <= 8, "sandbox sees {count} processes: {s}");
    assert!(!s.contains("SIGNALLED-HOST"), "{s}");
    assert!(!s.contains("cargo") && !s.contains("breakout"), "{s}");
    assert!(s.trim_end().ends_with("sandbox"), "{s}");
    sbx.release().await.unwrap();
}

async fn no_direct_network_host_loopback_included(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    let d = v.driver(tmp.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sbx = v.claim(&d, spec("net")).await;
    let out = sh(
        &*sbx,
        &format!(
            r#"
            tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '
            (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo CONNECTED-HOST-LOOPBACK
            (exec 3<>/dev/tcp/10.0.2.2/{port}) 2>/dev/null && echo CONNECTED-PRIVATE
            (exec 3<>/dev/tcp/1.1.1.1/443) 2>/dev/null && echo CONNECTED-PUBLIC
            (exec 3<>/dev/udp/1.1.1.1/53) 2>/dev/null && echo "udp socket is local only"
            curl -s --noproxy '*' -m 2 http://127.0.0.1:{port}/ && echo CURL-HOST
            ip route 2>/dev/null | grep -q default && echo HAS-DEFAULT-ROUTE
            echo done
            "#
        ),
    )
    .await;
    let s = out.stdout_str();
    assert_eq!(s.lines().next(), Some("lo"), "{s}");
    for bad in ["CONNECTED-HOST-LOOPBACK", "CONNECTED-PRIVATE", "CONNECTED-PUBLIC", "CURL-HOST", "HAS-DEFAULT-ROUTE"] {
        assert!(!s.contains(bad), "{bad}: {s}");
    }
    assert!(s.contains("done"), "{s}");
    // Nothing ever reached the host listener.
    let accepted = tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the host listener got a connection");
    sbx.release().await.unwrap();
}

async fn proxy_enforces_allowed_hosts(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    // The loopback test upstream plays the allowed host: the operator
    // opened it (allowed_hosts alone cannot reach an internal address).
    let d = v.driver_with(tmp.path(), |c| c.egress.allow_internal = vec!["127.0.0.1".parse().unwrap()]);
    let up = FakeUpstream::start().await;
    let mut sp = spec("proxy");
    sp.egress = limited(&["127.0.0.1"]);
    let sbx = v.claim(&d, sp).await;
    let out = sh(
        &*sbx,
        &format!(
            r#"
            pc() {{ NO_PROXY= no_proxy= curl "$@"; }}
            echo "proxy=$HTTPS_PROXY"
            echo "--- allowed plain"
            pc -s -m 5 --proxy "$HTTP_PROXY" http://127.0.0.1:{port}/allowed
            echo
            echo "--- allowed connect"
            pc -s -m 5 -p --proxy "$HTTP_PROXY" http://127.0.0.1:{port}/tunnel
            echo
            echo "--- denied plain"
            curl -s -m 5 -w ' status=%{{http_code}}' http://denied.example.invalid/x
            echo
            echo "--- denied connect"
            curl -s -m 5 https://denied.example.invalid/ ; echo " rc=$?"
            curl -s -m 5 -o /dev/null -w 'connect-status=%{{http_connect}}' https://denied.example.invalid/
            echo
            echo "--- localhost alias not named"
            pc -s -m 5 -w ' status=%{{http_code}}' --proxy "$HTTP_PROXY" http://localhost:{port}/alias
            echo
            "#,
            port = up.port
        ),
    )
    .await;
    let s = out.stdout_str();
    assert!(s.contains("proxy=http://127.0.0.1:41080"), "{s}");
    assert!(s.contains("upstream-ok /allowed"), "{s}");
    assert!(s.contains("upstream-ok /tunnel"), "{s}");
    assert!(s.contains("denied by the environment's network policy"), "{s}");
    assert!(s.contains("status=403"), "{s}");
    assert!(s.contains("connect-status=403"), "{s}");
    let alias = s.split("--- localhost alias not named").nth(1).unwrap();
    assert!(alias.contains("status=403"), "{s}");
    let paths: Vec<String> = up.requests().iter().map(|r| r.request_line.clone()).collect();
    assert!(paths.iter().all(|p| !p.contains("/alias")), "{paths:?}");
    let st = sbx.egress_stats();
    assert!(st.requests_allowed >= 2, "{st:?}");
    assert!(st.requests_denied >= 3, "{st:?}");
    assert!(st.bytes_received > 0, "{st:?}");
    sbx.release().await.unwrap();
}

async fn unrestricted_still_closes_host_loopback(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    let d = v.driver(tmp.path());
    let up = FakeUpstream::start().await;
    let mut sp = spec("unrestricted");
    sp.egress = EgressPolicy { networking: Networking::Unrestricted, ..EgressPolicy::default() };
    let sbx = v.claim(&d, sp).await;
    let out = sh(
        &*sbx,
        &format!(
            "NO_PROXY= no_proxy= curl -s -m 5 -w ' status=%{{http_code}}' --proxy \"$HTTP_PROXY\" http://127.0.0.1:{}/ssrf",
            up.port
        ),
    )
    .await;
    let s = out.stdout_str();
    assert!(s.contains("status=403") && s.contains("internal destinations"), "{s}");
    assert!(up.requests().is_empty());
    sbx.release().await.unwrap();
}

#[test]
fn state_dir_inside_private_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = bridle_sandbox::LocalDriver::new(bridle_sandbox::LocalConfig {
        state_dir: data.join("sandboxes"),
        init_binary: Some(env!("CARGO_BIN_EXE_bridle-sandbox-init").into()),
        ..Default::default()
    })
    .err()
    .expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("cannot traverse") && msg.contains("chmod o+x"), "{msg}");
}

/// What the host places read-only (a session's uploaded files) the agent can
/// read but not write, `chmod` or (under `/mnt/session/uploads`) remove or
/// replace; a symlink the agent plants never leads the host's write out.
async fn placed_read_only_files_cannot_be_changed(v: Variant) {
    let tmp = tempfile::tempdir().unwrap();
    let d = v.driver(tmp.path());
    let sbx = v.claim(&d, spec("placed")).await;
    let outside = tempfile::tempdir().unwrap();
    let place = |path: &'static str, body: &'static [u8]| {
        let sbx = sbx.inner.clone();
        async move { sbx.place_read_only(path, Box::pin(body)).await }
    };
    place("/mnt/session/uploads/in.txt", b"upload\n").await.unwrap();
    place("/workspace/in/data.txt", b"data\n").await.unwrap();
    // Placing again replaces (a resource added to a new sandbox, a re-sync).
    place("/workspace/in/data.txt", b"data2\n").await.unwrap();
    let out = sh(
        &*sbx,
        "cd /workspace; for f in /mnt/session/uploads/in.txt in/data.txt; do cat $f; \
           chmod 666 $f 2>/dev/null && echo CHMOD; (echo x >> $f) 2>/dev/null && echo WROTE; done; \
         rm -f /mnt/session/uploads/in.txt 2>/dev/null; [ -e /mnt/session/uploads/in.txt ] || echo REMOVED; \
         touch /mnt/session/uploads/new 2>/dev/null && echo CREATED; \
         touch in/mine && echo own-dir-writable",
    )
    .await;
    let s = out.stdout_str();
    assert_eq!(s, "upload\ndata2\nown-dir-writable\n", "{s} / {}", out.stderr_str());

    // A symlink planted where the host will place a file: refused, nothing
    // written outside.
    let target = outside.path().display().to_string();
    let out = sh(&*sbx, &format!("ln -s {target} /workspace/evil && echo linked")).await;
    assert_eq!(out.stdout_str(), "linked\n");
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = place("/workspace/evil/x.txt", b"no").await.expect_err("placed through a symlink");
    assert!(err.to_string().contains("evil"), "{err}");
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none(), "written through the symlink");
    sbx.release().await.unwrap();
}
