# The nginx image of deploy/kubernetes/nginx.yaml: Debian bookworm's nginx (the one the local stack and
# docker-compose.yml run) with its Lua module, the project's nginx.conf as a template, the edge's Lua, the
# storefront, and the entry point that renders the template at start. Build from the repository root:
#   docker build -f deploy/kubernetes/nginx.Dockerfile -t stampede-nginx:latest .
# (nginx.Dockerfile.dockerignore beside this file replaces the root .dockerignore, which leaves out
# deploy/compose.)
FROM debian:bookworm-slim
RUN apt-get update \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx libnginx-mod-http-lua lua-cjson gettext-base \
  && rm -rf /var/lib/apt/lists/* \
  && chown -R www-data:www-data /var/log/nginx /var/lib/nginx
COPY nginx.conf /srv/stampede/nginx.conf
COPY deploy/compose/nginx-entrypoint.sh /srv/stampede/nginx-entrypoint.sh
COPY public /srv/stampede/public
COPY src/purchase/edge/edge.lua /srv/stampede/src/purchase/edge/edge.lua
USER www-data
STOPSIGNAL SIGQUIT
EXPOSE 28080
ENTRYPOINT ["sh", "/srv/stampede/nginx-entrypoint.sh"]
