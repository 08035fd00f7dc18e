# make demo  — set up everything, then run every pipeline end to end on the default (generated) data
# make test  — set up everything, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2
# OpenMP threads that spin while waiting slow everything down badly when the cores are shared
export OMP_WAIT_POLICY ?= PASSIVE
export MPLBACKEND := Agg

.PHONY: demo test setup debs models demo-long-memory demo-kws demo-video demo-music bench clean

setup: $(STAMP) debs

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,music,video,bench,deploy,live,voices]'
	@touch $@

debs:
	@bash scripts/setup_debian.sh

demo: setup
	$(MAKE) demo-long-memory demo-kws demo-video demo-music

demo-long-memory: setup
	$(PY) scripts/long_memory.py --T 100 --rnn-min-steps 0 --out runs/long_memory  # the RNN gets the LSTM's steps
	$(PY) -m pipelines.cli explain --task adding --checkpoint runs/long_memory/lstm/best.pt \
		--out runs/explain/gates-adding.png --overwrite
	$(PY) scripts/long_memory.py --task cloze --out runs/cloze

demo-kws: setup
	$(PY) scripts/kws.py demo --out runs/demo-kws
	$(PY) -m pipelines.cli explain --task kws --checkpoint runs/demo-kws/run/best.pt \
		--input "$$(ls runs/demo-kws/data/yes/*.wav | sort | head -n 1)" --out runs/explain/gates-kws.png --overwrite

demo-video: setup
	$(PY) scripts/video.py demo --out runs/demo-video
	$(PY) scripts/video.py demo --task predict --out runs/demo-video-predict

demo-music: setup
	$(PY) scripts/music.py demo --out runs/demo-music

# retrain every shipped model (pipelines/models/*.pt) from scratch; rewrites the README's model card
models: setup
	$(PY) scripts/make_models.py

test: setup
	$(PY) -m pytest tests

bench: setup
	$(PY) benchmarks/backbone.py

clean:
	rm -rf runs data
