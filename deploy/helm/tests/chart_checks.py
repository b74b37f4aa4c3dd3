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

  chart_checks.py wiring <rendered.yaml>
      what kubernetes-validate cannot see across resources: each `helm test` Pod runs its
      component's `health-check` against a port its Service names (the plaintext "health" port
      when the gRPC port speaks TLS), and a NetworkPolicy of the render admits it there; a
      GRPCRoute (a CRD without schema here) or Ingress routes to authd's Service and grpc port;
      with a Redis password file set, it is a mounted Secret key.

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


def check_wiring(rendered: Path) -> list[str]:
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    kind = lambda k: [d for d in docs if d.get("kind") == k]
    services = {s["metadata"]["name"]: s for s in kind("Service")}
    port_names = lambda svc: {p["port"]: p.get("name") for p in svc["spec"].get("ports", [])}
    errors = []
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in kind("Deployment")}

    def tls_on(component: str) -> bool:
        env = deployments[component]["spec"]["template"]["spec"]["containers"][0].get("env", [])
        return any(e["name"].endswith("_TLS_CERT_FILE") for e in env)

    for pod in kind("Pod"):
        name = pod["metadata"]["name"]
        if pod["metadata"].get("annotations", {}).get("helm.sh/hook") != "test":
            errors.append(f"Pod {name}: not a helm test hook")
        c = pod["spec"]["containers"][0]
        args = c.get("args", [])
        binary = c.get("command", [""])[0].rsplit("/", 1)[-1]
        if binary not in deployments or args[:2] != ["health-check", "--addr"]:
            errors.append(f"Pod {name}: runs {c.get('command')} {args}, want <component> health-check --addr")
            continue
        host, port = args[2].rsplit(":", 1)
        svc = services.get(host.split(".")[0])
        want = "health" if tls_on(binary) else "grpc"
        if not svc or svc["metadata"]["labels"].get("app.kubernetes.io/component") != binary:
            errors.append(f"Pod {name}: asks {host}, not the {binary} Service of this render")
        elif port_names(svc).get(int(port)) != want:
            errors.append(f"Pod {name}: port {port} is {port_names(svc).get(int(port))!r} on {host}, want {want!r}")
        if c.get("image") != deployments[binary]["spec"]["template"]["spec"]["containers"][0]["image"]:
            errors.append(f"Pod {name}: not the Deployments' image")
        labels = pod["metadata"]["labels"]
        for np in kind("NetworkPolicy"):
            if np["metadata"]["labels"].get("app.kubernetes.io/component") != binary:
                continue
            admitted = any(
                any(p.get("port") == want for p in rule.get("ports", []))
                and any(
                    "podSelector" in f and f["podSelector"].get("matchLabels", {}).items() <= labels.items()
                    for f in rule.get("from", [])
                )
                for rule in np["spec"].get("ingress", [])
            )
            if not admitted:
                errors.append(f"Pod {name}: NetworkPolicy {np['metadata']['name']} does not admit it on {want!r}")

    authd = next((s for s in services.values() if s["metadata"]["labels"].get("app.kubernetes.io/component") == "authd"), None)
    for route in kind("GRPCRoute"):
        name = route["metadata"]["name"]
        if route.get("apiVersion") != "gateway.networking.k8s.io/v1":
            errors.append(f"GRPCRoute {name}: apiVersion {route.get('apiVersion')}, want gateway.networking.k8s.io/v1")
        if not route["spec"].get("parentRefs"):
            errors.append(f"GRPCRoute {name}: no parentRefs")
        for rule in route["spec"].get("rules", []):
            for ref in rule.get("backendRefs", []):
                if not authd or ref.get("name") != authd["metadata"]["name"] or port_names(authd).get(ref.get("port")) != "grpc":
                    errors.append(f"GRPCRoute {name}: backend {ref} is not authd's grpc port")
    for ing in kind("Ingress"):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                svc = path["backend"]["service"]
                if not authd or svc["name"] != authd["metadata"]["name"] or svc["port"].get("name") != "grpc":
                    errors.append(f"Ingress {ing['metadata']['name']}: backend {svc} is not authd's grpc port")

    for component, d in deployments.items():
        spec = d["spec"]["template"]["spec"]
        c = spec["containers"][0]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        file = env.get(f"{component.upper()}_REDIS_PASSWORD_FILE")
        if not file:
            continue
        mount = next((m for m in c.get("volumeMounts", []) if file.startswith(m["mountPath"] + "/")), None)
        vol = mount and next((v for v in spec.get("volumes", []) if v["name"] == mount["name"]), None)
        items = (vol or {}).get("secret", {}).get("items", [])
        if not vol or not any(i["path"] == file[len(mount["mountPath"]) + 1 :] for i in items):
            errors.append(f"{d['metadata']['name']}: {file} is not a mounted Secret key")
    return errors


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("values", "servicemonitor", "probes", "wiring"):
        print(__doc__, file=sys.stderr)
        return 2
    what, arg = sys.argv[1], Path(sys.argv[2])
    if what == "values":
        errors, done = check_values(arg), f"values.yaml documented, values.schema.json strict ({arg})"
    elif what == "probes":
        errors, done = check_probes(arg), f"probes: liveness on credd.live, readiness overall, drain delay set ({arg.name})"
    elif what == "wiring":
        errors = check_wiring(arg)
        n = {k: sum(1 for d in yaml.safe_load_all(arg.read_text()) if d and d.get("kind") == k) for k in ("Pod", "GRPCRoute", "Ingress")}
        done = f"wiring: {n['Pod']} test Pod(s), {n['GRPCRoute']} GRPCRoute(s), {n['Ingress']} Ingress(es) point at ports their Services name ({arg.name})"
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
