"""cargo, go and gem packages end to end (one harness: the layer build does not depend on it).

cargo installs a tiny crate from the host's crates registry with the operator's Rust toolchain
(the server's own, discovered). go and gem have no reachable public registry here: the suite
serves a Go module proxy (a static `<module>/@v/` file tree) and a gem source (a directory made
by `gem generate_index`) over HTTP on this host's address, and the server is configured with
them (`packages.goproxy`, `packages.gem_source`; tests/e2e_sessions.rs `e2e_packages_toolchains`
passes BRIDLE_E2E_GOPROXY_ADDR and BRIDLE_E2E_GEM_ADDR, `host:port` each). Each manager: a
session runs the installed program, a second session reuses the layer, a package that does not
exist is a `session.error` naming it. Prints build and reuse times for the README's benchmark."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import subprocess
import tempfile
import threading
import zipfile
from pathlib import Path

import pytest

from .lib import is_idle, uniq
from .test_packages import bench, layers, tool_turn

CRATE = "rsay@0.1.0"
"""A tiny binary crate without dependencies (a cow saying its argument)."""
GO_MODULE = "example.test/bridlehello"
GEM = "bridlehello"


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(directory: Path, addr: str) -> http.server.ThreadingHTTPServer:
    _, port = addr.rsplit(":", 1)
    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", int(port)), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def go_proxy_tree(root: Path) -> None:
    """A module proxy holding GO_MODULE v1.0.0: a main package printing GO-OK."""
    v = "v1.0.0"
    d = root / GO_MODULE / "@v"
    d.mkdir(parents=True)
    mod = f"module {GO_MODULE}\n\ngo 1.19\n"
    (d / "list").write_text(f"{v}\n")
    info = json.dumps({"Version": v, "Time": "2024-01-01T00:00:00Z"})
    (d / f"{v}.info").write_text(info)
    (root / GO_MODULE / "@latest").write_text(info)
    (d / f"{v}.mod").write_text(mod)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        prefix = f"{GO_MODULE}@{v}/"
        z.writestr(prefix + "go.mod", mod)
        z.writestr(prefix + "main.go", 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("GO-OK") }\n')
    (d / f"{v}.zip").write_bytes(buf.getvalue())


def gem_source_tree(root: Path) -> None:
    """A gem source holding GEM 1.0.0, whose executable prints GEM-OK."""
    src = root.parent / "gem-src"
    (src / "exe").mkdir(parents=True)
    (src / "exe" / GEM).write_text('#!/usr/bin/env ruby\nputs "GEM-OK"\n')
    (src / f"{GEM}.gemspec").write_text(
        "Gem::Specification.new do |s|\n"
        f"  s.name = '{GEM}'\n  s.version = '1.0.0'\n  s.summary = 'bridle e2e'\n  s.authors = ['bridle']\n"
        f"  s.license = 'MIT'\n  s.files = ['exe/{GEM}']\n  s.bindir = 'exe'\n  s.executables = ['{GEM}']\n"
        "end\n")
    subprocess.run(["gem", "build", f"{GEM}.gemspec"], cwd=src, check=True, capture_output=True)
    (root / "gems").mkdir(parents=True)
    (src / f"{GEM}-1.0.0.gem").rename(root / "gems" / f"{GEM}-1.0.0.gem")
    subprocess.run(["gem", "generate_index", "--directory", str(root)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def mirrors():
    go_addr, gem_addr = os.environ.get("BRIDLE_E2E_GOPROXY_ADDR"), os.environ.get("BRIDLE_E2E_GEM_ADDR")
    if not go_addr or not gem_addr:
        pytest.fail("BRIDLE_E2E_GOPROXY_ADDR and BRIDLE_E2E_GEM_ADDR are not set; run through "
                    "`cargo test -p bridle --test e2e_sessions -- e2e_packages_toolchains`")
    with tempfile.TemporaryDirectory(prefix="bridle-e2e-mirrors-") as tmp:
        go_root, gem_root = Path(tmp) / "goproxy", Path(tmp) / "gems"
        go_proxy_tree(go_root)
        gem_source_tree(gem_root)
        servers = [serve(go_root, go_addr), serve(gem_root, gem_addr)]
        yield
        for s in servers:
            s.shutdown()


def missing_is_a_session_error(stack, model, sessions, manager: str, missing: str) -> None:
    env = stack.client.beta.environments.create(
        name=uniq(f"env-{manager}-bad"), config={"type": "cloud", "packages": {manager: [missing]}})
    s = stack.session(model, environment_id=env.id)
    sessions.append(s)
    evs = s.turn("Hello?", stop="retries_exhausted", timeout=900)
    s.expect_order(evs, ["user.message", "session.status_running", "session.error", is_idle("retries_exhausted")],
                   f"a turn whose {manager} layer fails to build")
    [err] = [e["error"] for e in evs if e["type"] == "session.error"]
    msg = err.get("message", "")
    s.check(f"{manager} package `{missing}`" in msg, f"the error should name the missing package: {err}")
    s.check("installer output ends" in msg, f"the error should carry the installer's output: {err}")


def installed_and_reused(stack, model, sessions, manager: str, package: str, use: str, want: str) -> None:
    env = stack.client.beta.environments.create(
        name=uniq(f"env-{manager}"), config={"type": "cloud", "packages": {manager: [package]}})
    before = layers(stack)
    s1 = stack.session(model, environment_id=env.id)
    sessions.append(s1)
    out = tool_turn(stack, s1, model, use)
    s1.check(want in out, f"the {manager} program did not run from the layer: {out}")
    s1.check("/opt/bridle/layers/" in out, f"the program should be the layer's: {out}")
    built = {k: v for k, v in layers(stack).items() if k not in before}
    s1.check(len(built) == 1, f"one new layer expected, got {built}")
    [(key, inode)] = built.items()
    s2 = stack.session(model, environment_id=env.id)
    sessions.append(s2)
    out = tool_turn(stack, s2, model, use)
    s2.check(want in out, f"the second session lacks the {manager} program: {out}")
    s2.check(layers(stack).get(key) == inode, f"the {manager} layer was rebuilt for the second session")
    figures = bench(stack, key, manager)
    s2.check(len(figures) >= 2, f"a `package layer ready` line per session: {figures}")


def test_cargo_package_in_a_layer(stack, model, sessions):
    installed_and_reused(stack, model, sessions, "cargo", CRATE,
                         "rsay moo-from-cargo && command -v rsay", "moo-from-cargo")
    missing_is_a_session_error(stack, f"{model}-bad", sessions, "cargo",
                               f"bridle-no-such-crate-{uniq('x').split('-')[-1]}")


def test_go_package_from_the_configured_proxy(stack, model, sessions, mirrors):
    installed_and_reused(stack, model, sessions, "go", f"{GO_MODULE}@v1.0.0",
                         "bridlehello && command -v bridlehello", "GO-OK")
    missing_is_a_session_error(stack, f"{model}-bad", sessions, "go", "example.test/bridle-no-such-module@v1.0.0")


def test_gem_package_from_the_configured_source(stack, model, sessions, mirrors):
    installed_and_reused(stack, model, sessions, "gem", GEM, "bridlehello && command -v bridlehello", "GEM-OK")
    missing_is_a_session_error(stack, f"{model}-bad", sessions, "gem", f"bridle-no-such-gem-{uniq('x')[-6:]}")
