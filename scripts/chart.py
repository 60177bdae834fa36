#!/usr/bin/env python3
"""Lint, render and check the sealant Helm chart with the Helm SDK (PyPI `helm-python-sdk`, no helm binary).

  scripts/chart.py lint [--values FILE]...
  scripts/chart.py render [--values FILE]... [--namespace NS] [--release NAME] [--set key=value]...
  scripts/chart.py schema-check --values FILE
  scripts/chart.py sync-crds [--check]

`render` prints the templates as one multi-document YAML stream (no CRDs, no NOTES.txt), ready for
`kubectl apply -f -`. Exit codes: 0 fine, 1 the chart or the values have problems, 2 usage or setup errors.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "sealant"
GENERATED_CRDS = ROOT / "crds" / "yaml"
CHART_CRDS = CHART / "crds"

try:
    import helm_python
    from helm_python.chart import Chart, lint as helm_lint
except ImportError:  # pragma: no cover - depends on the machine
    print(
        "chart.py: the Python module helm_python (PyPI helm-python-sdk) is missing; run scripts/setup.sh",
        file=sys.stderr,
    )
    sys.exit(2)


class UsageError(Exception):
    """Bad arguments or unreadable input (exit 2)."""


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merges `override` into `base` the way repeated --values/--set do (maps merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def user_values(files: list[str], sets: list[str]) -> dict[str, Any]:
    """The values given on the command line: each --values file in order, then each --set."""
    values: dict[str, Any] = {}
    for name in files:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"reading {name}: {e.strerror}") from e
        try:
            parsed = helm_python.values_from_yaml(text)
        except helm_python.HelmError as e:
            raise UsageError(f"{name}: {e}") from e
        values = deep_merge(values, parsed or {})
    for expr in sets:
        try:
            values = deep_merge(values, helm_python.parse_set_string(expr))
        except helm_python.HelmError as e:
            raise UsageError(f"--set {expr}: {e}") from e
    return values


SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def cmd_lint(args: argparse.Namespace) -> int:
    values = user_values(args.values, args.set)
    report = helm_lint(CHART, values or None, strict=True, namespace=args.namespace)
    problems = 0
    for m in report.get("messages") or []:
        severity = int(m.get("severity", 0))
        line = f"[{SEVERITY.get(severity, severity)}] {m.get('path', '')}: {m.get('error', '')}"
        # INFO findings (e.g. "icon is recommended") are advice, not problems.
        if severity >= 2:
            problems += 1
            print(line, file=sys.stderr)
        elif not args.quiet:
            print(line)
    for e in report.get("errors") or []:
        problems += 1
        print(f"[ERROR] {e}", file=sys.stderr)
    if problems:
        print(f"chart.py: lint found {problems} problem(s) in {CHART.relative_to(ROOT)}", file=sys.stderr)
        return 1
    print(f"chart.py: lint clean ({report.get('total_charts_linted', 0)} chart)")
    return 0


def rendered_documents(values: dict[str, Any], release: str, namespace: str) -> list[str]:
    """The rendered templates as YAML documents, in a stable order (by template path), empty ones dropped."""
    with Chart.load(CHART) as chart:
        manifests = chart.render(values or None, name=release, namespace=namespace, is_install=True)
    docs: list[str] = []
    for path in sorted(manifests):
        if path.endswith("NOTES.txt") or "/templates/" not in path:
            continue
        # Split on document separators so empty documents (disabled parts) disappear.
        chunk: list[str] = []
        for line in manifests[path].splitlines():
            if line.rstrip() == "---":
                docs.append("\n".join(chunk))
                chunk = []
            else:
                chunk.append(line)
        docs.append("\n".join(chunk))
    kept = []
    for doc in docs:
        meaningful = [ln for ln in doc.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if meaningful:
            kept.append(doc.strip("\n") + "\n")
    # Helm's install order (ServiceAccount and RBAC before the Deployment); stable within a kind.
    return sorted(kept, key=lambda d: INSTALL_ORDER.get(kind_of(d), len(INSTALL_ORDER)))


INSTALL_ORDER = {kind: i for i, kind in enumerate([
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodDisruptionBudget", "ServiceAccount",
    "Secret", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment",
    "ServiceMonitor",
])}


def kind_of(doc: str) -> str:
    for line in doc.splitlines():
        if line.startswith("kind:"):
            return line.split(":", 1)[1].strip().strip("\"'")
    return ""


def cmd_render(args: argparse.Namespace) -> int:
    values = user_values(args.values, args.set)
    try:
        helm_python.validate_release_name(args.release)
    except helm_python.HelmError as e:
        raise UsageError(f"release name {args.release!r}: {e}") from e
    docs = rendered_documents(values, args.release, args.namespace)
    sys.stdout.write("---\n" + "---\n".join(docs))
    return 0


def cmd_schema_check(args: argparse.Namespace) -> int:
    values = user_values(args.values, args.set)
    with Chart.load(CHART) as chart:
        try:
            chart.validate_schema(chart.merge_values(values))
        except helm_python.HelmValuesError as e:
            print(f"chart.py: the values do not match values.schema.json:\n{e}", file=sys.stderr)
            return 1
    print("chart.py: values match the schema")
    return 0


def cmd_sync_crds(args: argparse.Namespace) -> int:
    sources = sorted(GENERATED_CRDS.glob("*.yaml"))
    if not sources:
        raise UsageError(f"no generated CRDs in {GENERATED_CRDS}")
    wanted = {p.name for p in sources}
    stale = [p.name for p in sources if not (CHART_CRDS / p.name).is_file()
             or not filecmp.cmp(p, CHART_CRDS / p.name, shallow=False)]
    extra = sorted(p.name for p in CHART_CRDS.glob("*.yaml") if p.name not in wanted)
    if args.check:
        if stale or extra:
            for name in stale:
                print(f"chart.py: charts/sealant/crds/{name} differs from crds/yaml/{name}", file=sys.stderr)
            for name in extra:
                print(f"chart.py: charts/sealant/crds/{name} has no source in crds/yaml", file=sys.stderr)
            print("chart.py: run scripts/chart.py sync-crds", file=sys.stderr)
            return 1
        print("chart.py: chart CRDs are current")
        return 0
    CHART_CRDS.mkdir(parents=True, exist_ok=True)
    for name in stale:
        shutil.copyfile(GENERATED_CRDS / name, CHART_CRDS / name)
        print(f"chart.py: updated charts/sealant/crds/{name}")
    for name in extra:
        (CHART_CRDS / name).unlink()
        print(f"chart.py: removed charts/sealant/crds/{name}")
    if not stale and not extra:
        print("chart.py: chart CRDs already current")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chart.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def values_args(sp: argparse.ArgumentParser, *, required: bool = False) -> None:
        sp.add_argument("--values", "-f", action="append", default=[], required=required, metavar="FILE",
                        help="a values file (repeatable; later files win)")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a value in helm --set syntax (repeatable; wins over files)")

    lp = sub.add_parser("lint", help="helm lint (strict) with the given values")
    values_args(lp)
    lp.add_argument("--namespace", "-n", default="sealant")
    lp.add_argument("--quiet", "-q", action="store_true", help="do not print INFO findings")
    lp.set_defaults(func=cmd_lint)

    rp = sub.add_parser("render", help="print the rendered templates (no CRDs) as multi-document YAML")
    values_args(rp)
    rp.add_argument("--namespace", "-n", default="sealant", help="release namespace (default sealant)")
    rp.add_argument("--release", default="sealant", help="release name (default sealant)")
    rp.set_defaults(func=cmd_render)

    sp = sub.add_parser("schema-check", help="check values against values.schema.json")
    values_args(sp, required=True)
    sp.set_defaults(func=cmd_schema_check)

    cp = sub.add_parser("sync-crds", help="copy crds/yaml/*.yaml into charts/sealant/crds/")
    cp.add_argument("--check", action="store_true", help="only report stale copies (exit 1 if any)")
    cp.set_defaults(func=cmd_sync_crds)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as e:
        print(f"chart.py: {e}", file=sys.stderr)
        return 2
    except helm_python.HelmError as e:
        print(f"chart.py: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
