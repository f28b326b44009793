# The ESM runner (esm/): kinesalite for its lineage and reshard tests, installed from the
# committed lock file into .tools/kinesalite (gitignored).
KINESALITE_DIR := .tools/kinesalite
KINESALITE := $(KINESALITE_DIR)/node_modules/kinesalite/package.json

$(KINESALITE): tools/kinesalite/package.json tools/kinesalite/package-lock.json
	mkdir -p $(KINESALITE_DIR)
	cp tools/kinesalite/package.json tools/kinesalite/package-lock.json $(KINESALITE_DIR)/
	npm ci --no-audit --no-fund --prefix $(KINESALITE_DIR)
	touch $@

.PHONY: esm-tools esm-test
esm-tools: $(KINESALITE)

esm-test: install esm-tools
	$(PY) -m pytest -q tests/esm

TEST_PREREQS += esm-tools
