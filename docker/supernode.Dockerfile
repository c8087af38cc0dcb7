# A Flower SuperNode that runs relatlas ClientApps in subprocesses, so it needs
# the app's dependencies: it is the app image with the SuperNode as entry point.
ARG APP_IMAGE=relatlas-app:0.1.0
FROM ${APP_IMAGE}

USER 10001:10001
ENTRYPOINT ["flower-supernode"]
