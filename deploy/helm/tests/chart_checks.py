#!/usr/bin/env python3
"""Checks of the credd chart that helm lint cannot make; run by scripts/check-chart.sh.

  chart_checks.py values <chart dir>
      values.yaml: every key has a comment line right above it. values.schema.json: every object
      level says additionalProperties (false, or a value schema for free-form maps such as
      annotations), and every property the schema allows is present in values.yaml, so every
      value is documented there (Kubernetes types passed through as they are, whose schema
      description starts with "Kubernetes ", are documented by their key).
  chart_checks.py servicemonitor <rendered.yaml>
      kubernetes-validate has no schema for ServiceMonitor (a prometheus-operator CRD): check that
      it selects Services of the same render and scrapes a port those Services name.
  chart_checks.py probes <rendered.yaml>
      liveness asks for the health name credd.live (the process alone), readiness for the overall
      status (NOT_SERVING only while draining), and each Deployment sets a drain delay and spreads
      its pods (topologySpreadConstraints).

Needs PyYAML (a dependency of kubernetes-validate).
"""

import json
import re
import sys
from pathlib import Path

import yaml

KEY_LINE = re.compile(r"^(\s*)([A-Za-z0-9_.\-/]+):(\s|$)")


def check_values(chart: Path) -> list[str]:
    errors = []
    lines = (chart / "values.yaml").read_text().splitlines()
    for n, line in enumerate(lines):
        if not KEY_LINE.match(line):
            continue
        prev = next((p.strip() for p in reversed(lines[:n]) if p.strip()), "")
        if not prev.startswith("#"):
            errors.append(f"values.yaml:{n + 1}: key without a comment above it: {line.strip()}")

    schema = json.loads((chart / "values.schema.json").read_text())
    defs = schema.get("definitions", {})

    def resolve(node):
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        return node

    def is_object(node):
        t = node.get("type")
        return t == "object" or (isinstance(t, list) and "object" in t) or "properties" in node

    def walk_schema(node, where):
        if isinstance(node, dict):
            if is_object(node):
                if "additionalProperties" not in node:
                    errors.append(f"values.schema.json: {where}: object without additionalProperties")
                elif "properties" in node and node["additionalProperties"] is not False:
                    errors.append(f"values.schema.json: {where}: named properties but additionalProperties is not false")
            for k, v in node.items():
                walk_schema(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk_schema(v, f"{where}/{i}")

    walk_schema(schema, "#")

    def walk_values(node, values, path):
        node = resolve(node)
        for key, sub in node.get("properties", {}).items():
            p = f"{path}.{key}" if path else key
            if not isinstance(values, dict) or key not in values:
                errors.append(f"values.yaml: schema property {p} is missing (so undocumented) in values.yaml")
                continue
            # Kubernetes types passed through as they are (securityContext, resources, affinity...)
            # are documented by their key; their fields are Kubernetes' own.
            if isinstance(values[key], dict) and not resolve(sub).get("description", "").startswith("Kubernetes "):
                walk_values(sub, values[key], p)

    walk_values(schema, yaml.safe_load((chart / "values.yaml").read_text()), "")
    return errors


def check_servicemonitor(rendered: Path) -> list[str]:
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    services = [d for d in docs if d.get("kind") == "Service"]
    monitors = [d for d in docs if d.get("kind") == "ServiceMonitor"]
    errors = []
    for m in monitors:
        name = m["metadata"]["name"]
        if m.get("apiVersion") != "monitoring.coreos.com/v1":
            errors.append(f"ServiceMonitor {name}: apiVersion {m.get('apiVersion')}, want monitoring.coreos.com/v1")
        spec = m.get("spec", {})
        want = spec.get("selector", {}).get("matchLabels", {})
        selected = [s for s in services if want and want.items() <= s["metadata"].get("labels", {}).items()]
        if len(selected) != 2:
            errors.append(f"ServiceMonitor {name}: selects {len(selected)} Services, want 2 (authd and introspect)")
        for ep in spec.get("endpoints") or [None]:
            if not ep or not ep.get("port"):
                errors.append(f"ServiceMonitor {name}: an endpoint without a port name")
                continue
            for s in selected:
                if ep["port"] not in {p.get("name") for p in s["spec"].get("ports", [])}:
                    errors.append(f"ServiceMonitor {name}: Service {s['metadata']['name']} has no port {ep['port']!r}")
    return errors


def check_probes(rendered: Path) -> list[str]:
    """Liveness asks for "credd.live" (the process alone), readiness for the
    overall status (NOT_SERVING only while draining), and a drain delay is set."""
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    errors = []
    for d in (d for d in docs if d.get("kind") == "Deployment"):
        name = d["metadata"]["name"]
        for c in d["spec"]["template"]["spec"]["containers"]:
            live = c.get("livenessProbe", {}).get("grpc", {})
            ready = c.get("readinessProbe", {}).get("grpc", {})
            if live.get("service") != "credd.live":
                errors.append(f"{name}: liveness probe asks for {live.get('service')!r}, want 'credd.live'")
            if ready.get("service", "") != "":
                errors.append(f"{name}: readiness probe asks for {ready.get('service')!r}, want the overall status")
            spread = d["spec"]["template"]["spec"].get("topologySpreadConstraints") or []
            if not spread:
                errors.append(f"{name}: no topologySpreadConstraints (two replicas could share a node)")
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            if not any(k.endswith("_DRAIN_DELAY_MS") and int(v or 0) > 0 for k, v in env.items()):
                errors.append(f"{name}: no drain delay set")
    return errors


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("values", "servicemonitor", "probes"):
        print(__doc__, file=sys.stderr)
        return 2
    what, arg = sys.argv[1], Path(sys.argv[2])
    if what == "values":
        errors, done = check_values(arg), f"values.yaml documented, values.schema.json strict ({arg})"
    elif what == "probes":
        errors, done = check_probes(arg), f"probes: liveness on credd.live, readiness overall, drain delay set ({arg.name})"
    else:
        errors = check_servicemonitor(arg)
        n = sum(1 for d in yaml.safe_load_all(arg.read_text()) if d and d.get("kind") == "ServiceMonitor")
        done = f"{n} ServiceMonitor(s) select both Services and scrape a port they name ({arg.name})"
    for e in errors:
        print(f"FAIL {e}")
    if not errors:
        print(f"ok   {done}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
