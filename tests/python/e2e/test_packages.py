"""Environment packages end to end, for one harness (BRIDLE_E2E_ENGINE): an environment with a
small pip package and a small npm package (neither on this machine's images) gets them
installed into a cached layer before the runtime starts; a bash tool call imports and runs
them; a second session reuses the layer (not rebuilt); a changed package list builds a new
layer; a package that does not exist is a `session.error` naming it, the session idle and
usable, and the next session tries the build again. An apt package the host lacks (a binary
with a shared library of its own) is unpacked into a layer and runs, while the host's dpkg
database stays byte-identical; a missing apt package is a `session.error` naming it. Prints
build and reuse times (the server's `package layer ready` log lines) for the README's
benchmark."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from .lib import is_idle, text_of, uniq

PIP = "cowsay==6.1"
NPM = "left-pad@1.3.0"
CHANGED = "pyjokes==0.8.3"


def tool_turn(stack, s, model: str, command: str) -> str:
    """One turn whose single bash call runs `command`; returns its output."""
    stack.fake.set_scenario(model, {"turns": [{"tools": [{"command": command}], "text": "Done: {{tool_output}}"}]})
    evs = s.turn("Run the command.", timeout=600)
    _, result, msg, _ = s.expect_order(
        evs, ["agent.tool_use", "agent.tool_result", "agent.message", is_idle("end_turn")], "a bash tool turn")
    s.check(not result.get("is_error"), f"the tool failed: {result}")
    return json.dumps(result.get("content")) + text_of(msg)


def layers(stack) -> dict[str, int]:
    """The layers on disk by key: the inode of each (a rebuilt layer is a new directory)."""
    root = Path(stack.sandbox_dir) / "layers"
    return {p.name: p.stat().st_ino for p in root.iterdir() if p.is_dir() and "." not in p.name}


def ready_lines(stack) -> list[str]:
    text = Path(stack.log_path).read_text(errors="replace") if stack.log_path else ""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return [line for line in text.splitlines() if "package layer ready" in line]


USE = (
    "python3 -c 'import cowsay; print(\"PIP-OK\", cowsay.get_output_string(\"cow\", \"moo\").count(\"moo\"))'"
    " && cowsay -t hi | grep -c hi"
    " && node -e 'console.log(\"NPM-OK\", require(\"left-pad\")(\"7\", 3, \"0\"))'"
)


def test_packages_are_installed_cached_and_rebuilt(stack, model, sessions):
    client = stack.client
    env = client.beta.environments.create(
        name=uniq("env-pkgs"), config={"type": "cloud", "packages": {"pip": [PIP], "npm": [NPM]}})
    before = layers(stack)

    s1 = stack.session(model, environment_id=env.id)
    sessions.append(s1)
    out = tool_turn(stack, s1, model, USE)
    s1.check("PIP-OK 1" in out, f"the pip package was not importable: {out}")
    s1.check("NPM-OK 007" in out, f"the npm package was not loadable: {out}")
    built = {k: v for k, v in layers(stack).items() if k not in before}
    s1.check(len(built) == 1, f"one new layer expected, got {built}")
    [(key, inode)] = built.items()

    # A second session on the same environment reuses the layer: same directory, no new one.
    s2 = stack.session(model, environment_id=env.id)
    sessions.append(s2)
    out = tool_turn(stack, s2, model, USE)
    s2.check("PIP-OK 1" in out and "NPM-OK 007" in out, f"the second session lacks the packages: {out}")
    after = layers(stack)
    s2.check(after.get(key) == inode, "the layer was rebuilt for the second session")
    s2.check(set(after) - set(before) == {key}, f"a second layer appeared: {after}")

    # A changed package list builds a new layer with the new package.
    client.beta.environments.update(env.id, config={"type": "cloud", "packages": {"pip": [PIP, CHANGED]}})
    s3 = stack.session(model, environment_id=env.id)
    sessions.append(s3)
    out = tool_turn(stack, s3, model, "python3 -c 'import pyjokes, cowsay; print(\"CHANGED-OK\")'")
    s3.check("CHANGED-OK" in out, f"the changed package list was not installed: {out}")
    new = set(layers(stack)) - set(before) - {key}
    s3.check(len(new) == 1, f"one more layer expected for the changed list, got {new}")

    # The figures for the README's benchmark (BRIDLE_E2E_BENCH_FILE collects them).
    figures = []
    for line in ready_lines(stack):
        m = re.search(r"key=(\w+).*built=(\w+).*secs=([\d.e+-]+)", line)
        if m:
            figures.append(f"{stack.engine} layer={m.group(1)[:12]} built={m.group(2)} secs={m.group(3)}")
    s3.check(len(figures) >= 3, f"a `package layer ready` line per session: {figures}")
    if os.environ.get("BRIDLE_E2E_BENCH_FILE"):
        with open(os.environ["BRIDLE_E2E_BENCH_FILE"], "a") as f:
            f.write("\n".join(figures) + "\n")


def test_failing_package_is_a_session_error_and_retried(stack, model, sessions):
    missing = f"bridle-no-such-package-{uniq('x').split('-')[-1]}"
    env = stack.client.beta.environments.create(
        name=uniq("env-bad"), config={"type": "cloud", "packages": {"pip": [missing]}})

    def failed_turn(s) -> dict:
        evs = s.turn("Hello?", stop="retries_exhausted", timeout=600)
        s.expect_order(evs, ["user.message", "session.status_running", "session.error",
                             is_idle("retries_exhausted")], "a turn whose package layer fails to build")
        errs = [e for e in evs if e["type"] == "session.error"]
        s.check(len(errs) == 1, f"one session.error, got {len(errs)}")
        return errs[0]["error"]

    s = stack.session(model, environment_id=env.id)
    sessions.append(s)
    err = failed_turn(s)
    msg = err.get("message", "")
    s.check(f"pip package `{missing}`" in msg, f"the error should name the failing package: {err}")
    s.check("installer output ends" in msg and missing in msg.split("installer output ends", 1)[1],
            f"the error should carry the installer's output: {err}")
    s.check(len(stack.fake.requests(model)) == 0, "no model request without the packages")
    # Idle and usable: the next message tries again and fails the same clear way.
    again = failed_turn(s)
    s.check(f"pip package `{missing}`" in again.get("message", ""), f"the retry's error: {again}")
    # Nothing was cached: another session builds again.
    other = stack.session(model, environment_id=env.id)
    sessions.append(other)
    failed_turn(other)
    attempts = Path(stack.log_path).read_text(errors="replace").count(f"installing pip package `{missing}` failed")
    s.check(attempts >= 3, f"each attempt builds again; the server log shows {attempts}")


def test_sessions_starting_at_once_build_the_layer_once(stack, model, sessions):
    """Three sessions of a new package list start together: one build, all three use it."""
    from concurrent.futures import ThreadPoolExecutor

    env = stack.client.beta.environments.create(
        name=uniq("env-once"), config={"type": "cloud", "packages": {"npm": [NPM], "pip": [CHANGED]}})
    before = layers(stack)
    command = "python3 -c 'import pyjokes; print(\"ONCE-OK\")'"
    models = [f"{model}-{i}" for i in range(3)]
    for m in models:
        stack.fake.set_scenario(m, {"turns": [{"tools": [{"command": command}], "text": "Done: {{tool_output}}"}]})
    live = [stack.session(m, environment_id=env.id) for m in models]
    sessions.extend(live)
    with ThreadPoolExecutor(len(live)) as pool:
        results = list(pool.map(lambda s: s.turn("Run the command.", timeout=600), live))
    for s, evs in zip(live, results):
        _, result, _, _ = s.expect_order(
            evs, ["agent.tool_use", "agent.tool_result", "agent.message", is_idle("end_turn")], "a bash tool turn")
        s.check("ONCE-OK" in json.dumps(result.get("content")), f"the package was not there: {result}")
    new = set(layers(stack)) - set(before)
    assert len(new) == 1, f"one layer for the three sessions, got {new}"
    [key] = new
    text = Path(stack.log_path).read_text(errors="replace")
    builds = len(re.findall(rf"building package layer\S* key\S*={key}", re.sub(r"\x1b\[[0-9;]*m", "", text)))
    assert builds == 1, f"the layer was built {builds} times"


APT = "tidy"
"""A small package with a binary and a shared library of its own (libtidy5deb1)."""
APT_ON_HOST = "bash"
"""Installed on every Debian host: the layer must not carry it again."""
DPKG_STATUS = Path("/var/lib/dpkg/status")


def host_has(package: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return out.returncode == 0 and "install ok installed" in out.stdout


def bench(stack, key: str, manager: str) -> list[str]:
    """This layer's build and reuse times, appended to BRIDLE_E2E_BENCH_FILE when set."""
    figures = []
    for line in ready_lines(stack):
        m = re.search(r"key=(\w+).*built=(\w+).*secs=([\d.e+-]+)", line)
        if m and m.group(1) == key:
            figures.append(f"{stack.engine} manager={manager} layer={key[:12]} built={m.group(2)} secs={m.group(3)}")
    if os.environ.get("BRIDLE_E2E_BENCH_FILE"):
        with open(os.environ["BRIDLE_E2E_BENCH_FILE"], "a") as f:
            f.write("\n".join(figures) + "\n")
    return figures


def test_apt_package_in_a_layer_leaves_the_host_alone(stack, model, sessions):
    assert not host_has(APT), f"`{APT}` is installed on this host: the test needs a package the host lacks"
    assert host_has(APT_ON_HOST), f"`{APT_ON_HOST}` should be installed on this host"
    status_before = DPKG_STATUS.read_bytes()
    env = stack.client.beta.environments.create(
        name=uniq("env-apt"), config={"type": "cloud", "packages": {"apt": [APT, APT_ON_HOST]}})
    before = layers(stack)
    # The binary runs and loads its library from the layer (ldd names the layer's copy).
    use = "tidy -v && ldd \"$(command -v tidy)\" | grep libtidy && echo APT-OK"
    s1 = stack.session(model, environment_id=env.id)
    sessions.append(s1)
    out = tool_turn(stack, s1, model, use)
    s1.check("HTML Tidy" in out and "APT-OK" in out, f"tidy did not run from the layer: {out}")
    s1.check("/opt/bridle/layers/" in out, f"libtidy should come from the layer: {out}")
    built = {k: v for k, v in layers(stack).items() if k not in before}
    s1.check(len(built) == 1, f"one new layer expected, got {built}")
    [(key, inode)] = built.items()
    root = Path(stack.sandbox_dir) / "layers" / key / "apt"
    s1.check((root / "usr/bin/tidy").is_file(), f"no usr/bin/tidy in {root}")
    s1.check(not (root / "usr/bin" / APT_ON_HOST).exists() and not (root / "bin" / APT_ON_HOST).exists(),
             f"`{APT_ON_HOST}`, installed on the host, was unpacked into the layer")

    # A second session reuses the layer.
    s2 = stack.session(model, environment_id=env.id)
    sessions.append(s2)
    out = tool_turn(stack, s2, model, use)
    s2.check("APT-OK" in out, f"the second session lacks tidy: {out}")
    s2.check(layers(stack).get(key) == inode, "the apt layer was rebuilt for the second session")

    # The host is untouched: its package database is byte-identical and tidy is not installed.
    s2.check(DPKG_STATUS.read_bytes() == status_before, f"{DPKG_STATUS} changed")
    s2.check(not host_has(APT), f"`{APT}` is now installed on the host")
    figures = bench(stack, key, "apt")
    s2.check(len(figures) >= 2, f"a `package layer ready` line per session: {figures}")


def test_missing_apt_package_is_a_session_error_naming_it(stack, model, sessions):
    missing = f"bridle-no-such-package-{uniq('x').split('-')[-1].lower()}"
    env = stack.client.beta.environments.create(
        name=uniq("env-apt-bad"), config={"type": "cloud", "packages": {"apt": [APT, missing]}})
    s = stack.session(model, environment_id=env.id)
    sessions.append(s)
    evs = s.turn("Hello?", stop="retries_exhausted", timeout=600)
    s.expect_order(evs, ["user.message", "session.status_running", "session.error", is_idle("retries_exhausted")],
                   "a turn whose apt layer fails to build")
    [err] = [e["error"] for e in evs if e["type"] == "session.error"]
    msg = err.get("message", "")
    # The failing one is named, not the package list, and apt's own complaint is quoted.
    s.check(f"apt package `{missing}`" in msg, f"the error should name the missing package alone: {err}")
    s.check("Unable to locate package" in msg, f"the error should carry apt's output: {err}")
    s.check(len(stack.fake.requests(model)) == 0, "no model request without the packages")


def test_apt_lists_are_reused_by_the_next_build(stack, model, sessions):
    """Two apt layers one after the other: the second build takes the package lists the first
    left in the cache (`packages.apt_lists_max_age_secs`) instead of running `apt-get update`."""
    keys = []
    for package, use in (("tree", "tree --version && echo TREE-OK"), ("cmark", "cmark --version && echo CMARK-OK")):
        assert not host_has(package), f"`{package}` is installed on this host: the test needs one the host lacks"
        env = stack.client.beta.environments.create(
            name=uniq("env-apt-lists"), config={"type": "cloud", "packages": {"apt": [package]}})
        before = layers(stack)
        s = stack.session(f"{model}-{package}", environment_id=env.id)
        sessions.append(s)
        out = tool_turn(stack, s, f"{model}-{package}", use)
        s.check(f"{package.upper()}-OK" in out, f"{package} did not run from the layer: {out}")
        [key] = set(layers(stack)) - set(before)
        keys.append(key)
    log = (Path(stack.sandbox_dir) / "layer-state" / f"{keys[1]}.log").read_text(errors="replace")
    assert "[bridle] apt: package lists from the cache" in log, f"the second build updated its lists:\n{log}"
    assert "the cached lists failed" not in log, f"the cached lists did not serve the second build:\n{log}"
    bench(stack, keys[1], "apt-cached-lists")
