"""The `env` kind: env files made from SSM parameters (`source.parameters`) and Secrets
Manager secrets (`source.secrets`), one step per file under target.root.

gather: the parameter and secret names and versions (never values), which files the
target holds as this move would write them, and which of their directories have another
mode than target.env_dir_mode (execute/gather.py) -- plan: one step per file,
pure -- apply: read the values, render the file, write it 0600 from its first byte, record
what it was made from, set its directory to target.env_dir_mode -- verify: the file's mode,
its directory's mode, and its sha256 against the snapshot's encrypted copy.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import TYPE_CHECKING, Any

from relocate.config import Config
from relocate.execute.envfiles import EnvFile, env_name, secret_vars
from relocate.execute.gather import OWNED_MODE_FN
from relocate.kinds import Check, Context, Kind, Outcome, PlanPart
from relocate.plan.model import Finding, Step
from relocate.snapshot import crypto
from relocate.snapshot.store import Snapshot
from relocate.sources.inventory import Inventory, fetch_parameters, fetch_secret
from relocate.targets import files, layout
from relocate.ssh.connection import Connection

if TYPE_CHECKING:
    from relocate.execute.verify import VerifyReport

KIND = "env"


def env_step_id(path: str) -> str:
    return f"env:{path}"


def plan_env(inventory: Inventory, env_same: set[str] | frozenset[str] = frozenset(),
             dirs: dict[str, int] | None = None, dir_mode: int = 0o700) -> PlanPart:
    """Pure: a step per env file, in relocate.yaml's order; `env_same` names the files the
    target holds as this move would write them (nothing to do); `dirs` the env files whose
    directory the login owns with another mode than `dir_mode` (target.env_dir_mode),
    which the move sets back: a change even when the file itself is unchanged.

    A step's count is of the parameters and secrets the file is made from, never of its
    variables: a JSON secret gives one variable per top-level key, and how many keys it
    holds is known only once its value is read, which the plan never does (README, "Where
    things land on the target")."""
    part = PlanPart()
    dirs = dirs or {}
    sources: dict[str, list[str]] = {}
    params: dict[str, int] = {}
    secrets: dict[str, int] = {}
    for p in inventory.parameters:
        sources.setdefault(p.spec.to, []).append(f"ssm:{p.spec.path}")
        params[p.spec.to] = params.get(p.spec.to, 0) + len(p.items)
        if not p.items:
            part.warnings.append(Finding("empty-source", f"no SSM parameters under {p.spec.path}"))
    for s in inventory.secrets:
        sources.setdefault(s.spec.to, []).append(f"secret:{s.spec.name}")
        secrets[s.spec.to] = secrets.get(s.spec.to, 0) + 1
    for path, names in sources.items():
        same = path in env_same
        count = params.get(path, 0) + secrets.get(path, 0)
        made_of = f"{params.get(path, 0)} parameter(s) and {secrets.get(path, 0)} secret(s)"
        fix = (f"set directory {posixpath.dirname(path)} to mode {dir_mode:04o} (it is {dirs[path]:04o}; "
               "target.env_dir_mode)") if path in dirs else ""
        if same and not fix:
            detail, change = ("nothing to do: the same parameter and secret versions as the last move, and the file on "
                              "the target unchanged"), ""
        elif same:
            # the file stays; the move still reads the values to confirm it (apply compares the content)
            detail, change = f"the file is unchanged; {fix}", fix
        else:
            detail = (f"from {made_of} (counted, not their variables: a JSON secret gives one per key, read only by the "
                      "move); mode 0600; values never printed" + (f"; {fix}" if fix else ""))
            change = f"write env file {path} (0600, from {made_of})" + (f"; {fix}" if fix else "")
        part.steps.append(Step(
            id=env_step_id(path), kind=KIND, source=", ".join(names), dest=path, count=count,
            todo_count=0 if same and not fix else count, est_seconds=0.5 + 0.05 * count,
            detail=detail, change=change,
        ))
    return part


class EnvFiles(Kind):
    name = KIND

    def enabled(self, config: Config) -> bool:
        return bool(config.parameters or config.secrets)

    def gather(self, ctx: Context) -> Any:
        return ctx.gathered  # execute/gather.py read the names, versions and the target's record

    def plan(self, ctx: Context, gathered: Any) -> PlanPart:
        return (plan_env(gathered.inventory, gathered.env_same, gathered.env_dirs, ctx.config.env_dir_mode)
                if gathered is not None else PlanPart())

    def apply(self, ctx: Context, gathered: Any, step: Step) -> Outcome:
        from relocate.execute.gather import ENV_RECORD, env_digests

        config, conn, run = ctx.config, ctx.conn, ctx.run
        assert run is not None, "apply runs inside the runner"
        path = step.dest
        env = EnvFile(path)
        for p in config.parameters:
            if p.to == path:
                for rel, value in fetch_parameters(ctx.aws, p):
                    env.add(env_name(rel), value, f"ssm:{p.path}{rel}")
        for s in config.secrets:
            if s.to == path:
                for name, value in secret_vars(s.name, fetch_secret(ctx.aws, s)):
                    env.add(name, value, f"secret:{s.name}")
        content = env.render()
        run.secret_files[path] = content
        remote = posixpath.join(config.root, path)
        current = files.read_file(conn, remote)
        changed = not (current is not None and current[0] == content and not current[1] & 0o077)
        warnings = list(env.conflicts)
        if changed or (path in gathered.env_dirs and step.change):
            # The env file's directory is private (0700 unless target.env_dir_mode says
            # otherwise), set again on a directory the login owns whose mode the plan
            # found wrong (a change the gate approved: a saved plan made before the mode
            # went wrong has none, and `verify` reports it); the file is 0600 from its
            # first byte (files.write_file_atomic).
            was = files.private_dir(conn, config.root, posixpath.dirname(remote), config.env_dir_mode, config.allowed_links)
            if was is not None:
                warnings.append(f"{posixpath.dirname(path)}: mode {was:04o} set back to {config.env_dir_mode:04o} "
                                "(target.env_dir_mode)")
                if not changed:  # the runner counts env files written, not this: a change all the same (a snapshot)
                    run.report.components_changed += 1
        if changed:
            files.write_file_atomic(conn, remote, content, mode=0o600, root=config.root, allow=config.allowed_links)
            run.report.env_written.append(path)
        else:
            run.report.env_unchanged.append(path)
        # What the env file was made from (versions, never values): the next plan compares.
        record = gathered.env_record
        entry = {"sources": env_digests(config, gathered.inventory).get(path, ""), "sha256": hashlib.sha256(content).hexdigest()}
        if record.get(path) != entry:
            record[path] = entry
            files.write_file_atomic(conn, posixpath.join(layout.state_dir(config.root), ENV_RECORD),
                                    json.dumps(record, indent=1).encode(), mode=0o600)  # hashes of secret files: 0600 like them
        # dir_mode: what verify expects of the file's directory (when the login owns it)
        return Outcome(changed, {"path": path, "vars": list(env.vars), "sources": sorted(set(env.origins.values())),
                                 "dir_mode": f"{config.env_dir_mode:04o}"}, warnings=warnings)

    def record(self, manifest: dict[str, Any], step: Step, outcome: Outcome) -> None:
        manifest.setdefault("env_files", []).append(outcome.manifest)


KIND_CLASS = EnvFiles


# Each env directory's mode, for the directories the login owns ([ -O ]): relocate sets
# only those (files.private_dir), so only those can differ from target.env_dir_mode.
# The directories come on stdin (files.over_items), never on the command line.
_OWNED_DIR_MODES = OWNED_MODE_FN + r"""
for d in "$@"; do printf '%s\t%s\0' "$(relocate_owned_mode "$d")" "$d"; done
exit 0
"""


def _verify_dirs(conn: Connection, root: str, envs: list[dict[str, Any]], report: "VerifyReport") -> None:
    """A failed check per env directory (below the root, the login's) whose mode is not the
    one the snapshot's move set (`dir_mode`; snapshots from before it was recorded: none)."""
    want: dict[str, str] = {}
    top = root.rstrip("/") or "/"
    for env in envs:
        d = posixpath.dirname(posixpath.join(root, env["path"]))
        if env.get("dir_mode") and d != top:
            want[d] = env["dir_mode"]
    if not want:
        return
    cmd, stdin = files.over_items("", _OWNED_DIR_MODES, [], want)
    for item in conn.run(cmd, stdin, timeout=120).stdout.split(b"\0"):
        mode, _, d = item.decode("utf-8", "surrogateescape").partition("\t")
        if d in want and mode.isdigit() and int(mode, 8) != int(want[d], 8):
            rel = posixpath.relpath(d, root)
            report.checks.append(Check(f"env directory {rel}", False, f"mode {int(mode, 8):04o}, not {want[d]} "
                                       "(target.env_dir_mode): `relocate move` sets it back"))


def verify_env(conn: Connection, root: str, snap: Snapshot, manifest: dict[str, Any], identity: Any,
               report: "VerifyReport") -> None:
    # an env file the move could never write (a file where its directory must go...): the
    # runner filed its step as failed (execute/runner.py); never an OK while it is not there
    report.failed.extend({"path": f["path"], "error": f["error"]} for f in manifest.get("failed_steps") or []
                         if isinstance(f, dict) and f.get("kind") == KIND)
    _verify_dirs(conn, root, manifest.get("env_files", []), report)
    expected: dict[str, str] = {}
    if identity is not None and snap.secrets_path.exists():
        expected = json.loads(crypto.decrypt(snap.secrets_path.read_bytes(), identity))
    for env in manifest.get("env_files", []):
        path = env["path"]
        got = files.read_file(conn, posixpath.join(root, path))
        if got is None:
            report.env[path] = "missing"
        elif got[1] & 0o077:
            report.env[path] = "bad-mode"
        elif path not in expected:
            report.env[path] = "not-compared"
        else:
            same = hashlib.sha256(got[0]).digest() == hashlib.sha256(expected[path].encode()).digest()
            report.env[path] = "ok" if same else "differs"
