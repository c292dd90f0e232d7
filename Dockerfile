# One image for web, worker and beat (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so that a code change does not reinstall them.
COPY requirements.txt .
RUN pip install -r requirements.txt

# The code belongs to root; the app user may write only under var/ (static, media).
RUN useradd --create-home --uid 1000 morale
COPY . .
RUN SECRET_KEY=collectstatic-at-build-time-only \
    DJANGO_SETTINGS_MODULE=morale.settings.production \
    python manage.py collectstatic --noinput \
    && mkdir -p var/media \
    && chown -R morale:morale var

USER morale
ENV DJANGO_SETTINGS_MODULE=morale.settings.production
EXPOSE 8000
CMD ["gunicorn", "morale.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", "--access-logfile", "-"]
