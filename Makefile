# The two commands of the README: `make run` and `make test`. Both set up .venv first, once.
VENV   := .venv
STAMP  := $(VENV)/.installed
INPUTS := requirements/lock.txt requirements/constraints.txt pyproject.toml scripts/setup.sh

.PHONY: setup run test bench lock clean-lake readme

setup: $(STAMP)

$(STAMP): $(INPUTS)
	bash scripts/setup.sh
	touch $@

run: $(STAMP)
	@bash scripts/install_wordnet.sh >/dev/null  # WordNet for the concepts' polysemy breakdown (apt-get as root, else a hint)
	$(VENV)/bin/vlalign run

test: $(STAMP)
	bash scripts/install_chromium.sh   # headless Chromium for the report test: apt-get as root (CI), else a hint
	bash scripts/install_wordnet.sh    # WordNet for the polysemy breakdown: apt-get as root (CI), else a hint
	$(VENV)/bin/python -m pytest -q --durations=15 $(PYTEST_ARGS)

# The README's results block, from the default run in ./lake (after `make run`).
readme: $(STAMP)
	$(VENV)/bin/python scripts/readme_results.py --lake lake

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(VENV)/bin/python $$b --quick || exit 1; done

# Re-resolve the pins from requirements/base.txt (needs the package registry).
lock:
	python3 -m venv /tmp/vlalign-lock && /tmp/vlalign-lock/bin/pip install -q -c requirements/constraints.txt -r requirements/base.txt
	{ echo "# Exact versions resolved from requirements/base.txt with requirements/constraints.txt (pip freeze)."; \
	  echo "# Regenerate: make lock"; /tmp/vlalign-lock/bin/pip freeze | sed 's/^torch==2.13.0+cpu/torch==2.13.0/'; } > requirements/lock.txt

clean-lake:
	rm -rf lake .prefect
