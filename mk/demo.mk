# make demo: the whole pipeline on one machine (`streamline demo`, streamline/demo.py):
# `make infra-up`, the local ESM runner, load.py over both sources with some poison, verify.py,
# a summary line — and always `make infra-down` and the runner stopped, whatever failed.
# DEMO_ARGS passes options, e.g. make demo DEMO_ARGS="--count 5000 --aggregate".

DEMO_ARGS ?=

.PHONY: demo

demo: install
	$(STREAMLINE) demo $(DEMO_ARGS)
