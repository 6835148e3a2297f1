# The two commands of the README. Each sets up .venv first when needed.
.PHONY: setup demo test lint clean lerobot-venv

VENV ?= .venv
PY := $(VENV)/bin/python

setup:
	@bash scripts/setup.sh

# The demo's seed (layouts, held-out layouts, learner): `make demo SEED=3`.
SEED ?= 0
demo: setup
	@$(VENV)/bin/sop demo --seed $(SEED) $(ARGS)

# Isolate DDS traffic: localhost only, and a domain id of this run's own.
test: setup
	@ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(PY) -m pytest $(ARGS)

# LeRobot in a venv of its own, for the π0 cross-check (test_lerobot_crosscheck.py).
lerobot-venv:
	@bash scripts/lerobot_venv.sh

lint: setup
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) sop_msgs/build build *.egg-info
