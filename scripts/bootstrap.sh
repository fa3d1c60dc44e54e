#!/usr/bin/env bash
# Installs what building and testing Phoenix needs on a fresh Debian or Ubuntu machine (as
# root): a C toolchain, and Rust (through rustup, when cargo is missing or too old) with rustfmt
# and clippy. Safe to run again: it only installs what is missing.
set -euo pipefail

MIN_RUST_MINOR=89

bash "$(dirname "$0")/apt-need.sh" build-essential ca-certificates curl pkg-config git procps util-linux

if [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
rust_minor() { rustc --version 2>/dev/null | sed -E 's/^rustc 1\.([0-9]+).*/\1/'; }
if ! command -v cargo >/dev/null || [ "$(rust_minor || echo 0)" -lt "$MIN_RUST_MINOR" ]; then
    if ! command -v rustup >/dev/null; then
        echo "bootstrap: installing Rust with rustup" >&2
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    rustup toolchain install stable --profile minimal
    rustup default stable
fi
if command -v rustup >/dev/null; then
    installed=$(rustup component list --installed 2>/dev/null || true)
    for component in rustfmt clippy; do
        case "$installed" in
            *"$component"*) ;;
            *) rustup component add "$component" ;;
        esac
    done
fi
