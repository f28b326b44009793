# Terraform stack (infra/terraform/): make infra-up / infra-plan / infra-down (`streamline infra
# up|plan|down`), and the Lambda zip.
# Against AWS_ENDPOINT_URL, or the embedded emulator when it is unset (started by infra-up,
# stopped by infra-down). INFRA_PROVIDER=registry applies the real configuration with the
# provider from the registry instead of the offline 3.39 adapter; INFRA_ON_AWS=1 targets AWS
# itself with your credentials (no emulator). INFRA_VARS="batch_size=500 ..." sets Terraform
# variables (infra/terraform/variables.tf), e.g. INFRA_VARS="on_failure_destination=s3
# metrics_config=true tumbling_window_in_seconds=60" (values with quotes or spaces, such as
# filter_criteria, go through `streamline infra up --var NAME=JSON` instead).

INFRA_PROVIDER ?= offline
INFRA_ON_AWS ?=
INFRA_VARS ?=
INFRA_FLAGS = --provider $(INFRA_PROVIDER) --lambda-zip $(LAMBDA_ZIP) $(if $(INFRA_ON_AWS),--aws) \
	$(foreach var,$(INFRA_VARS),--var $(var))
LAMBDA_ZIP := build/lambda.zip
LAMBDA_SOURCES := $(shell find processor -type f -not -path '*/__pycache__/*' -not -name '*.pyc' 2>/dev/null)

.PHONY: infra-up infra-down infra-plan lambda-zip

$(LAMBDA_ZIP): $(LAMBDA_SOURCES) pyproject.toml streamline/infra/lambda_zip.py | $(INSTALLED)
	$(PY) -m streamline.infra.lambda_zip --out $@

lambda-zip: $(LAMBDA_ZIP)

infra-up: install $(LAMBDA_ZIP)
	$(STREAMLINE) infra up $(INFRA_FLAGS)

infra-plan: install $(LAMBDA_ZIP)
	$(STREAMLINE) infra plan $(INFRA_FLAGS)

infra-down: install $(LAMBDA_ZIP)
	$(STREAMLINE) infra down $(INFRA_FLAGS)

TEST_PREREQS += $(LAMBDA_ZIP)
