# python_api_service: python3 and venv from apt, a system user, the virtual environment (made
# once), pip run only when the requirements or the index changed (a stamp under the feature's
# state), the environment file, and the service, restarted when any of these changed.
require_os
name=$PHX_PYTHON_API_NAME
case "$name" in
'' | [!a-zA-Z0-9]* | *[!a-zA-Z0-9_.-]*) die "python_api_name \"$name\" must start with a letter or digit and hold only letters, digits, _, . and -" ;;
esac
dir=${PHX_PYTHON_API_DIR:-/opt/$name}
case "$dir" in
/*) ;;
*) die "python_api_dir must be an absolute path: $dir" ;;
esac
[ -n "$PHX_PYTHON_API_COMMAND" ] || die "python_api_command is required: the command that serves the API, e.g. \"uvicorn main:app --host 0.0.0.0 --port 8000\""
venv=/opt/phoenix-venvs/$name
envfile=/etc/phoenix/$name.env
restart=0

apt_install python3 python3-venv
[ -z "$PHX_PYTHON_API_PORT" ] || command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
if ! id "$name" >/dev/null 2>&1; then
    useradd --system --home-dir "$dir" --no-create-home --shell /usr/sbin/nologin "$name"
    did "created the user $name"
fi
if [ ! -d "$dir" ]; then
    mkdir -p "$dir"
    did "created $dir (the application's code goes there)"
fi
if [ ! -x "$venv/bin/python3" ]; then
    python3 -m venv "$venv" || die "python3 -m venv $venv failed"
    did "created the virtual environment $venv"
fi

stamp=$(state_file "$name.requirements")
wanted=$(printf '%s\n%s\n' "$PHX_PYTHON_API_INDEX_URL" "$PHX_PYTHON_API_REQUIREMENTS")
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    eval "set -- $PHX_PYTHON_API_REQUIREMENTS"
    if [ "$#" -gt 0 ]; then
        case "$PHX_PYTHON_API_INDEX_URL" in
        /*) set -- --no-index --find-links "$PHX_PYTHON_API_INDEX_URL" "$@" ;;
        http://*)
            host=${PHX_PYTHON_API_INDEX_URL#http://}
            set -- --index-url "$PHX_PYTHON_API_INDEX_URL" --trusted-host "${host%%[:/]*}" "$@"
            ;;
        https://*) set -- --index-url "$PHX_PYTHON_API_INDEX_URL" "$@" ;;
        *) die "python_api_index_url must be an http(s) URL or an absolute path: $PHX_PYTHON_API_INDEX_URL" ;;
        esac
        say "pip install (python_api_requirements)"
        out=$("$venv/bin/pip" install -q --disable-pip-version-check "$@" 2>&1) || die "pip install failed: $out"
        did "installed the requirements into $venv"
        restart=1
    fi
    printf '%s\n' "$wanted" >"$stamp"
fi

env_json=$PHX_PYTHON_API_ENV
[ -n "$env_json" ] || env_json='{}'
vars=$(printf '%s' "$env_json" | python3 -c '
import json, re, sys
for k, v in json.load(sys.stdin).items():
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
        sys.exit("python_api_env: %r is not a name of an environment variable" % k)
    if v is None or isinstance(v, (dict, list)):
        sys.exit("python_api_env.%s must be a string, a number or a boolean" % k)
    v = ("true" if v else "false") if isinstance(v, bool) else str(v)
    if "\n" in v:
        sys.exit("python_api_env.%s holds a line break" % k)
    print("%s=\"%s\"" % (k, re.sub(r"([\"\\$`])", r"\\\1", v)))
' 2>&1) || die "$vars"
put_file "$envfile" 600 <<ENV
# Written by Phoenix (feature python_api_service, python_api_env).
PATH="$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VIRTUAL_ENV="$venv"
$vars
ENV
[ "$wrote" = 0 ] || restart=1

set -f
# shellcheck disable=SC2086
set -- $PHX_PYTHON_API_COMMAND
set +f
if [ -x "$venv/bin/$1" ]; then
    program="$venv/bin/$1"
elif [ "${1#/}" != "$1" ]; then
    program=$1
else
    program=$(command -v "$1") || die "python_api_command: \"$1\" is neither in $venv/bin (add its package to python_api_requirements) nor on the PATH"
fi
shift
define_service "$name" "Python API $name (Phoenix)" "$name" "$dir" "$envfile" "$program" "$@"
[ "$service_changed" = 0 ] || restart=1
enable_service "$name"
if [ "$restart" = 1 ] && service_do "$name" status >/dev/null 2>&1; then
    service_do "$name" restart >/dev/null || die "$name did not restart"
    did "restarted $name"
else
    ensure_running "$name"
fi

if [ -n "$PHX_PYTHON_API_PORT" ]; then
    url="http://127.0.0.1:$PHX_PYTHON_API_PORT/"
    waited=0
    while [ "$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$url" 2>/dev/null)" = 000 ]; do
        waited=$((waited + 1))
        [ "$waited" -lt 60 ] || die "$name does not answer at $url after 60 s (python_api_port); see /var/log/$name.log or journalctl -u $name"
        sleep 1
    done
fi
finish
