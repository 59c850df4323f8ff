# flowprep: `make demo` runs the main job on the sample videos; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT := demo_out

.PHONY: demo test venv bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel

# libjpeg-turbo's headers let pip build flowprep._jpegcrop, the loader's crop decoding
# (optional for users: without it the loader decodes whole planes with OpenCV).
# A C compiler builds flowprep._tvl1, the native TV-L1 (the CPU default for --algo tvl1;
# without it TV-L1 falls back to OpenCV's, ~10x slower).
$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml setup.py flowprep/_jpegcrop.c flowprep/_tvl1.c
	@command -v cc >/dev/null || command -v gcc >/dev/null || { command -v apt-get >/dev/null && \
	  { apt-get install -y -q gcc libc6-dev || { apt-get update -q && apt-get install -y -q gcc libc6-dev; }; }; } || \
	  echo "note: no C compiler found; flowprep._tvl1 will not be built (TV-L1 falls back to OpenCV)"
	@test -f /usr/include/jpeglib.h || { command -v apt-get >/dev/null && \
	  { apt-get install -y -q libjpeg62-turbo-dev || { apt-get update -q && apt-get install -y -q libjpeg62-turbo-dev; }; }; } || \
	  echo "note: libjpeg-turbo headers not found; flowprep._jpegcrop will not be built"
	$(BIN)/pip install -q -e .
	touch $@

# strace: tests/test_durability.py reads the order of syncfs/fsync/rename off a real run
# chromium + chromium-driver: tests/test_report.py opens the report in a real headless browser
# gcc-aarch64-linux-gnu + qemu-user: tests/test_native_tvl1.py builds the TV-L1 kernel for
# aarch64 and checks under qemu that it gives the x86-64 build's flow bit for bit
$(VENV)/.installed-test: $(VENV)/.installed
	@command -v strace >/dev/null || { command -v apt-get >/dev/null && \
	  { apt-get install -y -q strace || { apt-get update -q && apt-get install -y -q strace; }; }; } || \
	  echo "note: strace not found; the durability tests will be skipped"
	@{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || \
	  { command -v apt-get >/dev/null && { apt-get install -y -q chromium chromium-driver || \
	    { apt-get update -q && apt-get install -y -q chromium chromium-driver; }; }; } || \
	  echo "note: chromium/chromedriver not found; the report's browser test will be skipped"
	@{ command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null; } || \
	  { command -v apt-get >/dev/null && { apt-get install -y -q gcc-aarch64-linux-gnu qemu-user || \
	    { apt-get update -q && apt-get install -y -q gcc-aarch64-linux-gnu qemu-user; }; }; } || \
	  echo "note: aarch64 cross compiler/qemu not found; the aarch64 bit-identity test will be skipped"
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	@echo "TV-L1 on the CPU (flowprep's native TV-L1): about 0.045 CPU-s per 340x256 pair (0.04-0.09 s at these clips' widths); this takes under a minute."
	$(BIN)/flowprep extract data/samples -o $(DEMO_OUT) --algo tvl1 --jobs 2
	$(BIN)/flowprep inspect $(DEMO_OUT)
	$(BIN)/flowprep show $(DEMO_OUT) Biking/v_Biking_g01_c01 --frame 10 -o $(DEMO_OUT)/flow.png
	$(BIN)/flowprep report $(DEMO_OUT) -o $(DEMO_OUT)/report.html
	@echo
	@echo "Output: $(DEMO_OUT)/  (a folder per video: img_*.jpg, flow_x_*.jpg, flow_y_*.jpg, meta.json;"
	@echo "        rgb_list.txt / flow_list.txt for TSN-pytorch and mmaction2)"
	@echo "Picture: $(DEMO_OUT)/flow.png  (RGB frame, colour-coded flow, dx and dy as stored)"
	@echo "Report:  $(DEMO_OUT)/report.html  (open it in a browser: plots, outliers, flow pictures)"
	@echo "Read it: $(BIN)/python -c \"import flowprep; s = flowprep.open_store('$(DEMO_OUT)'); v = s[s.video_ids[0]]; print(v, v.flow(0).shape)\""

# FLOWPREP_REQUIRE_JPEGCROP=1 / FLOWPREP_REQUIRE_TVL1=1: a test fails if the crop-decoding
# or the TV-L1 extension did not build; FLOWPREP_REQUIRE_BROWSER=1 (where apt-get could
# install chromium): the report's browser test fails rather than skips without it;
# FLOWPREP_REQUIRE_AARCH64=1 (likewise): the aarch64 bit-identity test fails without its tools
test: $(VENV)/.installed-test
	FLOWPREP_REQUIRE_JPEGCROP=1 FLOWPREP_REQUIRE_TVL1=1 \
	FLOWPREP_REQUIRE_BROWSER=$$(command -v apt-get >/dev/null && echo 1) \
	FLOWPREP_REQUIRE_AARCH64=$$(command -v apt-get >/dev/null && echo 1) \
	$(BIN)/python -m pytest -q tests

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_extract.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info flowprep/*.so
