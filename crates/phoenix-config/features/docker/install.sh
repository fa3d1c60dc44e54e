# docker: the engine from Docker's apt repository or the distribution, what a container without
# systemd needs to run it, its daemon.json, started and enabled at boot, then Portainer.
require_os

case "$PHX_DOCKER_SOURCE" in
docker)
    engine="docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin"
    other=docker.io
    ;;
distribution)
    engine=docker.io
    other=docker-ce
    ;;
*) die "docker_source is \"$PHX_DOCKER_SOURCE\": it takes \"docker\" or \"distribution\"" ;;
esac
# The two engines conflict; replacing one with the other is left to the user (it restarts every
# container and may change the storage driver).
! installed "$other" || die "$other is installed but docker_source is \"$PHX_DOCKER_SOURCE\"; remove it first (apt-get purge $other) or set docker_source to the source it came from"

list=/etc/apt/sources.list.d/docker.list
keyring=/etc/apt/keyrings/docker.asc
if [ "$PHX_DOCKER_SOURCE" = docker ]; then
    repo=${PHX_DOCKER_REPO_URL%/}/$OS_ID
    key=${PHX_DOCKER_REPO_KEY_URL:-$repo/gpg}
    # The key is fetched when it is missing or comes from elsewhere now, not on every run.
    key_source=$(state_file repo-key-source)
    if [ ! -s "$keyring" ] || [ "$(cat "$key_source" 2>/dev/null)" != "$key" ]; then
        apt_install ca-certificates
        mkdir -p /etc/apt/keyrings
        fetch "$key" "$keyring.download"
        grep -q 'BEGIN PGP PUBLIC KEY BLOCK' "$keyring.download" || {
            rm -f "$keyring.download"
            die "$key is not an ASCII-armored OpenPGP key (docker_repo_key_url)"
        }
        put_file "$keyring" 644 <"$keyring.download"
        rm -f "$keyring.download"
        echo "$key" >"$key_source"
    fi
    put_file "$list" 644 <<LIST
# Written by Phoenix (feature docker, docker_repo_url).
deb [arch=$(arch) signed-by=$keyring] $repo $OS_CODENAME stable
LIST
    # A new source needs a fresh package list, even after an update earlier in this run.
    [ "$wrote" = 0 ] || phx_apt_updated=0
elif grep -qs '^# Written by Phoenix (feature docker' "$list"; then
    remove_file "$list"
    remove_file "$keyring"
fi

# shellcheck disable=SC2086
apt_install $engine

# Without systemd, docker's System V script raises the open-files and process limits, which
# fails (and stops the script) without CAP_SYS_RESOURCE, as in many unprivileged containers.
# Where raising is not permitted, the script falls back to the hard limit. Its other needs, the
# cgroup hierarchies, it mounts itself (cgroupfs_mount).
init=/etc/init.d/docker
# (The probes run in the shell docker's script runs in; the sed programs write shell text.)
# shellcheck disable=SC3045,SC2016
if ! systemd_running && [ -f "$init" ]; then
    if ! (ulimit -n 1048576) 2>/dev/null && grep -q '^[[:space:]]*ulimit -n 1048576$' "$init"; then
        sed -i 's/^\([[:space:]]*\)ulimit -n 1048576$/\1ulimit -n 1048576 2>\/dev\/null || ulimit -n "$(ulimit -Hn)"/' "$init"
        did "$init falls back to the hard open-files limit"
    fi
    if ! (ulimit -p unlimited) 2>/dev/null && grep -q '^[[:space:]]*ulimit -p unlimited$' "$init"; then
        sed -i 's/^\([[:space:]]*\)ulimit -p unlimited$/\1ulimit -p unlimited 2>\/dev\/null || ulimit -p "$(ulimit -Hp)"/' "$init"
        did "$init falls back to the hard process limit"
    fi
fi

# daemon.json: written when given; when no longer given, removed only if it is still what
# Phoenix wrote last (a copy is kept in the feature's state).
daemon_json=/etc/docker/daemon.json
last_written=$(state_file daemon.json)
config_changed=0
case "$PHX_DOCKER_DAEMON_CONFIG" in
'' | '{}')
    if [ -f "$daemon_json" ] && [ -f "$last_written" ]; then
        if cmp -s "$daemon_json" "$last_written"; then
            remove_file "$daemon_json"
            config_changed=1
        else
            say "keeping $daemon_json: it was changed after Phoenix wrote it"
        fi
    fi
    rm -f "$last_written"
    ;;
*)
    put_file "$daemon_json" 644 <<JSON
$PHX_DOCKER_DAEMON_CONFIG
JSON
    config_changed=$wrote
    cp "$daemon_json" "$last_written"
    ;;
esac

# docker_log: the end of the daemon's log, for an error message.
docker_log() {
    if systemd_running; then
        journalctl -u docker --no-pager -n 20 2>&1 || true
    else
        tail -n 20 /var/log/docker.log 2>&1 || true
    fi
}

enable_service docker
if [ "$config_changed" = 1 ] && service_do docker status >/dev/null 2>&1; then
    # Stop, then start: the System V script's restart skips the stop where `ps` is missing.
    service_do docker stop >/dev/null || die "docker did not stop"
    service_do docker start >/dev/null || die "docker did not start with the new $daemon_json:
$(docker_log)"
    did "restarted docker for the new $daemon_json"
else
    ensure_running docker
fi
waited=0
until docker info >/dev/null 2>&1; do
    waited=$((waited + 1))
    [ "$waited" -lt 60 ] || die "docker did not answer within 60 s; the end of its log:
$(docker_log)"
    sleep 1
done

# portainer_container NAME IMAGE DOCKER-RUN-OPTION...: the container NAME runs IMAGE. One of
# the same name and image is left as it is (started if it stopped); one of another image is
# replaced when Phoenix made it.
portainer_container() {
    name=$1 image=$2
    shift 2
    if docker container inspect "$name" >/dev/null 2>&1; then
        current=$(docker container inspect -f '{{.Config.Image}}' "$name")
        if [ "$current" = "$image" ]; then
            [ "$(docker container inspect -f '{{.State.Running}}' "$name")" = true ] && return 0
            docker start "$name" >/dev/null || die "the container $name did not start"
            did "started the container $name"
            return 0
        fi
        [ "$(docker container inspect -f '{{index .Config.Labels "phoenix.feature"}}' "$name")" = docker ] ||
            die "a container named $name runs $current, and Phoenix did not make it; remove or rename it"
        docker rm -f "$name" >/dev/null
        did "removed the container $name ($current)"
    fi
    docker run -d --name "$name" --restart=always --label phoenix.feature=docker "$@" "$image" >/dev/null ||
        die "cannot run $image as $name (can the guest pull it? portainer_server_image and portainer_agent_image name the images)"
    did "started the container $name ($image)"
}

# portainer_gone NAME: the container NAME removed, when Phoenix made it.
portainer_gone() {
    docker container inspect "$1" >/dev/null 2>&1 || return 0
    [ "$(docker container inspect -f '{{index .Config.Labels "phoenix.feature"}}' "$1")" = docker ] || return 0
    docker rm -f "$1" >/dev/null
    did "removed the container $1"
}

case "$PHX_PORTAINER_ROLE" in
server)
    portainer_gone portainer_agent
    portainer_container portainer "$PHX_PORTAINER_SERVER_IMAGE" -p 8000:8000 -p 9443:9443 \
        -v /var/run/docker.sock:/var/run/docker.sock -v portainer_data:/data
    ;;
agent)
    portainer_gone portainer
    portainer_container portainer_agent "$PHX_PORTAINER_AGENT_IMAGE" -p 9001:9001 \
        -v /var/run/docker.sock:/var/run/docker.sock -v /var/lib/docker/volumes:/var/lib/docker/volumes -v /:/host
    ;;
'' | none | infrastructure)
    portainer_gone portainer
    portainer_gone portainer_agent
    ;;
*) die "portainer_role is \"$PHX_PORTAINER_ROLE\": it takes server, agent, none or infrastructure" ;;
esac

say "Docker $(docker version -f '{{.Server.Version}}') answers"
finish
