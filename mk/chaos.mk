# The chaos run (`streamline chaos`, streamline/chaos/): the demo pipeline under injected faults,
# every event checked. CHAOS_ARGS passes options, e.g. CHAOS_ARGS="--seed 42" to replay a run, or
# CHAOS_ARGS="--quick" for the few-thousand-event run that `make test` also does.
CHAOS_ARGS ?=

.PHONY: chaos
chaos: install esm-tools
	$(STREAMLINE) chaos $(CHAOS_ARGS)
