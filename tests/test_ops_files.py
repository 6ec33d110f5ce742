"""Invariants of the deployment files: Dockerfile, .dockerignore and the systemd unit."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import tool_unavailable

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
UNIT = ROOT / "systemd" / "switchboard.service"
UNIT_OVERRIDE_EXAMPLE = ROOT / "systemd" / "switchboard.service.d" / "override.conf.example"

CONFIG_PATH = "/etc/switchboard/switchboard.toml"
SECRET_LOOKING = re.compile(
    r"(^|/)(\.env(\..*)?|.*\.token|token|secrets?(/.*)?|.*\.pem|.*\.key|id_rsa.*"
    r"|switchboard\.toml)$"
)


# --- a small Dockerfile reader -------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper-case: FROM, RUN, ...
    args: str  # everything after the keyword, continuation lines joined
    stage: int  # index of the FROM this instruction belongs to (-1 before the first)
    comment: str  # the comment lines directly above it, joined


def read_dockerfile(text: str) -> list[Instruction]:
    """Parse a Dockerfile into instructions (comments kept, backslash continuations joined)."""
    instructions: list[Instruction] = []
    comments: list[str] = []
    pending: list[str] = []
    stage = -1
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and line.startswith("#"):
            comments.append(line.lstrip("#").strip())
            continue
        if not line:
            if not pending:
                comments = []
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continuation are dropped, as Docker does
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        keyword, _, args = " ".join(pending).partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage, "\n".join(comments)))
        pending, comments = [], []
    assert not pending, "Dockerfile ends inside a continuation line"
    return instructions


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return read_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(dockerfile: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in dockerfile)
    return [i for i in dockerfile if i.stage == last]


def only(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in instructions if i.keyword == keyword]


def exec_form(args: str) -> list[str]:
    """The JSON-array (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD, or a test failure."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        pytest.fail(f"not in exec form (a JSON array): {args}")
    assert isinstance(value, list) and value and all(isinstance(v, str) for v in value), args
    return value


def test_dockerfile_is_multi_stage_with_named_builder(dockerfile: list[Instruction]) -> None:
    froms = only(dockerfile, "FROM")
    assert len(froms) >= 2
    assert re.fullmatch(r"python:3\.11-slim\S*\s+AS\s+builder", froms[0].args, re.IGNORECASE)
    assert froms[-1].args.split()[0].startswith("python:3.11-slim")


def test_builder_turns_the_project_into_wheels(dockerfile: list[Instruction]) -> None:
    builder_runs = [i.args for i in only(dockerfile, "RUN") if i.stage == 0]
    assert any(re.search(r"pip wheel .*--wheel-dir[ =]/wheels", run) for run in builder_runs)


def test_final_stage_installs_only_the_builders_wheels(final_stage: list[Instruction]) -> None:
    installs = [i.args for i in only(final_stage, "RUN") if "pip install" in i.args]
    assert installs, "the final stage must pip install the wheels"
    for run in installs:
        assert "--no-index" in run and "/wheels" in run, run
    for copy in only(final_stage, "COPY"):
        assert "--from=builder" in copy.args, f"final stage copies the build context: {copy.args}"


def test_final_user_is_not_root(final_stage: list[Instruction]) -> None:
    users = only(final_stage, "USER")
    assert users, "the final stage must switch to an unprivileged USER"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}
    assert user in {"switchboard", "10001"}


def test_tini_is_pid_1(final_stage: list[Instruction]) -> None:
    [entrypoint] = only(final_stage, "ENTRYPOINT")
    assert exec_form(entrypoint.args) == ["/usr/bin/tini", "--"]
    assert any(re.search(r"apt-get install .*\btini\b", i.args) for i in only(final_stage, "RUN"))


def test_cmd_runs_the_daemon_in_exec_form(final_stage: list[Instruction]) -> None:
    [cmd] = only(final_stage, "CMD")
    assert exec_form(cmd.args) == ["switchboard", "run", "--config", CONFIG_PATH]


def test_healthcheck_asks_the_daemon_for_its_status(final_stage: list[Instruction]) -> None:
    [healthcheck] = only(final_stage, "HEALTHCHECK")
    options, _, command = healthcheck.args.partition("CMD ")
    assert command, f"HEALTHCHECK without CMD: {healthcheck.args}"
    argv = exec_form(command)
    assert argv[:2] == ["switchboard", "status"] and "--json" in argv
    assert "--timeout=" in options


def test_stopsignal_is_sigterm(final_stage: list[Instruction]) -> None:
    [stopsignal] = only(final_stage, "STOPSIGNAL")
    assert stopsignal.args == "SIGTERM"


def test_state_lives_in_a_volume(final_stage: list[Instruction]) -> None:
    volumes = " ".join(i.args for i in only(final_stage, "VOLUME"))
    assert "/var/lib/switchboard" in volumes
    envs = " ".join(i.args for i in only(final_stage, "ENV"))
    assert "SWITCHBOARD_GATEWAY__STATE_DIR=/var/lib/switchboard" in envs


def test_no_secret_looking_file_is_copied(dockerfile: list[Instruction]) -> None:
    assert not only(dockerfile, "ADD"), "use COPY (ADD fetches URLs and unpacks archives)"
    for copy in only(dockerfile, "COPY"):
        sources = [s for s in copy.args.split()[:-1] if not s.startswith("--")]
        for source in sources:
            assert not SECRET_LOOKING.search(source), f"COPY of a secret-looking file: {copy.args}"


def test_no_port_exposed_without_an_explaining_comment(dockerfile: list[Instruction]) -> None:
    for expose in only(dockerfile, "EXPOSE"):
        assert "gateway.control.listen" in expose.comment, f"EXPOSE {expose.args} needs a comment"
    text = DOCKERFILE.read_text()
    assert "EXPOSE 8787" in text and "0.0.0.0" in text, "document how to expose the TCP listener"


# --- .dockerignore ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [".git", ".venv", "**/__pycache__", ".pytest_cache", ".hypothesis", "bench/results",
     "state", "**/*.db", "**/*.db-wal", ".env", "**/*.token", "secrets", "**/switchboard.toml"],
)
def test_dockerignore_keeps_out(pattern: str) -> None:
    lines = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert pattern in lines


def test_dockerignore_does_not_reinclude_anything() -> None:
    assert not [line for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")]


# --- the systemd unit --------------------------------------------------------------------------


def read_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Parse a unit file: section -> [(key, value)], repeated keys kept in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        line, logical = logical + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"assignment outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {line}"
        current.append((key.strip(), value.strip()))
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, list[tuple[str, str]]]:
    return read_unit(UNIT.read_text())


@pytest.fixture(scope="module")
def service(unit: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    """[Service] with the last assignment of each key winning, as systemd does for scalars."""
    return dict(unit["Service"])


def seconds(timespan: str) -> float:
    units = {"": 1, "s": 1, "sec": 1, "ms": 0.001, "m": 60, "min": 60}
    total = 0.0
    for number, unit_name in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", timespan):
        total += float(number) * units[unit_name]
    return total


def test_unit_is_a_notify_service_owned_by_the_main_process(service: dict[str, str]) -> None:
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"


def test_unit_runs_the_daemon_with_the_etc_config(service: dict[str, str]) -> None:
    argv = service["ExecStart"].split()
    assert argv[0].startswith("/") and argv[0].endswith("/switchboard")
    assert argv[1:] == ["run", "--config", CONFIG_PATH]


def test_reload_sends_sighup(service: dict[str, str]) -> None:
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_watchdog_and_restart_policy(service: dict[str, str]) -> None:
    assert service["WatchdogSec"] == "30"
    assert service["Restart"] == "on-failure"
    assert seconds(service["RestartSec"]) > 0


def test_stop_timeout_covers_the_daemons_own_shutdown_bound(service: dict[str, str]) -> None:
    # accounts stop within stop_timeout (10 s), then the outbox flush (up to 10 s)
    assert seconds(service["TimeoutStopSec"]) > 20
    assert "stop_timeout" in UNIT.read_text()


def test_unit_directories_and_user(service: dict[str, str]) -> None:
    assert service["StateDirectory"] == "switchboard"
    assert service["ConfigurationDirectory"] == "switchboard"
    assert service["RuntimeDirectory"] == "switchboard"
    assert service["User"] == "switchboard" and service["Group"] == "switchboard"
    assert service.get("DynamicUser", "no") == "no"
    assert service["UMask"] == "0077"


def test_unit_points_state_dir_at_the_state_directory(
    unit: dict[str, list[tuple[str, str]]],
) -> None:
    environment = [value for key, value in unit["Service"] if key == "Environment"]
    assert "SWITCHBOARD_GATEWAY__STATE_DIR=/var/lib/switchboard" in environment


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
    ],
)
def test_unit_hardening(service: dict[str, str], key: str, value: str) -> None:
    assert service.get(key) == value


def test_memory_deny_write_execute_is_a_documented_choice(service: dict[str, str]) -> None:
    if service.get("MemoryDenyWriteExecute") != "yes":
        assert "#MemoryDenyWriteExecute=yes" in UNIT.read_text(), "say why W^X is off"


def test_unit_installs_into_multi_user_target(unit: dict[str, list[tuple[str, str]]]) -> None:
    assert ("WantedBy", "multi-user.target") in unit["Install"]


def test_override_example_only_holds_service_settings() -> None:
    sections = read_unit(uncommented_assignments(UNIT_OVERRIDE_EXAMPLE.read_text()))
    assert set(sections) == {"Service"}


# --- systemd-analyze verify ---------------------------------------------------------------------


def uncommented_assignments(text: str) -> str:
    """The example drop-in with its commented-out `#Key=value` lines switched on."""
    return re.sub(r"(?m)^#([A-Z][A-Za-z]*=)", r"\1", text)


def verify_complaints(systemd_analyze: str, unit_dir: Path, unit_name: str) -> list[str]:
    """Lines of `systemd-analyze verify` output that concern our unit (or its drop-ins)."""
    result = subprocess.run(
        [systemd_analyze, "verify", str(unit_dir / unit_name)],
        capture_output=True,
        text=True,
        timeout=60,
        # A trailing ':' appends the default unit path, so After=/Wants= targets resolve.
        env={"SYSTEMD_UNIT_PATH": f"{unit_dir}:", "SYSTEMD_LOG_COLOR": "0", "PATH": "/usr/bin"},
    )
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if unit_name in line or str(unit_dir) in line]


@pytest.fixture
def systemd_analyze() -> Iterator[str]:
    path = shutil.which("systemd-analyze")
    if path is None:
        tool_unavailable("systemd-analyze not installed: `apt-get install -y systemd` provides it; "
                         "the unit's keys are then checked by systemd's own parser")
    yield path


def runnable_unit_copy(unit_dir: Path) -> Path:
    # verify rejects an ExecStart binary that does not exist; the installed path
    # (/usr/local/bin/switchboard) is not there on a build machine.
    text = re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={sys.executable}", UNIT.read_text())
    assert f"ExecStart={sys.executable} run --config" in text
    path = unit_dir / "switchboard.service"
    path.write_text(text)
    return path


def test_systemd_analyze_verify_accepts_the_unit(systemd_analyze: str, tmp_path: Path) -> None:
    runnable_unit_copy(tmp_path)
    assert verify_complaints(systemd_analyze, tmp_path, "switchboard.service") == []


def write_override_example(unit_dir: Path, extra: str = "") -> None:
    dropins = unit_dir / "switchboard.service.d"
    dropins.mkdir()
    override = uncommented_assignments(UNIT_OVERRIDE_EXAMPLE.read_text())
    # Keep the runnable ExecStart of the copy: drop the example's ExecStart lines.
    override = re.sub(r"(?m)^ExecStart=.*\n", "", override)
    (dropins / "override.conf").write_text(override + extra)


def test_systemd_analyze_verify_accepts_the_override_example(
    systemd_analyze: str, tmp_path: Path
) -> None:
    runnable_unit_copy(tmp_path)
    write_override_example(tmp_path)
    assert verify_complaints(systemd_analyze, tmp_path, "switchboard.service") == []


def test_systemd_analyze_verify_reports_a_bad_key(systemd_analyze: str, tmp_path: Path) -> None:
    """Guard against a verify that silently checks nothing (wrong unit path, unread drop-in)."""
    path = runnable_unit_copy(tmp_path)
    path.write_text(path.read_text().replace("[Service]\n", "[Service]\nNotifyAcces=main\n"))
    write_override_example(tmp_path, extra="WatchdogSecs=30\n")
    complaints = verify_complaints(systemd_analyze, tmp_path, "switchboard.service")
    assert any("NotifyAcces" in line for line in complaints), complaints
    assert any("WatchdogSecs" in line for line in complaints), complaints
