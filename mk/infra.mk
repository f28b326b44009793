# Terraform stack (infra/terraform/): make infra-up / make infra-down, and the Lambda zip.
# Against AWS_ENDPOINT_URL, or the embedded emulator when it is unset (started by infra-up,
# stopped by infra-down). INFRA_PROVIDER=registry applies the real configuration with the
# provider from the registry instead of the offline 3.39 adapter.

INFRA_PROVIDER ?= offline
LAMBDA_ZIP := build/lambda.zip
LAMBDA_SOURCES := $(shell find processor -name '*.py' 2>/dev/null)

.PHONY: infra-up infra-down infra-plan lambda-zip

$(LAMBDA_ZIP): $(LAMBDA_SOURCES) pyproject.toml scripts/infra_lambda_zip.py | $(INSTALLED)
	$(PY) scripts/infra_lambda_zip.py --out $@

lambda-zip: $(LAMBDA_ZIP)

infra-up: install $(LAMBDA_ZIP)
	$(PY) scripts/infra_stack.py up --provider $(INFRA_PROVIDER) --lambda-zip $(LAMBDA_ZIP)

infra-plan: install $(LAMBDA_ZIP)
	$(PY) scripts/infra_stack.py plan --provider $(INFRA_PROVIDER) --lambda-zip $(LAMBDA_ZIP)

infra-down: install $(LAMBDA_ZIP)
	$(PY) scripts/infra_stack.py down --provider $(INFRA_PROVIDER) --lambda-zip $(LAMBDA_ZIP)

TEST_PREREQS += $(LAMBDA_ZIP)
