"""streamline's tooling around the Lambda package: what a developer runs, never deployed.

- `streamline.tools`: the user tools for load, verification and incident work (load, verify,
  replay) and what they share (the stack file, the manifest, progress, interrupts);
- `streamline.infra`: the Terraform drivers (apply/destroy, the offline 3.39 copy, the
  post-apply settings, the Lambda zip);
- `streamline.emulator`: the embedded emulator (moto's server) launcher;
- `streamline.demo`: the whole pipeline on one machine (`make demo`);
- `streamline.bench`: the benchmarks (`make bench`).

`processor/` (the Lambda) and `esm/` (the local event source mapping runner) stand beside it;
this package may import both, neither imports it. `scripts/` holds thin entry points.
"""
