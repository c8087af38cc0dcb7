# A Ray node for `relatlas bench ... --ray-address` and simulated federations:
# the head runs `ray start --head`, workers `ray start --address=ray-head:6379`.
ARG APP_IMAGE=relatlas-app:0.1.0
FROM ${APP_IMAGE}

USER 10001:10001
EXPOSE 6379
ENTRYPOINT ["ray", "start", "--block"]
