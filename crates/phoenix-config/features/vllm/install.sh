# vllm: vLLM from pip (a virtual environment in /opt/vllm) or as its Docker image, and, when the
# guest names a model, the service `vllm` serving it with the OpenAI-compatible API on
# 0.0.0.0:<port>. Without a model (a template, an install-only guest) it only installs.
require_os

venv=/opt/vllm
home=/var/lib/vllm
envfile=/etc/default/vllm
image=${PHX_VLLM_IMAGE:-vllm/vllm-openai:v$PHX_VLLM_VERSION}

# python3 reads the engine settings (and makes the virtual environment); curl checks the API.
apt_install python3 curl

# The arguments of `vllm serve` after the model, as shell-quoted words: the port and host, the
# parameters given, each key of vllm_engine_config as --kebab-case (true: the flag alone; false:
# left out; a list: its elements; an object: JSON), then vllm_args. Keys a parameter gives are
# taken from the parameter. Prints the model first, then the port, then the words.
serve_args() {
    python3 - "$PHX_VLLM_ENGINE_CONFIG" "$PHX_VLLM_MODEL" "$PHX_VLLM_PORT" "$PHX_VLLM_SERVED_MODEL_NAME" \
        "$PHX_VLLM_TENSOR_PARALLEL_SIZE" "$PHX_VLLM_GPU_MEMORY_UTILIZATION" "$PHX_VLLM_MAX_MODEL_LEN" <<'PY'
import json, shlex, sys
engine = json.loads(sys.argv[1] or "{}")
model, port, served, tp, mem, maxlen = sys.argv[2:8]
flat = {}
for section in ("ModelConfig", "CacheConfig", "ParallelConfig", "ServerConfig"):
    flat.update(engine.get(section) or {})
model = model or flat.get("model") or ""
port = port or str(flat.get("port") or 8000)
given = {"model": model, "port": port, "host": flat.get("host") or "0.0.0.0", "served_model_name": served,
         "tensor_parallel_size": tp, "gpu_memory_utilization": mem, "max_model_len": maxlen}
words = []
for key in ("host", "port", "served_model_name", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len"):
    value = given[key] or flat.get(key)
    if value not in (None, ""):
        words += ["--" + key.replace("_", "-"), str(value)]
for key, value in flat.items():
    if key in given:
        continue
    flag = "--" + key.replace("_", "-")
    if value is True:
        words.append(flag)
    elif value is False or value is None:
        continue
    elif isinstance(value, list):
        words += [flag] + [v if isinstance(v, str) else json.dumps(v) for v in value]
    elif isinstance(value, dict):
        words += [flag, json.dumps(value, separators=(",", ":"))]
    else:
        words += [flag, str(value)]
print(model)
print(port)
print(" ".join(shlex.quote(w) for w in words))
PY
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
serve_args >"$work/args" || die "vllm_engine_config cannot be read: $PHX_VLLM_ENGINE_CONFIG"
model=$(sed -n 1p "$work/args")
port=$(sed -n 2p "$work/args")
words=$(sed -n 3p "$work/args")

case "$PHX_VLLM_SOURCE" in
pip)
    apt_install python3-venv
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" || die "python3 -m venv $venv failed"
        did "created the virtual environment $venv"
    fi
    have=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("vllm"))' 2>/dev/null || true)
    if [ "$have" = "$PHX_VLLM_VERSION" ]; then
        say "vllm $have installed in $venv"
    else
        case "$PHX_VLLM_INDEX_URL" in
        /*) set -- --no-index --find-links "$PHX_VLLM_INDEX_URL" ;;
        *) set -- --index-url "$PHX_VLLM_INDEX_URL" ;;
        esac
        say "installing vllm $PHX_VLLM_VERSION with pip (from $PHX_VLLM_INDEX_URL)"
        if ! "$venv/bin/pip" install --disable-pip-version-check -q "$@" "vllm==$PHX_VLLM_VERSION" >"$work/pip.log" 2>&1; then
            tail -n 20 "$work/pip.log" >&2
            die "pip install vllm==$PHX_VLLM_VERSION failed"
        fi
        did "installed vllm $PHX_VLLM_VERSION in $venv${have:+ (was $have)}"
        upgraded=1
    fi
    user=vllm
    gpu_user vllm "$home"
    set -- "$venv/bin/vllm" serve
    ;;
image)
    command -v docker >/dev/null 2>&1 || die "vllm_source is \"image\", but Docker is not installed: put the docker feature before vllm, or use vllm_source \"pip\""
    if ! docker image inspect "$image" >/dev/null 2>&1; then
        say "pulling $image"
        docker pull -q "$image" >/dev/null || die "docker pull $image failed"
        did "pulled $image"
        upgraded=1
    fi
    user=root
    mkdir -p "$home"
    set -- /usr/bin/docker run --rm --name vllm --gpus all --ipc=host -p "$port:$port" \
        -v "$home/huggingface:/root/.cache/huggingface" --env-file "$envfile" "$image"
    ;;
*) die "vllm_source is \"$PHX_VLLM_SOURCE\": pip or image" ;;
esac

unit=/etc/systemd/system/vllm.service
if [ -z "$model" ]; then
    say "no model given (vllm_model, or vllm_engine_config.ModelConfig.model): vLLM is installed, no service runs"
    if grep -qs "feature vllm" "$unit"; then
        service_do vllm stop >/dev/null 2>&1 || true
        if systemd_running; then systemctl disable -q vllm 2>/dev/null || true; fi
        [ ! -x /etc/init.d/vllm ] || update-rc.d -f vllm remove >/dev/null 2>&1 || rm -f /etc/rc?.d/[SK]??vllm
        remove_file "$unit"
        remove_file /etc/init.d/vllm
        say "the service vllm of an earlier model was removed"
    fi
    finish
    exit 0
fi

{
    echo "# Written by Phoenix (feature vllm): the service's environment."
    # The image keeps its downloads in /root/.cache/huggingface, a directory of $home.
    [ "$PHX_VLLM_SOURCE" = image ] || echo "HF_HOME=$home/huggingface"
} >"$work/env"
put_file "$envfile" 644 <"$work/env"
env_changed=$wrote
eval "set -- \"\$@\" \"\$model\" $words"
eval "set -- \"\$@\" $PHX_VLLM_ARGS"
define_service vllm "vLLM serving $model" "$user" "$home" "$envfile" "$@"
enable_service vllm
restart=0
if [ "$service_changed" = 1 ] || [ "$env_changed" = 1 ] || [ "${upgraded:-0}" = 1 ]; then restart=1; fi
url="http://127.0.0.1:$port/v1/models"
bring_up vllm "$restart" "$url" "$PHX_VLLM_START_TIMEOUT" \
    "vLLM does not answer on $url after $PHX_VLLM_START_TIMEOUT s (its log is above)"
say "serving $model on port $port"
finish
