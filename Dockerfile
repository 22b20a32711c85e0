# syntax=docker/dockerfile:1
# The seat bot as an image: the wheel and the locked dependencies (requirements.txt), a non-root user.
# Not built in CI (no container engine there). Its build and install steps are deploy/build.sh and
# deploy/install.sh, which tests/test_wheel.py runs exactly so; tests/test_container.py checks that this
# file installs nothing any other way, and that CMD is the Procfile's command.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN sh deploy/build.sh /dist

FROM python:${PYTHON_VERSION}-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/seatbot/bin:$PATH PORT=3000
COPY --from=build /dist /tmp/dist
COPY requirements.txt deploy/install.sh /tmp/
RUN sh /tmp/install.sh /opt/seatbot /tmp/requirements.txt /tmp/dist \
    && rm -rf /tmp/dist /tmp/install.sh /tmp/requirements.txt
RUN useradd --system --uid 10001 --create-home --home-dir /home/seatbot seatbot
USER 10001
# An empty working directory: settings come from the environment (a .env here would be read too).
WORKDIR /home/seatbot
EXPOSE 3000
# /healthz: 200 while the process serves (liveness; /readyz follows Redis). Socket Mode and `python -m bot
# jobs` answer it only with SEATBOT_HEALTH_PORT=3000 (README, Production deploy).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]
CMD ["python", "-m", "bot", "start"]
