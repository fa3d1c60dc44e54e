# trusted_ca: each certificate is written as /usr/local/share/ca-certificates/phoenix-<n>.crt,
# those of an earlier run that are no longer wanted are removed, and update-ca-certificates runs
# only when one of them changed (or the store lacks one). Nothing is written before every
# certificate is checked.
require_os
installed ca-certificates || apt_install ca-certificates
store=/usr/local/share/ca-certificates
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/out"
count=0

# fingerprint FILE: the SHA-256 fingerprint of a PEM certificate, lowercase hex without colons.
fingerprint() {
    openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/^.*=//; s/://g' | tr 'A-F' 'a-f'
}

# take FILE WHAT: adds each certificate of FILE (PEM, one or more, or DER) to the wanted ones; an
# error naming WHAT when it holds none or a broken one.
take() {
    if ! grep -q -- '-----BEGIN CERTIFICATE-----' "$1"; then
        if command -v openssl >/dev/null 2>&1 && openssl x509 -inform der -in "$1" -out "$1.pem" 2>/dev/null; then
            mv -f "$1.pem" "$1"
        else
            die "$2 is not a certificate (neither PEM with -----BEGIN CERTIFICATE----- nor DER); it begins with: $(head -c 60 "$1" | tr -c '[:print:]' ' ')"
        fi
    fi
    rm -f "$1".part.*
    awk -v p="$1.part." '/-----BEGIN CERTIFICATE-----/ { n++; inside = 1 }
        inside { print > (p n) }
        /-----END CERTIFICATE-----/ { inside = 0; close(p n) }' "$1"
    for part in "$1".part.*; do
        if command -v openssl >/dev/null 2>&1; then
            openssl x509 -in "$part" -noout 2>/dev/null || die "$2 holds a certificate openssl cannot read"
        else
            grep -q -- '-----END CERTIFICATE-----' "$part" || die "$2 holds a certificate without its -----END CERTIFICATE----- line"
        fi
        count=$((count + 1))
        mv -f "$part" "$work/out/phoenix-$count.crt"
    done
}

# pem_text TEXT: PEM certificates given as text, where the configuration holds them on one line
# (spaces or nothing for line breaks), written back as PEM with 64 characters a line.
pem_text() {
    printf '%s\n' "$1" | sed 's/-----BEGIN CERTIFICATE-----/\n&\n/g; s/-----END CERTIFICATE-----/\n&\n/g' | awk '
        /^-----BEGIN CERTIFICATE-----$/ { print; inside = 1; body = ""; next }
        /^-----END CERTIFICATE-----$/ {
            while (length(body) > 64) { print substr(body, 1, 64); body = substr(body, 65) }
            if (body != "") print body
            print; inside = 0; next
        }
        inside { gsub(/[ \t\r]/, ""); body = body $0 }'
}

eval "set -- $PHX_CA_CERTIFICATES"
i=0
for c in "$@"; do
    what="ca_certificates[$i]"
    i=$((i + 1))
    case "$c" in
    *-----BEGIN*)
        pem_text "$c" >"$work/in.$i"
        what="$what (PEM text)"
        ;;
    http://* | https://* | ftp://* | file://* | /*)
        fetch "$c" "$work/in.$i"
        what="$what ($c)"
        ;;
    *) die "$what is neither PEM text, a URL nor an absolute path: $(printf '%s' "$c" | head -c 60)" ;;
    esac
    take "$work/in.$i" "$what"
done

if [ -n "$PHX_CA_URL" ]; then
    if [ -n "$PHX_CA_FINGERPRINT" ]; then
        command -v openssl >/dev/null 2>&1 || apt_install openssl
        command -v curl >/dev/null 2>&1 || apt_install curl
        want=$(printf '%s' "$PHX_CA_FINGERPRINT" | sed 's/://g' | tr 'A-F' 'a-f')
        say "downloading $PHX_CA_URL (its certificate checked by fingerprint)"
        curl -fsSLk --retry 3 -o "$work/url" "$PHX_CA_URL" || die "cannot download $PHX_CA_URL"
        before=$count
        take "$work/url" "ca_url ($PHX_CA_URL)"
        # Only the root with the fingerprint is trusted: the others came over an unverified connection.
        found=0
        n=$before
        while [ "$n" -lt "$count" ]; do
            n=$((n + 1))
            if [ "$found" = 0 ] && [ "$(fingerprint "$work/out/phoenix-$n.crt")" = "$want" ]; then
                found=1
                [ "$n" = "$((before + 1))" ] || mv -f "$work/out/phoenix-$n.crt" "$work/out/phoenix-$((before + 1)).crt"
            else
                rm -f "$work/out/phoenix-$n.crt"
            fi
        done
        [ "$found" = 1 ] || die "no certificate from $PHX_CA_URL has the fingerprint $PHX_CA_FINGERPRINT (ca_fingerprint)"
        count=$((before + 1))
    else
        fetch "$PHX_CA_URL" "$work/url"
        take "$work/url" "ca_url ($PHX_CA_URL)"
    fi
elif [ -n "$PHX_CA_FINGERPRINT" ]; then
    die "ca_fingerprint is given without ca_url"
fi

changed=0
fresh=
n=0
while [ "$n" -lt "$count" ]; do
    n=$((n + 1))
    put_file "$store/phoenix-$n.crt" 644 <"$work/out/phoenix-$n.crt"
    [ "$wrote" = 0 ] || changed=1
    # update-ca-certificates links each certificate as /etc/ssl/certs/<name>.pem.
    [ -e "/etc/ssl/certs/phoenix-$n.pem" ] || changed=1
done
for f in "$store"/phoenix-*.crt; do
    [ -e "$f" ] || continue
    k=${f#"$store"/phoenix-}
    k=${k%.crt}
    case "$k" in
    *[!0-9]* | '') continue ;;
    esac
    if [ "$k" -gt "$count" ]; then
        remove_file "$f"
        changed=1
        fresh=--fresh
    fi
done
if [ "$changed" = 1 ]; then
    # --fresh (links made again) when one was removed: otherwise its links stay, dangling.
    update-ca-certificates ${fresh:-} >/dev/null || die "update-ca-certificates failed"
    did "updated the trusted certificates ($count from Phoenix)"
fi
finish
