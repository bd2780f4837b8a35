# The two commands of a fresh clone:
#   make run    set up, migrate, load the demo data and serve on 127.0.0.1:$(PORT)
#   make test   set up and run the test suite
# Both install what they need (uv, then the locked dependencies) on first use.

PORT ?= 8000
PYTEST_ARGS ?=
PY := .venv/bin/python

UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif

.PHONY: setup run test lint format migrate demo worker beat bench bench-partitioning bench-admin clean

setup: .venv/.synced

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

run: setup
	@echo "Applying migrations (the first run takes about a minute)..."
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	@echo "Serving on http://127.0.0.1:$(PORT)/  (admin: /admin/, API docs: /api/docs/)"
	$(PY) manage.py runserver 127.0.0.1:$(PORT)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	.venv/bin/lint-imports

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

migrate: setup
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py seed_demo

# Against Redis (REDIS_URL) and a real database (DATABASE_URL):
worker: setup
	.venv/bin/celery -A billing_portal worker --loglevel=INFO --concurrency=2

beat: setup
	.venv/bin/celery -A billing_portal beat --loglevel=INFO

# Ingestion benchmark on PostgreSQL + Redis (see bench/ingest.py): prints events/s, latency
# percentiles and the raw INSERT/COPY baseline measured in the same run.
bench: setup
	$(PY) bench/ingest.py

# The admin with 1 M usage events and 10 k billing records (see bench/admin.py): the time of
# every changelist, the dashboard and an organisation page against 300 ms.
bench-admin: setup
	$(PY) bench/admin.py

# When the usage table needs partitioning (see bench/partitioning.py): ingestion costs as it
# grows, and removing a month from a plain against a partitioned table (about 12 minutes).
bench-partitioning: setup
	$(PY) bench/partitioning.py

clean:
	rm -rf .venv db.sqlite3 db.sqlite3-journal db.sqlite3-wal db.sqlite3-shm staticfiles
