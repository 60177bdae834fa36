#!/usr/bin/env bash
# The quickstart: build sealant, make a key, seal a Secret for Git, and open it again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh

cargo build --locked -q -p sealant-cli
sealant="$CARGO_TARGET_DIR/debug/sealant"
work=.quickstart
rm -rf "$work" && mkdir -p "$work"

echo "== 1. a key pair (in a cluster, the controller makes and keeps this)"
recipient=$("$sealant" keygen -o "$work/identity.txt")
echo "identity: $work/identity.txt (mode $(stat -c %a "$work/identity.txt")), recipient: $recipient"

echo "== 2. a Secret, as kubectl would write it"
cat > "$work/secret.yaml" <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
  namespace: shop
  labels: {app: shop}
type: Opaque
stringData:
  username: shop
  password: correct-horse-battery-staple
YAML
cat "$work/secret.yaml"

echo "== 3. sealed: safe to commit"
"$sealant" seal --recipient "$recipient" -f "$work/secret.yaml" -o "$work/sealed.yaml"
cat "$work/sealed.yaml"
if grep -q correct-horse "$work/sealed.yaml"; then echo "plaintext leaked into the SealedSecret" >&2; exit 1; fi

echo "== 4. opened again with the identity (what the controller does in the cluster)"
"$sealant" unseal --identity "$work/identity.txt" -f "$work/sealed.yaml"

echo "== 5. copied to another namespace, it will not open (strict scope)"
sed 's/namespace: shop/namespace: elsewhere/' "$work/sealed.yaml" > "$work/moved.yaml"
if "$sealant" unseal --identity "$work/identity.txt" -f "$work/moved.yaml"; then
  echo "a moved SealedSecret opened" >&2; exit 1
fi
echo "quickstart done: files in $work/"
