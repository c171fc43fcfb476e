# ivr-bridge service image: Python 3.13 (audioop comes from audioop-lts), non-root.
FROM python:3.13-slim AS build
# A C compiler for the one compiled module (ivr_bridge/_wsfast.c, the media frames' hot path);
# only in this stage: the final image gets the built package, not the compiler.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY ivr_bridge ./ivr_bridge
RUN pip install --no-cache-dir --prefix=/install '.[nats]'

FROM python:3.13-slim
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin ivr
COPY --from=build /install /usr/local
COPY configs /app/configs
WORKDIR /app
USER 10001
ENV PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["ivr-bridge"]
CMD ["serve", "--config", "configs/production.toml"]
