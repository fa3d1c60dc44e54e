# step_cli: installs `step` when `step version` does not report the wanted version, then
# bootstraps to a step-ca server when the stored defaults ($(step path)/config/defaults.json)
# name another URL or fingerprint.
require_os
version=${PHX_STEP_CLI_VERSION#v}
[ -n "$version" ] || die "step_cli_version is empty"
export HOME="${HOME:-/root}"

if ! step version 2>/dev/null | grep -qF "$version"; then
    source=$(printf '%s' "$PHX_STEP_CLI_SOURCE" | sed "s|{version}|$version|g; s|{arch}|$(arch)|g")
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    case "$source" in
    *.deb)
        fetch "$source" "$work/step-cli.deb"
        dpkg -i "$work/step-cli.deb" >/dev/null || die "dpkg -i of $source failed"
        ;;
    *.tar.gz | *.tgz)
        fetch "$source" "$work/step.tar.gz"
        mkdir "$work/x"
        tar -xzf "$work/step.tar.gz" -C "$work/x" || die "$source is not a readable .tar.gz"
        bin=$(find "$work/x" -type f -name step | head -n 1)
        [ -n "$bin" ] || die "$source holds no file named step"
        install -m 755 "$bin" /usr/local/bin/step
        ;;
    *) die "step_cli_source must end in .deb, .tar.gz or .tgz: $source" ;;
    esac
    hash -r 2>/dev/null || true
    got=$(step version 2>&1) || die "step does not run after installing $source: $got"
    printf '%s' "$got" | grep -qF "$version" || die "$source installed a step that reports \"$got\", not version $version (step_cli_version)"
    did "installed step $version"
fi

if [ -n "$PHX_STEP_CA_URL" ] || [ -n "$PHX_STEP_CA_FINGERPRINT" ]; then
    if [ -z "$PHX_STEP_CA_URL" ] || [ -z "$PHX_STEP_CA_FINGERPRINT" ]; then
        die "step_ca_url and step_ca_fingerprint go together: give both, or neither"
    fi
    defaults="$(step path 2>/dev/null || echo "$HOME/.step")/config/defaults.json"
    stored=$(tr -d ' \t\n' <"$defaults" 2>/dev/null || true)
    case "$stored" in
    *"\"ca-url\":\"$PHX_STEP_CA_URL\""*"\"fingerprint\":\"$PHX_STEP_CA_FINGERPRINT\""* | *"\"fingerprint\":\"$PHX_STEP_CA_FINGERPRINT\""*"\"ca-url\":\"$PHX_STEP_CA_URL\""*) ;;
    *)
        out=$(step ca bootstrap --ca-url "$PHX_STEP_CA_URL" --fingerprint "$PHX_STEP_CA_FINGERPRINT" --install --force 2>&1) ||
            die "step ca bootstrap to $PHX_STEP_CA_URL failed: $out"
        did "bootstrapped to $PHX_STEP_CA_URL"
        ;;
    esac
fi
finish
