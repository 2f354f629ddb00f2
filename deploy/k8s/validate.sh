#!/usr/bin/env bash
# Validates deploy/k8s/colony.yaml against the Kubernetes API schemas, offline and strict
# (unknown fields are errors), with PyPI's kubernetes-validate (it ships the schemas of each
# Kubernetes release). Debian ships no schema validator: its kubectl (kubernetes-client 1.20)
# needs a cluster's API server even for --dry-run=client. The validator goes into a virtualenv
# in .build-tools/ (reused between runs). A copy of the manifest with one misspelt field must
# fail, so a validator that passes everything does not pass this test. Run by `make test`.
#   K8S_VERSION=1.37.0   the Kubernetes release to validate against (the package's default)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
started=$(date +%s.%N)
elapsed() { awk -v now="$(date +%s.%N)" -v start="$started" 'BEGIN { printf "%.1f", now - start }'; }
validator_version=1.37.0
venv=$root/.build-tools/kubernetes-validate-$validator_version
validate=$venv/bin/kubernetes-validate
if [ ! -x "$validate" ]; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "kubernetes-validate==$validator_version"
fi
version_args=()
[ -n "${K8S_VERSION:-}" ] && version_args=(-k "$K8S_VERSION")

"$validate" --strict --quiet "${version_args[@]}" "$here/colony.yaml" \
    || { echo "k8s: deploy/k8s/colony.yaml does not validate" >&2; exit 1; }
misspelt=$(mktemp /tmp/colony-k8s.XXXXXX.yaml)
trap 'rm -f "$misspelt"' EXIT
sed 's/serviceName:/serviceNme:/' "$here/colony.yaml" >"$misspelt"
if "$validate" --strict --quiet "${version_args[@]}" "$misspelt" >/dev/null 2>&1; then
    echo "k8s: the validator passed a manifest with a misspelt field" >&2
    exit 1
fi
kinds=$(grep -c '^kind:' "$here/colony.yaml")
echo "k8s $(elapsed)s: passed: colony.yaml ($kinds resources) validates strictly against Kubernetes ${K8S_VERSION:-$validator_version} schemas (kubernetes-validate $validator_version); a misspelt field fails"
