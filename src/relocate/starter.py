"""Write a commented starter relocate.yaml from what `relocate discover` found.

Pure text generation. What discover cannot know (the target, database passwords, which
EC2 paths matter) is a placeholder or a commented-out line with what to fill in, so the
file validates and plans as written, and moves nothing the user has not looked at.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections import Counter
from typing import Any

from relocate.plan.build import human_bytes
from relocate.sources.discover import TIES, Discovery

# Priorities from a bucket's name, and why (the why is written beside each bucket).
# A name may promote, but demotes only what is re-creatable from other data: a bucket
# named "backups" or "archive" may hold the ONLY copy of something (a database's dumps,
# data deleted from the live store), so it goes first, never last.
_ONLY_COPY_HINT = re.compile(r"backup|archive|dump|snapshot|export|vault|restore", re.I)
_RECREATABLE_HINT = re.compile(r"cache|tmp|temp|thumb|resized|derived", re.I)
_LOG_HINT = re.compile(r"log", re.I)


def bucket_priority(name: str) -> tuple[str, str]:
    """(priority, why) for a discovered bucket, from its name alone: a guess the user must check."""
    if m := _ONLY_COPY_HINT.search(name):
        return "critical", (f"critical: named like {m.group(0)!r}, it may hold the only copy of data "
                            "(a database's backups, files deleted elsewhere): moved first")
    if m := _RECREATABLE_HINT.search(name):
        return "bulk", (f"bulk: named like {m.group(0)!r}, usually re-creatable from other data; moved last "
                        "when time is short. Make it normal if nothing else can rebuild it")
    if _LOG_HINT.search(name):
        return "normal", "normal: logs may be the only record of what happened; not demoted"
    return "normal", "normal: nothing in its name says otherwise; critical makes it go first"
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def q(value: Any) -> str:
    """A YAML scalar: JSON strings are valid double-quoted YAML and escape everything."""
    return json.dumps(value, ensure_ascii=False)


def _oneline(text: Any) -> str:
    """Text for a comment: a tag value with a newline must not start a YAML line of its own."""
    return " ".join(str(text).split())


def _app_name(d: Discovery) -> str:
    words = [re.split(r"[-_.]", b["name"])[0] for b in d.items("s3")]
    words += [re.split(r"[-_./]", i["id"])[0] for i in d.items("rds_instances")]
    common = Counter(w for w in words if w).most_common(1)
    return common[0][0] if common else "app"


def _param_paths(names: list[str]) -> list[str]:
    """Group parameter names into a few `path:` prefixes (two levels deep), none nested in another."""
    paths: set[str] = set()
    for name in names:
        parts = [p for p in name.split("/") if p]
        if not name.startswith("/") or len(parts) < 2:
            continue
        paths.add("/" + "/".join(parts[: min(2, len(parts) - 1)]) + "/")
    return sorted(p for p in paths if not any(o != p and p.startswith(o) for o in paths))


def starter_yaml(d: Discovery, *, profile: str | None = None, endpoint_url: str | None = None) -> str:
    app = _app_name(d)
    region = d.regions[0]
    out: list[str] = [
        "# relocate.yaml: a starter written by `relocate discover`. Read every line: it",
        "# lists what the account holds; fill in the target and uncomment what should move.",
        "# Validate and see the plan with: relocate plan --probe",
        "version: 1",
        "app:",
        f"  name: {q(app)}",
        "  # content: [user_generated_content]   # categories: relocate profiles list --categories",
        "source:",
        "  aws:",
        f"    region: {q(region)}",
    ]
    if profile:
        out.append(f"    profile: {q(profile)}")
    if endpoint_url:
        out.append(f"    endpoint_url: {q(endpoint_url)}")

    buckets = d.items("s3")
    if buckets:
        out += ["  # priority: critical goes first when time runs short, bulk last (relocate plan --deadline).",
                "  # The same bucket may be listed again with a `prefix:` and its own priority and `to:`;",
                "  # each key goes to the entry with the longest prefix it starts with (never twice).",
                "  # An object lands at <root>/<to>/<key> (the prefix stays in the path); add",
                "  # `strip_prefix: true` to an entry with a prefix for <root>/<to>/<key without it>.",
                "  # A versioned bucket moves its current objects; `versions: all` also older versions.",
                "  s3:"]
        for b in buckets:
            size = f"{human_bytes(b['bytes'])}, {b['objects']} objects ({b['size_from']})" if b.get("bytes") is not None else "size unknown"
            notes = [f"versioning {b['versioning']}", f"encryption {b['encryption']}"]
            if b.get("lifecycle_rules"):
                notes.append(f"{b['lifecycle_rules']} lifecycle rule(s): recreate as cron jobs")
            if b.get("website") is True:
                notes.append("website hosting: serve it from the new host")
            if b.get("region") not in (None, region):
                notes.append(f"in {b['region']}")
            out.append(f"    # {_oneline(size + '; ' + '; '.join(notes))}")
            priority, why = bucket_priority(b["name"])
            out.append(f"    # priority {_oneline(why)}")
            out.append(f"    - {{bucket: {q(b['name'])}, to: {q('data/' + _SLUG.sub('_', b['name']))}, priority: {priority}}}")

    params = [p["name"] for p in d.items("ssm")]
    paths = _param_paths(params)
    if params:
        out.append(f"  # {len(params)} SSM parameter(s) (names only were read; values are read during `move`)")
        loose = [n for n in params if not any(n.startswith(p) for p in paths)]
        if loose:
            out.append(f"  # not under a two-level path, add by hand: {_oneline(', '.join(loose[:10]))}" + (" ..." if len(loose) > 10 else ""))
    if paths:
        out.append("  parameters:")
        for p in paths:
            slug = _SLUG.sub("_", p.strip("/").replace("/", "_"))
            out.append(f"    - {{path: {q(p)}, to: {q(f'shared/{slug}.env')}}}")
    secrets = d.items("secrets")
    if secrets:
        out.append(f"  # {len(secrets)} Secrets Manager secret(s); JSON secrets become one variable per top-level key")
        out.append("  secrets:")
        for s in secrets:
            out.append(f"    - {{name: {q(s['name'])}, to: \"shared/secrets.env\"}}")

    dbs = d.items("rds_instances")
    if dbs or d.items("rds_clusters"):
        # Listed, not commented out: a database is often the one copy of the app's data, and a
        # commented line is easy to forget on the worst day. Until password_from (and via:) are
        # filled in, `relocate plan` reports it as a blocker instead of saying Ready without it.
        out += ["  # DATABASES: often the only copy of the app's data. They are listed so that the plan",
                "  # BLOCKS until each can be read: set password_from (secret:NAME#password, ssm:/name or",
                "  # env:VAR) and, when the endpoint is private, via: a bastion from source.bastions.",
                "  # Remove an entry only if you have decided not to move that database.",
                "  databases:"]
        for db in dbs:
            engine = "mysql" if "mysql" in (db.get("engine") or "") else ("mariadb" if "mariadb" in (db.get("engine") or "") else "postgres")
            out.append(f"    - {{rds: {q(db['id'])}, engine: {engine}, password_from: \"secret:CHANGE-ME#password\"}}"
                       "   # " + _oneline(f"{db.get('engine')} {db.get('version')}, {db.get('storage_gb')} GB, {db.get('class')}"))
        for c in d.items("rds_clusters"):
            out.append(f"    # cluster {_oneline(c['id'])} ({c.get('engine')} {c.get('version')}): list one member instance here")
        if not dbs:
            out[-len(d.items("rds_clusters")) - 1] = "  # databases:   (list a cluster's member instance: rds: ID)"

    hosts = d.items("ec2")
    if hosts:
        out += ["  # EC2 instances: copy the config and data paths that matter (uncomment and edit).",
                "  # hosts:"]
        for h in hosts:
            addr = h.get("public_ip") or h.get("private_ip") or h["id"]
            vols = ", ".join(f"{v.get('device')} {v.get('size_gb')} GB" for v in h.get("volumes") or ())
            name = _SLUG.sub("_", h.get("name") or h["id"])
            out.append(f"  #   - {{ssh: {q('ec2-user@' + addr)}, paths: [/etc], to: {q('data/hosts/' + name)}}}"
                       "   # " + _oneline(f"{h.get('name') or h['id']}, {h.get('type')}, {h.get('state')}; volumes: {vols or 'none'}"))

    zones = d.items("route53")
    public = [z for z in zones if not z.get("private")]
    if public:
        out.append("  dns:")
        for z in public:
            out.append(f"    - {{zone: {q(z['name'])}}}   # {z.get('records')} records")
    for z in zones:
        if z.get("private"):
            out.append(f"  # private zone {_oneline(z['name'])} ({z.get('records')} records): recreate on the new network")

    out += [
        "target:",
        "  # Placeholders: the host you move to. `relocate check` lists providers whose terms accept the app.",
        "  # provider: hetzner",
        "  ssh:",
        "    host: \"203.0.113.10\"   # CHANGE ME (a documentation address)",
        "    user: deploy",
        "    # identity_file: ~/.ssh/id_ed25519",
        "    # host_key: \"SHA256:...\"   # from `ssh-keygen -lf` on the host; or --accept-new-host-key once",
        f"  root: {q(posixpath.join('/srv', _SLUG.sub('_', app)))}",
    ]
    if dbs:
        first = _SLUG.sub("_", dbs[0]["id"])
        out += ["  # The database server on the target (psql/mysql run there over SSH). CHANGE ME.",
                f"  database: {{url: {q(f'postgresql://{first}@127.0.0.1:5432/{first}')}, password_from: \"env:TARGET_DB_PASSWORD\"}}"]
    ties = [(k, why) for k, why in TIES.items() if d.items(k)]
    if ties:
        out += ["", "# Services that tie the app to AWS; relocate does not move these, plan their replacement:"]
        for kind, why in ties:
            names = [str(i.get("name") or i.get("domain") or i.get("identity") or i.get("id") or i.get("service") or "?") for i in d.items(kind)]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            out.append(f"#   {kind} ({len(names)}: {_oneline(shown)}): {why}")
    if d.failures:
        out += ["", "# Not inventoried (see `relocate discover` output):"]
        out += [f"#   {f.kind} in {f.region}: {_oneline(f.error)}" for f in d.failures[:20]]
    return "\n".join(out) + "\n"
