#!/usr/bin/env python3
"""Cross-checks the names the Rust code reads against what Terraform, Packer, the systemd units
and GitLab CI set, and fails on any mismatch.

The code side is read from the sources (clap `env = "EWS_..."` attributes with their defaults, the
scalers' configuration lookups, route literals, [[bin]] names); the infrastructure side from the
HCL (python-hcl2), the unit files and the CI YAML. A binary whose code is not there yet is checked
against the names contract (README/common brief) instead, with a warning.

Usage: crosscheck.py [REPO_ROOT]    (run with the `hcl2` venv's python)
"""

from __future__ import annotations

import configparser
import os
import re
import sys
import tomllib
from pathlib import Path

import hcl2

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]).resolve()
# Every contract name is read by the code now, so a name the code does not read is an error.
# EWS_CROSSCHECK_STRICT=0 relaxes that to a warning for contract names (while a crate is rewritten).
STRICT = os.environ.get("EWS_CROSSCHECK_STRICT", "1") != "0"
errors: list[str] = []
warnings: list[str] = []

# The names contract, used only while a binary's code has not landed.
CONTRACT = {
    "ews-worker": {
        "EWS_LISTEN": "0.0.0.0:8080", "EWS_ADMIN_LISTEN": "0.0.0.0:9090",
        "EWS_INTERNAL_LISTEN": "0.0.0.0:7070", "EWS_DRAIN_SECONDS": "30",
        "EWS_PING_INTERVAL_SECS": "30", "EWS_STANDALONE": None, "EWS_NO_AUTH": None,
        "EWS_JWT_HS256_SECRET": None, "EWS_JWT_HS256_SECRET_FILE": None,
        "EWS_JWT_PUBLIC_KEY_FILE": None, "EWS_JWKS_URL": None, "EWS_JWT_ISSUER": None,
        "EWS_JWT_AUDIENCE": None, "EWS_JWT_LEEWAY_SECS": None, "EWS_MAX_CONNECTIONS": None,
        "EWS_SINK": "queue", "EWS_SINK_FILE": None, "EWS_KAFKA_BROKERS": None,
        "EWS_KAFKA_TOPIC": "events", "EWS_QUEUE_NAME": "events", "EWS_QUEUE_DIR": None,
    },
    "ews-leader": {
        "EWS_ADMIN_LISTEN": "0.0.0.0:9090", "EWS_INTERNAL_LISTEN": "0.0.0.0:7070",
        "EWS_PUBLISH_METRIC": None, "EWS_CLOUDWATCH_NAMESPACE": "ElasticWS",
        "EWS_CLOUDWATCH_METRIC": "ConnectedClients", "EWS_CLOUDWATCH_INTERVAL_SECS": "60",
        "EWS_QUEUE_DIR": None,
    },
    "cluster": {
        "EWS_NODE_ID": None, "EWS_SEEDS": None, "EWS_ADVERTISE_HOST": None,
        "EWS_GOSSIP_INTERVAL_MS": None, "EWS_SEED_NODE_TIMEOUT_SECS": "10",
        "EWS_SHUTDOWN_AFTER_UNSUCCESSFUL_JOIN_SECS": "100", "EWS_CLUSTER_SECRET": None,
        "EWS_CLUSTER_SECRET_FILE": None,
    },
    "lambdas": {"WS_ASG_NAME", "SCALE_UP_ALARM", "SCALE_DOWN_ALARM", "STEP", "HYSTERESIS",
                "MIN_SIZE", "MAX_SIZE", "THRESHOLDS", "SCALE_IN_COOLDOWN_SECS", "FILL_SECS",
                "BUSY_ALARM"},
    # The termination-policy Lambda (lambdas/src/terminate.rs): its own two.
    "terminate": {"METRIC_NAMESPACE", "DEPLOYMENT"},
}
LAMBDA_REQUIRED = {"WS_ASG_NAME", "SCALE_UP_ALARM", "SCALE_DOWN_ALARM", "STEP", "HYSTERESIS"}
TERMINATE_SRC = ROOT / "lambdas" / "src" / "terminate.rs"
# Read by the AWS SDK inside the binaries, not by our code.
SDK_ENV = {"AWS_REGION"}


def err(msg: str) -> None:
    errors.append(msg)


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


# ----------------------------------------------------------------------------------------------
# Code side
# ----------------------------------------------------------------------------------------------

def strip_tests(src: str) -> str:
    """Source up to the first `#[cfg(test)]`: names only tests mention do not count."""
    i = src.find("#[cfg(test)]")
    return src if i < 0 else src[:i]


def attr_bodies(src: str, names=("arg", "clap")) -> list[str]:
    """Bodies of `#[arg(...)]` attributes, with balanced parentheses (strings respected)."""
    out = []
    for m in re.finditer(r"#\[(?:%s)\(" % "|".join(names), src):
        i, depth, in_str = m.end(), 1, False
        start = i
        while i < len(src) and depth:
            c = src[i]
            if in_str:
                if c == "\\":
                    i += 1
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            i += 1
        out.append(src[start:i - 1])
    return out


def clap_env(src: str) -> dict[str, str | None]:
    """EWS_* names of clap args in `src`, with their defaults (None when there is none)."""
    found: dict[str, str | None] = {}
    for body in attr_bodies(src):
        m = re.search(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', body)
        if not m:
            continue
        d = re.search(r'\bdefault_value\s*=\s*"([^"]*)"', body) or \
            re.search(r"\bdefault_value_t\s*=\s*([^,]+)", body)
        found[m.group(1)] = d.group(1).strip() if d else None
    for m in re.finditer(r'env::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"', src):
        found.setdefault(m.group(1), None)
    return found


def workspace_crates() -> dict[str, Path]:
    """Workspace dependency name -> crate directory (from the root Cargo.toml)."""
    doc = tomllib.loads((ROOT / "Cargo.toml").read_text())
    deps = doc.get("workspace", {}).get("dependencies", {})
    return {n: ROOT / d["path"] for n, d in deps.items() if isinstance(d, dict) and "path" in d}


def crate_sources(crate: Path, main: Path | None = None) -> str:
    """Non-test library source of a crate (each file cut at its `#[cfg(test)]`), plus the one
    binary entry point `main` if given: other binaries' flags are not this binary's."""
    src = crate / "src"
    files = [p for p in sorted(src.rglob("*.rs"))
             if p != src / "main.rs" and (src / "bin") not in p.parents]
    if main is not None and main.is_file():
        files.append(main)
    return "\n".join(strip_tests(p.read_text()) for p in files)


def binaries() -> tuple[dict[str, Path], dict[str, Path]]:
    """Every [[bin]] of the workspace -> its crate directory, and -> its entry point."""
    doc = tomllib.loads((ROOT / "Cargo.toml").read_text())
    bins, mains = {}, {}
    for member in doc["workspace"]["members"]:
        manifest = tomllib.loads((ROOT / member / "Cargo.toml").read_text())
        for b in manifest.get("bin", []):
            bins[b["name"]] = ROOT / member
            mains[b["name"]] = ROOT / member / b.get("path", "src/main.rs")
    return bins, mains


def binary_env(crate: Path, main: Path, ws: dict[str, Path]) -> dict[str, str | None]:
    """Names a binary reads: its crate's library and entry point, plus the libraries of the
    workspace crates it depends on (e.g. ClusterArgs from ews-cluster)."""
    env = clap_env(crate_sources(crate, main))
    manifest = tomllib.loads((crate / "Cargo.toml").read_text())
    for dep in manifest.get("dependencies", {}):
        if dep in ws and ws[dep] != crate:
            for k, v in clap_env(crate_sources(ws[dep])).items():
                env.setdefault(k, v)
    return env


def lambda_env_names(crate: Path, only: Path | None = None) -> set[str]:
    """Names the scalers (or, `only` the termination policy's file) look up: string literals
    passed to env::var / lookup helpers."""
    names = set()
    for p in sorted((crate / "src").rglob("*.rs")):
        if (only is not None and p != only) or (only is None and p == TERMINATE_SRC):
            continue
        src = strip_tests(p.read_text())
        if "env::var" not in src and "from_lookup" not in src and "required(" not in src:
            continue
        names |= set(re.findall(r'\(\s*(?:&?\w+\s*,\s*)?"([A-Z][A-Z0-9_]{2,})"\s*\)', src))
    return names


ws = workspace_crates()
bins, mains = binaries()
code: dict[str, dict[str, str | None]] = {}
for b in ("ews-worker", "ews-leader"):
    if b not in bins:
        err(f"Cargo: no [[bin]] named {b} (the contract's binary name)")
        code[b] = {}
        continue
    env = binary_env(bins[b], mains[b], ws)
    has_cluster = any(k in env for k in CONTRACT["cluster"])
    if not env:
        warnings.append(f"{b}: no clap env names in the code yet; checking against the contract")
        env = dict(CONTRACT[b])
    if not has_cluster:
        warnings.append(f"{b}: cluster flags not found in its code yet; using the contract's")
        env.update(CONTRACT["cluster"])
    code[b] = env



def built_binary(name: str, sources: list[Path]) -> Path | None:
    """A built binary newer than every source it is made of, if there is one."""
    dirs = [Path(d) for d in (os.environ.get("CARGO_TARGET_DIR"),) if d] + [ROOT / "target"]
    newest_src = max((p.stat().st_mtime for p in sources), default=0)
    for d in dirs:
        for profile in ("debug", "release"):
            exe = d / profile / name
            if exe.is_file() and os.access(exe, os.X_OK) and exe.stat().st_mtime >= newest_src:
                return exe
    return None


def help_env(exe: Path) -> set[str] | None:
    """The `[env: NAME=...]` names `--help` prints, or None if it cannot be run."""
    import subprocess
    try:
        out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=20,
                             env={"PATH": os.environ.get("PATH", "")})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(re.findall(r"\[env: ([A-Z][A-Z0-9_]*)", out.stdout)) if out.returncode == 0 else None


# Where a fresh build exists, its --help is the ground truth: names the source scan missed are
# added (and reported), so the comparison below never depends on the scan alone.
for b in ("ews-worker", "ews-leader"):
    if b not in bins:
        continue
    srcs = [p for c in [bins[b]] + [ws[d] for d in tomllib.loads((bins[b] / "Cargo.toml").read_text()).get("dependencies", {}) if d in ws]
            for p in (c / "src").rglob("*.rs")]
    exe = built_binary(b, srcs)
    names = help_env(exe) if exe else None
    if names is None:
        continue
    missed = names - set(code[b])
    if missed:
        warnings.append(f"{b}: --help shows {sorted(missed)} the source scan missed")
        for n in missed:
            code[b][n] = None
    print(f"crosscheck: {b}: {len(names)} env names from {exe} --help")

for b in ("ews-scale-up", "ews-scale-down", "ews-terminate", "ews-sim", "ews-load"):
    if b not in bins:
        err(f"Cargo: no [[bin]] named {b} (the contract's binary name)")
lambda_names = lambda_env_names(bins["ews-scale-up"]) if "ews-scale-up" in bins else set()
if not lambda_names:
    warnings.append("lambdas: no environment lookups found in the code yet; using the contract")
    lambda_names = set(CONTRACT["lambdas"])
for n in LAMBDA_REQUIRED - lambda_names:
    err(f"lambdas: the code does not read {n}, which the contract and Terraform rely on")
terminate_names = lambda_env_names(bins["ews-terminate"], TERMINATE_SRC) if "ews-terminate" in bins else set()
for n in CONTRACT["terminate"] - terminate_names:
    err(f"lambdas: the termination policy does not read {n}, which Terraform sets")

worker_src = crate_sources(bins["ews-worker"], mains["ews-worker"]) if "ews-worker" in bins else ""


def default_port(binary: str, name: str) -> int | None:
    v = code[binary].get(name)
    if v is None:
        return None
    m = re.search(r":(\d+)\"?$", v)
    return int(m.group(1)) if m else None


def default_num(binary: str, name: str) -> int | None:
    v = code[binary].get(name)
    return int(v) if v is not None and re.fullmatch(r"\d+", v) else None


# ----------------------------------------------------------------------------------------------
# Terraform side
# ----------------------------------------------------------------------------------------------

def unq(v):
    """python-hcl2 keeps HCL quotes on keys and strings; drop them."""
    if isinstance(v, dict):
        return {unq(k): unq(x) for k, x in v.items() if k != "__comments__"}
    if isinstance(v, list):
        return [unq(x) for x in v]
    if isinstance(v, str) and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    return v


def load_tf(path: Path) -> dict:
    try:
        with path.open() as f:
            return unq(hcl2.load(f))
    except Exception as e:  # a parse error is a finding, not a crash
        err(f"{rel(path)}: does not parse as HCL: {e}")
        return {}


TF = ROOT / "terraform"
tf_files = sorted(p for p in TF.rglob("*.tf") if ".terraform" not in p.parts)
tf = {p: load_tf(p) for p in tf_files}
if not tf_files:
    err("terraform/: no .tf files")


def blocks(kind: str, path: Path | None = None):
    """(labels..., body) for every block of `kind` (resource, data, variable, ...)."""
    for p, d in tf.items():
        if path is not None and p != path:
            continue
        for entry in d.get(kind, []):
            for k1, v1 in entry.items():
                if kind in ("resource", "data"):
                    for k2, body in v1.items():
                        yield p, k1, k2, body
                else:
                    yield p, k1, None, v1


def locals_of(path: Path) -> dict:
    out = {}
    for entry in tf.get(path, {}).get("locals", []):
        out.update(entry)
    return out


def variable_default(path: Path, name: str):
    for _, vname, _, body in blocks("variable", path):
        if vname == name:
            return body.get("default")
    err(f"{rel(path)}: variable {name} missing")
    return None


def keys_in(expr: str) -> set[str]:
    """Map keys written in an HCL object expression (as python-hcl2 renders it)."""
    return set(re.findall(r"\b([A-Z][A-Z0-9_]*)\s*=(?!=)", expr))


def ews_keys(path: Path) -> set[str]:
    """EWS_* keys assigned anywhere in a .tf file (maps of settings for /etc/ews/ews.env)."""
    return set(re.findall(r"\b(EWS_[A-Z0-9_]+)\s*=(?!=)", path.read_text()))


def file_form(name: str) -> str:
    """A `NAME_SSM_PARAMETER` or `NAME_B64` setting reaches the binary as `NAME_FILE`
    (packer/files/ews-configure)."""
    for suffix in ("_SSM_PARAMETER", "_B64"):
        if name.endswith(suffix):
            return name[: -len(suffix)] + "_FILE"
    return name


# Names the packer runtime scripts read from /etc/ews/ews.env (units with that EnvironmentFile).
FILES = ROOT / "packer" / "files"
script_reads: dict[str, set[str]] = {"ews-worker": set(), "ews-leader": set()}
units: dict[str, configparser.ConfigParser] = {}
for unit in sorted(FILES.glob("*.service")) if FILES.is_dir() else []:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(unit)
    units[unit.name] = cp
for name, cp in units.items():
    svc = cp["Service"] if cp.has_section("Service") else {}
    if svc.get("EnvironmentFile") != "/etc/ews/ews.env" or name in ("ews-worker.service", "ews-leader.service"):
        continue
    script = FILES / Path(svc.get("ExecStart", "")).name
    if script.is_file():
        reads = set(re.findall(r"\$\{?(EWS_[A-Z0-9_]+)", script.read_text()))
        role = "ews-worker" if "worker" in (cp["Unit"].get("After", "") + cp["Unit"].get("Description", "")) else "ews-leader"
        script_reads[role] |= reads

# Names ews-configure takes from the user data for itself (e.g. EWS_DATA_VOLUME_ID): read at boot.
configure = FILES / "ews-configure"
consumed = set(re.findall(r'"\$key" = (EWS_[A-Z0-9_]+)', configure.read_text())) if configure.is_file() else set()
for role in script_reads:
    script_reads[role] |= consumed

# Names ews-configure writes itself: must be read by both binaries.
written = set(re.findall(r'echo "(EWS_[A-Z0-9_]+|AWS_[A-Z0-9_]+)=', configure.read_text())) if configure.is_file() else set()
if not written:
    err("packer/files/ews-configure: missing or writes no settings")
for b in ("ews-worker", "ews-leader"):
    for n in sorted(written - SDK_ENV):
        if n not in code[b]:
            err(f"packer/files/ews-configure writes {n}, which {b} does not read")


def check_env_set(binary: str, names: set[str], where: str) -> None:
    readable = set(code[binary]) | script_reads[binary] | SDK_ENV
    contract = set(CONTRACT[binary]) | set(CONTRACT["cluster"])
    for n in sorted(names):
        if file_form(n) in readable:
            continue
        if file_form(n) in contract and not STRICT:
            warnings.append(f"{where} sets {n} for {binary}: a contract name its code does not read yet")
        else:
            err(f"{where} sets {n} for {binary}, which neither {binary} nor its boot scripts read")


leaders_main = TF / "modules" / "leaders" / "main.tf"
workers_main = TF / "modules" / "workers" / "main.tf"
root_main = TF / "main.tf"
for p in (leaders_main, workers_main, root_main):
    if not p.is_file():
        err(f"{rel(p)} missing")
if all(p.is_file() for p in (leaders_main, workers_main, root_main)):
    check_env_set("ews-leader", ews_keys(leaders_main), rel(leaders_main))
    check_env_set("ews-worker", ews_keys(workers_main) | ews_keys(root_main), "terraform (workers)")
    for f in tf_files:
        if f not in (leaders_main, workers_main, root_main):
            for n in ews_keys(f):
                err(f"{rel(f)} sets {n}: node settings belong in the leaders/workers modules or the root auth/sink maps")

# Lambdas: environment, binaries, runtime, concurrency, invoke permission.
lambda_fns = [(p, name, body) for p, kind, name, body in blocks("resource") if kind == "aws_lambda_function"]
if not lambda_fns:
    err("terraform: no aws_lambda_function")
for p, name, body in lambda_fns:
    envs = body.get("environment", [{}])[0].get("variables", "")
    m = re.fullmatch(r"\$\{local\.(\w+)\}", str(envs))
    expr = str(locals_of(p).get(m.group(1), "")) if m else str(envs)
    # An inline map comes back from python-hcl2 as a dict.
    set_names = set(envs) if isinstance(envs, dict) else keys_in(expr)
    reads, required = ((terminate_names, CONTRACT["terminate"]) if name == "terminate"
                       else (lambda_names, LAMBDA_REQUIRED))
    for n in sorted(set_names - reads):
        err(f"{rel(p)}: Lambda {name} sets {n}, which its code does not read")
    for n in sorted(required - set_names):
        err(f"{rel(p)}: Lambda {name} does not set {n}")
    if body.get("runtime") != "provided.al2023":
        err(f"{rel(p)}: Lambda {name} runtime must be provided.al2023")
    if body.get("architectures") != ["arm64"]:
        err(f"{rel(p)}: Lambda {name} must be arm64 (cargo lambda build --arm64)")
    # Reserving concurrency fails on accounts with a low quota: it must stay optional (unreserved,
    # -1, unless the operator sets a number).
    if "-1" not in str(body.get("reserved_concurrent_executions", "")):
        err(f"{rel(p)}: Lambda {name} must leave reserved concurrency optional (-1 unless set)")
    if "bootstrap.zip" not in str(body.get("filename", "")):
        err(f"{rel(p)}: Lambda {name} must deploy <bin>/bootstrap.zip from cargo lambda")
    for b in re.findall(r'bin\s*=\s*"([^"]+)"', (p.read_text())):
        if b not in bins or bins[b] != bins.get("ews-scale-up"):
            err(f"{rel(p)}: Lambda binary {b} is not a [[bin]] of the lambdas crate")
perms = [body for _, kind, _, body in blocks("resource") if kind == "aws_lambda_permission"]
if not any(b.get("principal") == "lambda.alarms.cloudwatch.amazonaws.com" and b.get("source_arn") for b in perms):
    err("terraform: no aws_lambda_permission for lambda.alarms.cloudwatch.amazonaws.com with a source_arn")

# IAM: no wildcard actions anywhere but in policies that grant nothing by them: the VPC endpoints'
# (a perimeter: only this account's principals pass, each endpoint to its own service, and the
# identity policies checked here still decide every action; the data-perimeter pattern,
# https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-access.html) and the access-log
# bucket's, whose only wildcard is the Deny of every request without TLS.
PERIMETERS = {("modules/network/main.tf", "endpoint"), ("modules/alb/logs.tf", "logs")}
for p, kind, name, body in list(blocks("data")) + list(blocks("resource")):
    if (str(p.relative_to(TF)), name) in PERIMETERS:
        continue
    text = str(body)
    for act in (re.findall(r"'actions': \[([^\]]*)\]", text)
                + re.findall(r'"Action"\s*:\s*\[?([^\]\n]*)', text)
                + re.findall(r"\bAction\s*=\s*(\[[^\]]*\]|\"[^\"]*\")", text)):
        for a in re.findall(r"'([^']*)'|\"([^\"]*)\"", act):
            a = a[0] or a[1]
            if a == "*" or a.endswith(":*"):
                err(f"{rel(p)}: {kind}.{name} allows IAM action {a!r}: list the actions instead")

# IAM <-> SDK calls: each role allows exactly the AWS calls its code makes (logs aside).
SDK_OPS = {
    "describe_alarms": "cloudwatch:DescribeAlarms", "put_metric_alarm": "cloudwatch:PutMetricAlarm",
    "set_alarm_state": "cloudwatch:SetAlarmState", "put_metric_data": "cloudwatch:PutMetricData",
    "get_metric_data": "cloudwatch:GetMetricData", "delete_alarms": "cloudwatch:DeleteAlarms",
    "tag_resource": "cloudwatch:TagResource", "list_tags_for_resource": "cloudwatch:ListTagsForResource",
    "describe_auto_scaling_groups": "autoscaling:DescribeAutoScalingGroups",
    "set_desired_capacity": "autoscaling:SetDesiredCapacity",
    "update_auto_scaling_group": "autoscaling:UpdateAutoScalingGroup",
    "complete_lifecycle_action": "autoscaling:CompleteLifecycleAction",
    "create_or_update_tags": "autoscaling:CreateOrUpdateTags",
    "delete_tags": "autoscaling:DeleteTags",
    "describe_scaling_activities": "autoscaling:DescribeScalingActivities",
    "update_item": "dynamodb:UpdateItem",
    # SendMessageBatch is authorized as SendMessage.
    "send_message_batch": "sqs:SendMessage", "send_message": "sqs:SendMessage",
}


def sdk_actions(crate: Path, main: Path, skip: Path | None = None) -> set[str]:
    src = crate_sources(crate, main)
    if skip is not None and skip.is_file():
        src = src.replace(strip_tests(skip.read_text()), "")
    return {a for op, a in SDK_OPS.items() if re.search(r"\.%s\(\)" % op, src)}


def file_actions(path: Path) -> set[str]:
    src = strip_tests(path.read_text()) if path.is_file() else ""
    return {a for op, a in SDK_OPS.items() if re.search(r"\.%s\(\)" % op, src)}


def policy_actions(path: Path) -> set[str]:
    acts = set()
    for _, kind, _, body in blocks("data", path):
        if kind == "aws_iam_policy_document":
            for st in body.get("statement", []):
                acts |= {a for a in st.get("actions", []) if not a.startswith(("sts:", "logs:", "ssm:"))}
    return acts


scaling_main = TF / "modules" / "scaling" / "main.tf"
# Actions a role needs for what AWS does on the code's behalf, not for a call in the code: Lambda
# sends a failed asynchronous invocation to the on-failure destination with the function's role.
SERVICE_ACTIONS = {"scaler Lambdas": {"sqs:SendMessage"}}
termination_tf = TF / "termination.tf"
for label, binary, path in (
    ("scaler Lambdas", "ews-scale-up", scaling_main),
    ("leader instances", "ews-leader", leaders_main),
    ("termination policy", "ews-terminate", termination_tf),
):
    if binary not in bins or not path.is_file():
        continue
    if label == "termination policy":
        need = file_actions(TERMINATE_SRC)
    else:
        # The termination policy's calls are its own role's, not the scalers'.
        need = sdk_actions(bins[binary], mains[binary], TERMINATE_SRC)
    need |= SERVICE_ACTIONS.get(label, set())
    have = policy_actions(path)
    if not need:
        warnings.append(f"{label}: no AWS SDK calls found in the code yet; IAM not compared")
        continue
    for a in sorted(need - have):
        err(f"{rel(path)}: the {label}' role lacks {a}, which the code calls")
    for a in sorted(have - need):
        err(f"{rel(path)}: the {label}' role allows {a}, which the code never calls (least privilege)")

# The cluster-metric alarm has no dimensions: the leader must publish without any.
if "ews-leader" in bins and ".dimensions(" in crate_sources(bins["ews-leader"], mains["ews-leader"]):
    err("ews-leader publishes its metric with dimensions, but the cluster alarm (modules/scaling) has none")

# Ports, health path, drain, ping, metric names.
root_vars = TF / "variables.tf"
ports = {"public_port": ("ews-worker", "EWS_LISTEN"), "admin_port": ("ews-worker", "EWS_ADMIN_LISTEN"),
         "internal_port": ("ews-worker", "EWS_INTERNAL_LISTEN")}
for var, (b, env) in ports.items():
    tf_port, code_port = variable_default(root_vars, var), default_port(b, env)
    if code_port is None:
        err(f"{b}: no default for {env} in the code")
    elif tf_port != code_port:
        err(f"terraform var.{var} = {tf_port} but {b} defaults {env} to port {code_port}")
for env in ("EWS_ADMIN_LISTEN", "EWS_INTERNAL_LISTEN"):
    if default_port("ews-leader", env) != default_port("ews-worker", env):
        err(f"ews-leader and ews-worker default {env} to different ports")

tgs = [body for _, kind, _, body in blocks("resource") if kind == "aws_lb_target_group"]
alb_vars = TF / "modules" / "alb" / "variables.tf"
hc_default = variable_default(alb_vars, "health_check_path") if alb_vars.is_file() else None
root_text = root_main.read_text() if root_main.is_file() else ""
hc_root = re.search(r'health_check_path\s*=\s*"([^"]+)"', root_text)
for path in {hc_default, hc_root.group(1) if hc_root else None} - {None}:
    if f'"{path}"' not in worker_src:
        err(f"terraform health check path {path} is not a route in the worker code")
if not tgs or not all("var.health_check_path" in str(t.get("health_check")) for t in tgs):
    err("terraform: the target group health check must use var.health_check_path")

drain_tf, drain_code = variable_default(root_vars, "drain_seconds"), default_num("ews-worker", "EWS_DRAIN_SECONDS")
if drain_code is not None and drain_tf != drain_code:
    err(f"terraform var.drain_seconds = {drain_tf} but ews-worker defaults EWS_DRAIN_SECONDS to {drain_code}")
if "deregistration_delay_secs = var.drain_seconds" not in re.sub(r"\s+", " ", root_text):
    err("terraform: the ALB deregistration delay must be the drain window (var.drain_seconds)")
if workers_main.is_file() and "heartbeat_timeout    = var.drain_seconds" not in workers_main.read_text():
    err("terraform: the termination lifecycle hook must wait for the drain window")
drain_max = re.search(r"var\.drain_seconds <= (\d+)", root_vars.read_text() if root_vars.is_file() else "")
ping_tf, ping_code = variable_default(root_vars, "ping_interval_secs"), default_num("ews-worker", "EWS_PING_INTERVAL_SECS")
if ping_code is not None and ping_tf != ping_code:
    err(f"terraform var.ping_interval_secs = {ping_tf} but ews-worker defaults it to {ping_code}")
if (variable_default(root_vars, "alb_idle_timeout_secs") or 0) <= (ping_tf or 0):
    err("terraform: alb_idle_timeout_secs must exceed ping_interval_secs")

for var, env in (("cloudwatch_namespace", "EWS_CLOUDWATCH_NAMESPACE"), ("cloudwatch_metric", "EWS_CLOUDWATCH_METRIC"),
                 ("cloudwatch_interval_secs", "EWS_CLOUDWATCH_INTERVAL_SECS")):
    tf_v, code_v = variable_default(root_vars, var), code["ews-leader"].get(env)
    if code_v is None:
        err(f"ews-leader: no default for {env} in the code")
    elif str(tf_v) != code_v.strip('"').removesuffix(".into()").removesuffix(".to_string()").strip('"'):
        err(f"terraform var.{var} = {tf_v!r} but ews-leader defaults {env} to {code_v}")

# The example tfvars may only set declared root variables, and the full example sets every
# variable that has no default.
root_var_defs = {name: body for _, name, _, body in blocks("variable", root_vars)}
for ex in sorted((TF / "examples").glob("*.tfvars")):
    values = load_tf(ex)
    for k in sorted(set(values) - set(root_var_defs)):
        err(f"{rel(ex)} sets {k}, which is not a variable of the root module")
    if ex.name == "production.tfvars":
        for k in sorted(n for n, b in root_var_defs.items() if "default" not in b and n not in values):
            err(f"{rel(ex)} (the full example) does not set the required variable {k}")

# ----------------------------------------------------------------------------------------------
# Packer and systemd units
# ----------------------------------------------------------------------------------------------

PACKER = ROOT / "packer"
for role in ("worker", "leader"):
    b = f"ews-{role}"
    tmpl = PACKER / f"{role}.pkr.hcl"
    if not tmpl.is_file():
        err(f"packer/{role}.pkr.hcl missing")
        continue
    text = tmpl.read_text()
    for used in re.findall(r"\$\{var\.bin_dir\}/([\w-]+)", text):
        if used not in bins:
            err(f"packer/{role}.pkr.hcl installs {used}, which is not a workspace binary")
    if f"/{b}\"" not in text:
        err(f"packer/{role}.pkr.hcl does not upload the {b} release binary")
    unit = units.get(f"{b}.service")
    if unit is None:
        err(f"packer/files/{b}.service missing")
        continue
    svc = unit["Service"]
    exe = svc.get("ExecStart", "").split()[0] if svc.get("ExecStart") else ""
    if exe != f"/usr/local/bin/{b}" or Path(exe).name not in bins:
        err(f"packer/files/{b}.service ExecStart {exe!r} must be /usr/local/bin/{b}, a workspace binary")
    if svc.get("EnvironmentFile") != "/etc/ews/ews.env":
        err(f"packer/files/{b}.service must read EnvironmentFile=/etc/ews/ews.env")
    if int(svc.get("LimitNOFILE", "0")) < 100000:
        err(f"packer/files/{b}.service LimitNOFILE must be at least 100000")
    if role == "worker":
        stop = int(re.sub(r"s$", "", svc.get("TimeoutStopSec", "0")))
        need = int(drain_max.group(1)) if drain_max else (drain_tf or 30)
        if stop <= need:
            err(f"packer/files/{b}.service TimeoutStopSec={stop} must exceed the longest drain window ({need} s)")
    for m in re.findall(r"\b(EWS_[A-Z0-9_]+)=", "\n".join(unit.get("Service", "Environment", fallback="").split())):
        if m not in code[b]:
            err(f"packer/files/{b}.service sets {m}, which {b} does not read")

# ----------------------------------------------------------------------------------------------
# GitLab CI
# ----------------------------------------------------------------------------------------------

ci = ROOT / ".gitlab-ci.yml"
ci_text = ci.read_text() if ci.is_file() else ""
if not ci_text:
    err(".gitlab-ci.yml missing")
for b in re.findall(r"--bin\s+([\w-]+)", ci_text):
    if b not in bins:
        err(f".gitlab-ci.yml builds --bin {b}, which is not a workspace binary")
for b in re.findall(r"target/release/([\w-]+)", ci_text):
    if b not in bins:
        err(f".gitlab-ci.yml ships target/release/{b}, which is not a workspace binary")
# The shipped worker has every sink: its sinks are cargo features, off in a plain build.
# (each script item whole: a folded `>-` item spans lines)
for item in re.split(r"\n\s*- ", ci_text):
    line = " ".join(item.split())
    for b in ("ews-worker", "ews-leader"):
        if "cargo build --release" in line and f"--bin {b}" in line and not re.search(rf"--features \S*\b{b}/full\b", line):
            err(f".gitlab-ci.yml builds the release {b} without its full feature (its Kafka and SQS sinks)")
ci_lambdas = set(re.findall(r"target/lambda/([\w-]+)/bootstrap\.zip", ci_text))
tf_lambdas = set()
for p, _, _ in lambda_fns:
    text = p.read_text()
    # By a `bin = "..."` map entry (the scalers) or named in the zip's path (the termination policy).
    tf_lambdas |= set(re.findall(r'bin\s*=\s*"([^"]+)"', text))
    tf_lambdas |= set(re.findall(r'/(ews-[\w-]+)/bootstrap\.zip', text))
if ci_lambdas != tf_lambdas:
    err(f".gitlab-ci.yml ships Lambda zips {sorted(ci_lambdas)} but Terraform deploys {sorted(tf_lambdas)}")
if "cargo lambda build --release --arm64 --output-format zip" not in ci_text:
    err(".gitlab-ci.yml must build the Lambdas with `cargo lambda build --release --arm64 --output-format zip`")
for n in set(re.findall(r"\b(EWS_[A-Z0-9_]+)", ci_text)):
    if not any(n in code[b] for b in code):
        err(f".gitlab-ci.yml uses {n}, an EWS_ name no binary reads")

for w in warnings:
    print(f"crosscheck: WARN {w}")
for e in errors:
    print(f"crosscheck: ERROR {e}")
print(f"crosscheck: {len(errors)} error(s), {len(warnings)} warning(s)")
sys.exit(1 if errors else 0)
