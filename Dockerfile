# One image for every process of the stack; the command picks the process.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/app:/app/gen CASHBACK_ENV=prod
WORKDIR /app

COPY pyproject.toml constraints.txt ./
COPY services services
COPY gateway gateway
COPY web web
COPY fakes fakes
COPY scripts scripts
COPY protos protos
COPY buf.yaml ./
RUN pip install --no-cache-dir -c constraints.txt -e '.[dev]' \
 && python scripts/gen_protos.py

RUN useradd --system --uid 10001 cashback && mkdir -p /app/var && chown cashback /app/var
USER cashback
# Overridden per service in docker-compose.yml.
CMD ["python", "-m", "gateway"]
