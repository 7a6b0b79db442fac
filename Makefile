# Diffusion Internals: one entry point for learners, instructors and CI.
#   make book   set up .venv (first time only) and build the executed site into _build/html
#   make test   set up .venv (first time only), lint, and run the whole test suite (book build included)
#   make test-fast  the inner loop: lint and every test not marked slow (all of the core's)
#   make pdf    the print edition of the built site (_build/pdf/);  make dist  the sdist and wheel (dist/)
# Instructors: make release | autograde | grades | feedback   (see README.md)
#   from an LMS: make collect-zip ZIP=... ASSIGNMENT=... ROSTER=...  then  make lms-grades LMS=canvas|moodle ...
#   on a JupyterHub: make hub (JupyterHub and its proxy), then deploy/jupyterhub/README.md
# GPU: make wheelhouse here, then make gpu-check OUT=... on the GPU machine (GPU_CHECK_DRY=1: its CPU dry run)

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
STAMP       := $(VENV)/.installed
KERNEL      := diffusion-internals
# Extra pip arguments, e.g. PIP_ARGS="--extra-index-url <a torch CUDA index>" (see README, GPU notes).
PIP_ARGS    ?=
PYTEST_ARGS ?=
# Assignments are the folders of solutions/ (nbgrader source notebooks).
ASSIGNMENTS := $(patsubst solutions/%/,%,$(sort $(dir $(wildcard solutions/*/*.ipynb))))
NBGRADER    := $(BIN)/nbgrader
# nbgrader runs helper programs (alembic) by name: the environment's bin comes first.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help setup book book-strict notebooks linkcheck lint format test test-fast bench bench-course models release autograde grades feedback serve clean clean-grading

help:
	@sed -n '1,9p' Makefile

# The environment: rebuilt only when pyproject.toml or the pinned versions change.
# SETUP=0: use an environment set up elsewhere, never install into it (a JupyterHub's shared, read-only one:
# deploy/jupyterhub/ sets VENV and SETUP=0 in its terminals; the GPU check's private one).
SETUP ?= 1
ifeq ($(SETUP),0)
$(STAMP):
	@test -x $(BIN)/python || (echo "SETUP=0, but there is no environment at $(VENV) (set VENV)"; exit 1)
else
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) $(PIP_ARGS) --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) $(PIP_ARGS) -e '.[course,test]'
	# k-diffusion without its heavy extras: a test oracle, and chapter 4 runs its samplers (course.kdiffusion).
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) --no-deps k-diffusion torchdiffeq torchsde trampoline
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (diffusion-internals)" >/dev/null
	$(BIN)/python -m diffusion_internals.course.grading.kernel install >/dev/null
	touch $(STAMP)
endif

setup: $(STAMP)

# Executed build; execution is cached in _build/.jupyter_cache, so a rebuild with no
# changed chapter only re-renders.
# scripts/execute_book.py first runs the chapters into the build's cache, one per core (the build alone runs them
# one after another); the build then renders from the cache.
book: $(STAMP)
	$(BIN)/python scripts/execute_book.py
	$(BIN)/jupyter-book build . --keep-going
	@echo "Open _build/html/index.html"

# What CI checks: every page re-read, warnings are errors (execution still cached).
book-strict: $(STAMP)
	$(BIN)/python scripts/execute_book.py
	$(BIN)/jupyter-book build . --all -W -n --keep-going

# Every executable chapter as a clean .ipynb (no outputs) in _build/notebooks/, the same files the
# build puts in _build/html/_notebooks/ (the same module, book/_ext/launch_paths.py, run as a script);
# the Pages workflow pushes them to the orphan `notebooks` branch that the "Open in Colab" links open.
notebooks: $(STAMP)
	$(BIN)/python book/_ext/launch_paths.py --out _build/notebooks

# External links and images of the site (needs network; CI runs it weekly, .github/workflows/links.yml).
linkcheck: $(STAMP)
	$(BIN)/jupyter-book build . --builder linkcheck

# ruff: lint (pyflakes, pycodestyle, import order, bugbear, pyupgrade) and format, configured in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Under 3 minutes on 2 cores: every test not marked slow, in tests/package (all of the core's; sd has two slow
# ones) and tests/course.
test-fast: lint
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Speed tables (benchmarks/*.py print a table and write benchmarks/results/*.csv); CPU, one thread.
# sampler_overhead compares with k-diffusion, imported through diffusion_internals.course.kdiffusion.
bench: $(STAMP)
	$(BIN)/python benchmarks/sampler_overhead.py
	$(BIN)/python benchmarks/end_to_end.py
	$(BIN)/python benchmarks/quality_vs_nfe.py
	$(BIN)/python benchmarks/sd_latency.py

# What running the course costs (book cold and warm, the suite, autograde per submission for every
# assignment at full settings): about 40 min on 2 cores, so not part of `make bench`.
bench-course: $(STAMP)
	$(BIN)/python benchmarks/course_operations.py

# Retrain every committed checkpoint in src/diffusion_internals/course/checkpoints/ (CPU, one thread
# each: about 7 min per digits model, 40 min per colour model, 2-2.5 h in all; the exact
# commands are in scripts/train_models.sh, and each training.json records its own).
models: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/train_models.sh

serve: book
	$(BIN)/python -m http.server --directory _build/html 8000

# The print edition: each page of the built site printed by headless Chromium once MathJax has typeset it
# (scripts/print_pdf.py) to _build/pdf/<page>.pdf, and the whole book to _build/pdf/diffusion-internals.pdf.
# Needs chromium, chromium-driver and poppler-utils (Debian/Ubuntu: sudo apt-get install -y ...).
.PHONY: pdf
pdf: book
	$(BIN)/python scripts/print_pdf.py

# The release artefacts that .github/workflows/release.yml publishes on a tag vX.Y.Z: sdist and wheel in dist/
# (emptied first), checked by twine and by scripts/check_dist.py (every file git tracks in src/diffusion_internals/,
# checkpoints and tokenizer included, is in the wheel). Needs only build and twine (the `release` extra, pinned
# in the constraints, installed when missing), not the course set-up; the isolated build gets the pinned setuptools.
# The egg-info of an earlier build goes first: setuptools would ship the files its SOURCES.txt lists, as if selected.
.PHONY: dist
dist:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import build, twine" 2>/dev/null || \
	  $(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) $(PIP_ARGS) build twine
	rm -rf dist src/diffusion_internals.egg-info
	PIP_CONSTRAINT=$(abspath $(CONSTRAINTS)) $(BIN)/python -m build --outdir dist .
	$(BIN)/python -m twine check --strict dist/*
	$(BIN)/python scripts/check_dist.py dist

# The GPU check's wheelhouse (scripts/wheelhouse.py): what the GPU machine's image lacks, for a machine without network.
# Into .whl/gpu-check/ (emptied first): requirements/gpu-wheelhouse.txt's pins as CPython 3.12 manylinux wheels, this
# package's wheel built from the working tree, bubblewrap's .deb (apt-get download), and LISTING.md (file, size, why);
# fails over 60 MiB. Needs network, pip and apt-get; not the course set-up.
.PHONY: wheelhouse
wheelhouse:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python scripts/wheelhouse.py

# The GPU check (scripts/gpu_check.sh): on a CUDA machine with no network, after `make wheelhouse` here (carry .whl):
# the wheelhouse into a private folder, then the gpu tests, 300 training steps on CUDA, our SD loop against
# pipe(...) on SD 1.5's architecture, make autograde-gpu on Project B; one summary table in OUT. It runs on the
# GPU image's own Python and packages, so it needs no set-up. GPU_CHECK_DRY=1: the same steps on the CPU, tiny.
.PHONY: gpu-check
OUT ?= _build/gpu-check
gpu-check:
	bash scripts/gpu_check.sh $(OUT)

# --- instructors (nbgrader); always --force, or nbgrader silently keeps stale output ---
release: $(STAMP)
	@for a in $(ASSIGNMENTS); do $(NBGRADER) generate_assignment $$a --force || exit 1; done

# Depends on release: nbgrader grades against the cells that generate_assignment stored in
# gradebook.db, so the release is (re)generated first; it is byte-identical when unchanged.
# scripts/autograde.py grades every submission in its own bubblewrap sandbox (the hidden tests run in the
# grader's process), JOBS at a time on Dask workers, only what changed since the last run unless FORCE=1;
# then nbgrader autograde writes the gradebook; grading_report.md starts with what needs attention.
# It refuses to run without bubblewrap and cgroups unless UNSAFE=1 (the report then says so at the top).
JOBS       ?= 1
ASSIGNMENT ?=
GRADE_ARGS  = --jobs $(JOBS) $(if $(FORCE),--force) $(if $(UNSAFE),--unsafe) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(ASSIGNMENT)
autograde: release
	$(BIN)/python scripts/autograde.py $(GRADE_ARGS)

# Graded Stable Diffusion projects, on a machine with an NVIDIA GPU (README: "Grading Stable Diffusion
# projects on a GPU"). As autograde, with the same sandbox, but: the GPU device files are bound into it,
# the GPUs in GPU_DEVICES are visible (CUDA_VISIBLE_DEVICES), each cell may run GPU_CELL_TIMEOUT seconds, and
# memory is limited by the sandbox's cgroup alone (an address-space limit, RLIMIT_AS, stops CUDA from starting).
.PHONY: autograde-gpu
GPU_DEVICES      ?= 0
GPU_CELL_TIMEOUT ?= 1800
autograde-gpu: release
	@CUDA_VISIBLE_DEVICES=$(GPU_DEVICES) $(BIN)/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else \
	  'autograde-gpu: torch sees no CUDA device with CUDA_VISIBLE_DEVICES=$(GPU_DEVICES); use make autograde on a CPU machine')"
	CUDA_VISIBLE_DEVICES=$(GPU_DEVICES) DIFFUSION_INTERNALS_CELL_TIMEOUT=$(GPU_CELL_TIMEOUT) \
	  $(BIN)/python scripts/autograde.py --gpu $(GRADE_ARGS)

grades: $(STAMP)
	$(NBGRADER) export --to grades.csv
	@echo "Wrote grades.csv"

feedback: $(STAMP)
	@for a in $(ASSIGNMENTS); do \
	  if ls -d autograded/*/$$a >/dev/null 2>&1; then $(NBGRADER) generate_feedback $$a --force || exit 1; fi; \
	done

# The LMS path (scripts/collect_zip.py, scripts/lms_return.py, diffusion_internals.course.grading.lms).
# collect-zip: a Canvas or Moodle "download all submissions" ZIP into submitted/ by nbgrader zip_collect with the
# course's collector; ROSTER (id,first_name,last_name,email,lms_user_id) maps names to student ids and goes into
# the gradebook. Files it could not import are listed with their reason, and it then exits 1.
# lms-grades (after autograde and feedback): downloaded/<ASSIGNMENT>/<LMS>_grades.csv in the shape LMS imports
# and <LMS>_feedback.zip named like the download's entries; COLUMN: the grade column's header (Canvas: required,
# "Title (id)" as its gradebook export writes it).
.PHONY: collect-zip lms-grades
ZIP    ?=
ROSTER ?=
LMS    ?=
COLUMN ?=
collect-zip: $(STAMP)
	$(BIN)/python scripts/collect_zip.py --zip "$(ZIP)" --roster "$(ROSTER)" $(ASSIGNMENT)

lms-grades: $(STAMP)
	$(BIN)/python scripts/lms_return.py --lms "$(LMS)" $(if $(COLUMN),--column "$(COLUMN)") $(ASSIGNMENT)

# JupyterHub and its proxy for the one-server classroom hub (deploy/jupyterhub/README.md): the `hub` extra, and
# configurable-http-proxy from npm at the pinned versions of deploy/jupyterhub/proxy/ (npm ci), in $(VENV)/hub-proxy.
.PHONY: hub
hub: $(STAMP)
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) $(PIP_ARGS) -e '.[hub]'
	@command -v npm >/dev/null || (echo "make hub: npm is missing (Debian/Ubuntu: sudo apt-get install -y npm)"; exit 1)
	mkdir -p $(VENV)/hub-proxy
	cp deploy/jupyterhub/proxy/package.json deploy/jupyterhub/proxy/package-lock.json $(VENV)/hub-proxy/
	cd $(VENV)/hub-proxy && npm ci --no-audit --no-fund --loglevel=error

clean:
	rm -rf _build

clean-grading:
	rm -rf submitted autograded feedback downloaded gradebook.db grades.csv grading_report.md .grading
