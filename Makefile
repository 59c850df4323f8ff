# flowprep: `make demo` runs the main job on the sample videos; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT := demo_out

.PHONY: demo test venv bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/flowprep extract data/samples -o $(DEMO_OUT) --algo tvl1 --jobs 2
	$(BIN)/flowprep inspect $(DEMO_OUT)
	@echo
	@echo "Output: $(DEMO_OUT)/  (one folder per video: img_*.jpg, flow_x_*.jpg, flow_y_*.jpg, meta.json)"
	@echo "Look at it:  $(BIN)/flowprep show $(DEMO_OUT) <VIDEO_ID> --frame 10 -o flow.png"
	@echo "Read it:     $(BIN)/python -c \"import flowprep; s = flowprep.open_store('$(DEMO_OUT)'); print(s.video_ids)\""

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q tests

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_extract.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info
