#!/usr/bin/env bash
# The quickstart: one command starts devcluster (a local Kubernetes API server), sealant-controller and a GitSync
# on the bundled example repository, then shows with kubectl the decrypted Secret and the applied workload.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh

cargo build --locked -q -p sealant-cli -p sealant-controller -p sealant-devcluster
bin="$CARGO_TARGET_DIR/debug"
work="$PWD/.quickstart"
rm -rf "$work" && mkdir -p "$work"
export KUBECONFIG="$work/kubeconfig"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "timed out waiting for $what" >&2; exit 1
}

echo "== 1. devcluster: a Kubernetes API server on 127.0.0.1 (kubeconfig: $KUBECONFIG)"
"$bin/devcluster" --port 0 --kubeconfig "$KUBECONFIG" > "$work/devcluster.log" 2>&1 &
pids+=($!)
wait_for devcluster kubectl get namespaces
kubectl apply -f crds/yaml/ >/dev/null
kubectl create namespace sealant >/dev/null
kubectl create namespace gitops >/dev/null

echo "== 2. sealant-controller (makes its key, publishes its recipient)"
"$bin/sealant-controller" --namespace sealant --http-addr 127.0.0.1:0 --no-leader-election --log-format text \
  --git-cache-dir "$work/git-cache" > "$work/controller.log" 2>&1 &
pids+=($!)
wait_for "the recipient" kubectl get configmap sealant-recipients -n sealant
"$bin/sealant" recipients fetch -o "$work/recipients.txt"

echo "== 3. a Git repository: the bundled example plus a SealedSecret sealed just now"
cp -r examples/repo "$work/repo"
"$bin/sealant" seal -R "$work/recipients.txt" -f examples/secret.yaml -o "$work/repo/deploy/db-credentials.sealed.yaml"
git -C "$work/repo" init -q -b main
git -C "$work/repo" add -A
git -C "$work/repo" -c user.name=quickstart -c user.email=quickstart@example.invalid commit -q -m "shop: web and its database credentials"
echo "committed $(git -C "$work/repo" rev-parse --short HEAD):"; git -C "$work/repo" ls-files | sed 's/^/  /'

echo "== 4. a GitSync pulls and applies it"
cat <<YAML | kubectl apply -f -
apiVersion: sealant.dev/v1
kind: GitSync
metadata: {name: shop, namespace: gitops}
spec:
  url: file://$work/repo
  ref: {branch: main}
  path: deploy
  interval: 10s
  prune: true
YAML
applied() { [ "$(kubectl get gitsync shop -n gitops -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
wait_for "the GitSync" applied
kubectl get gitsync shop -n gitops

echo "== 5. what the cluster now holds"
kubectl get sealedsecrets,secrets,deployments -n shop
echo "password in the Secret, decrypted by the controller:"
echo "  $(kubectl get secret db-credentials -n shop -o jsonpath='{.data.password}' | base64 -d)"
echo "quickstart done; logs and the repository are in .quickstart/"
