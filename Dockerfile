FROM python:3.11.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TIMERCHECK_DB=/data/timercheck.db \
    HOST=0.0.0.0

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt \
    && useradd --system --uid 10001 --no-create-home timercheck \
    && mkdir /data \
    && chown timercheck /data
COPY timercheck.py .

USER 10001
EXPOSE 8080
CMD ["python", "timercheck.py"]
