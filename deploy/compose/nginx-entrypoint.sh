#!/bin/sh
# Entry point of the `nginx` service (the nginx image, deploy/images/nginx). It renders the project's nginx.conf, the template the local
# stack renders too (scripts/stack/nginx.ts), and runs nginx in the foreground. Only the template's
# ${UPPER_CASE} placeholders are substituted (envsubst with an explicit list), so nginx's own variables
# ($host, $remote_addr, ...) stay as they are; a placeholder without a value stops the start.
set -eu

root="${PROJECT_ROOT:-/stampede}"
template="${NGINX_TEMPLATE:-$root/nginx.conf}"
conf="${NGINX_CONF_OUT:-/etc/nginx/nginx.conf}"
[ -f "$template" ] || {
  echo "nginx-entrypoint: no template at $template" >&2
  exit 1
}

# pid, logs and temp files, which the local stack keeps under its own folder. The logs go to the container's
# stdout and stderr, as in the official image.
export STACK_DIR="${STACK_DIR:-/var/cache/nginx/stampede}"
mkdir -p "$STACK_DIR/nginx/logs" "$STACK_DIR/nginx/temp"
ln -sf /dev/stdout "$STACK_DIR/nginx/logs/access.log"
ln -sf /dev/stderr "$STACK_DIR/nginx/logs/error.log"

export PUBLIC_DIR="${PUBLIC_DIR:-$root/public}"
# The Lua module (libnginx-mod-http-lua) and the edge's Lua, src/purchase/edge/edge.lua.
export NGINX_MODULES_DIR="${NGINX_MODULES_DIR:-/usr/lib/nginx/modules}"
export EDGE_LUA_DIR="${EDGE_LUA_DIR:-$root/src/purchase/edge}"

# Workers run as the unprivileged user of the image (Debian's www-data) when it can read the storefront in
# the bind-mounted checkout.
if [ -z "${NGINX_USER+set}" ]; then
  run_user=''
  for candidate in www-data nginx; do
    if id "$candidate" >/dev/null 2>&1; then
      run_user=$candidate
      break
    fi
  done
  if [ -n "$run_user" ] && su -s /bin/sh -c "test -r '$PUBLIC_DIR' && test -x '$PUBLIC_DIR'" "$run_user" 2>/dev/null; then
    NGINX_USER="user $run_user;"
  else
    NGINX_USER='user root; # the checkout is not readable by an unprivileged user'
  fi
fi
export NGINX_USER

# One upstream server per PM2 worker of the app container: app:23000 and app:23001 by default, written the
# way scripts/stack/nginx.ts writes them.
if [ -z "${API_UPSTREAM_SERVERS:-}" ]; then
  API_UPSTREAM_SERVERS=''
  i=0
  while [ "$i" -lt "${API_INSTANCES:-2}" ]; do
    line="        server ${API_HOST:-app}:$((${PORT:-23000} + i)) max_fails=0;"
    API_UPSTREAM_SERVERS="${API_UPSTREAM_SERVERS:+$API_UPSTREAM_SERVERS
}$line"
    i=$((i + 1))
  done
fi
export API_UPSTREAM_SERVERS

# The template's servers listen on 127.0.0.1, right for the local stack; in a container a published port
# arrives on the container's own interface, so the public server listens on NGINX_PUBLIC_ADDRESS (0.0.0.0).
# The admin server stays on loopback unless NGINX_ADMIN_ADDRESS says otherwise (docker-compose.yml publishes
# it on the host's loopback only).
public_address="${NGINX_PUBLIC_ADDRESS:-0.0.0.0}"
admin_address="${NGINX_ADMIN_ADDRESS:-127.0.0.1}"
source_conf=$(sed \
  -e "s/listen 127\.0\.0\.1:\${NGINX_PORT}/listen $public_address:\${NGINX_PORT}/" \
  -e "s/listen 127\.0\.0\.1:\${NGINX_ADMIN_PORT}/listen $admin_address:\${NGINX_ADMIN_PORT}/" \
  "$template")

names=$(printf '%s\n' "$source_conf" | grep -o '\${[A-Z][A-Z0-9_]*}' | sort -u | tr -d '${}')
missing=''
shell_format=''
for name in $names; do
  eval "value_set=\${$name+set}"
  [ "$value_set" = set ] || missing="$missing $name"
  shell_format="$shell_format \${$name}"
done
if [ -n "$missing" ]; then
  echo "nginx-entrypoint: $template needs values for:$missing" >&2
  exit 1
fi

printf '%s\n' "$source_conf" | envsubst "$shell_format" >"$conf"
echo "nginx-entrypoint: rendered $template into $conf"

nginx -t -c "$conf"
if grep -Eq '^[[:space:]]*daemon[[:space:]]' "$conf"; then
  exec nginx -c "$conf"
fi
exec nginx -c "$conf" -g 'daemon off;'
