"""The deployment files of docs/deploy: the KServe manifests deserialize into the kserve SDK's
typed models with no unknown field, and agree with each other and with the Dockerfile on the
model directory, ports, health endpoints and CPU (requests = limits, whole CPUs)."""

import os
import re
import shlex
import subprocess

import pytest
import yaml
from kubernetes.utils.quantity import parse_quantity

from strict_models import SchemaError, build, build_resource

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "docs", "deploy")


def load(name):
    with open(os.path.join(DEPLOY, "kserve", name)) as f:
        documents = list(yaml.safe_load_all(f))
    assert len(documents) == 1, f"{name}: one resource per file"
    return documents[0]


@pytest.fixture(scope="module")
def runtime():
    return build_resource(load("servingruntime.yaml"))


@pytest.fixture(scope="module")
def isvc():
    return build_resource(load("inferenceservice.yaml"))


def test_the_manifests_are_kserve_resources(runtime, isvc):
    assert type(runtime).__name__ == "V1alpha1ServingRuntime"
    assert type(isvc).__name__ == "V1beta1InferenceService"


def test_unknown_or_mistyped_fields_are_refused():
    # The validator itself: a misspelt probe, a number where a string goes, a bad quantity.
    document = load("servingruntime.yaml")
    container = document["spec"]["containers"][0]
    for field, value, message in [
        ("readinesProbe", container["readinessProbe"], "V1Container has no field readinesProbe"),
        ("image", 3, "expected str"),
    ]:
        broken = {**container, field: value}
        with pytest.raises(SchemaError, match=message):
            build(broken, "V1Container", "$.container")
    with pytest.raises(SchemaError, match="expected a list"):
        build({**document["spec"], "protocolVersions": "v2"}, "V1alpha1ServingRuntimeSpec")
    with pytest.raises(SchemaError, match="has no field storageURI"):
        build({"storageURI": "s3://x"}, "V1beta1ModelSpec")


def test_the_runtime_serves_both_protocols_from_mnt_models(runtime):
    spec = runtime.spec
    assert spec.protocol_versions == ["v2", "grpc-v2"]
    assert [f.name for f in spec.supported_model_formats] == ["densebatch"]
    (container,) = spec.containers
    assert container.name == "kserve-container"
    assert container.args[0] == "serve"
    assert "--model-repository=/mnt/models" in container.args
    assert "--http-port=8080" in container.args and "--grpc-port=8081" in container.args
    assert {(p.name, p.container_port) for p in container.ports} == {("http", 8080), ("grpc", 8081)}
    assert spec.annotations["prometheus.kserve.io/port"] == "8080"


def test_probes_hit_the_health_endpoints(runtime):
    (container,) = runtime.spec.containers
    assert container.readiness_probe.http_get.path == "/v2/health/ready"
    assert container.liveness_probe.http_get.path == "/v2/health/live"
    assert container.readiness_probe.http_get.port == container.liveness_probe.http_get.port == 8080


def whole_cpus_requests_equal_limits(resources, where):
    for resource in ("cpu", "memory"):
        requested = parse_quantity(resources.requests[resource])
        limited = parse_quantity(resources.limits[resource])
        assert requested == limited, f"{where}: {resource} requests {requested} != limits {limited}"
    cpus = parse_quantity(resources.limits["cpu"])
    assert cpus == int(cpus) and cpus >= 1, f"{where}: {cpus} CPUs is not a whole number"


def test_cpu_requests_equal_limits(runtime, isvc):
    whole_cpus_requests_equal_limits(runtime.spec.containers[0].resources, "runtime")
    whole_cpus_requests_equal_limits(isvc.spec.predictor.model.resources, "inference service")


def test_the_inference_service_uses_the_runtime(runtime, isvc):
    model = isvc.spec.predictor.model
    assert model.runtime == runtime.metadata.name
    assert model.model_format.name == "densebatch"
    assert model.protocol_version == "v2"
    assert model.storage_uri
    # Two ports need a raw deployment (Knative admits one).
    assert isvc.metadata.annotations["serving.kserve.io/deploymentMode"] == "RawDeployment"


def dockerfile_instructions():
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        text = re.sub(r"\\\n", " ", f.read())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_dockerfile_builds_the_server_and_serves_mnt_models(runtime):
    instructions = dockerfile_instructions()
    (build_line,) = [i for i in instructions if i.startswith("RUN cargo build")]
    words = shlex.split(build_line[len("RUN "):])
    assert words[:2] == ["cargo", "build"] and "--release" in words and "--locked" in words
    assert words[words.index("--features") + 1] == "cli,server"
    assert not any("target-cpu" in w for w in words)
    (copy_binary,) = [i for i in instructions if i.startswith("COPY --from=build")]
    assert copy_binary.split()[2] == "/src/target/release/densebatch"
    assert "EXPOSE 8080 8081" in instructions
    cmd = [i for i in instructions if i.startswith("CMD ")]
    assert len(cmd) == 1
    # The image's default command is the runtime's, so both start the same server.
    assert yaml.safe_load(cmd[0][len("CMD "):]) == runtime.spec.containers[0].args


def test_every_flag_is_one_densebatch_serve_knows(runtime):
    # The binary tests/run.sh builds (cargo test --all-features); a missing binary fails under CI.
    binary = os.environ.get("DENSEBATCH_BIN", os.path.join(ROOT, "target", "debug", "densebatch"))
    if not os.path.exists(binary):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{binary} is missing (build it with --features cli,server)")
        pytest.skip(f"{binary} not built")
    help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True,
                               check=True).stdout
    for arg in runtime.spec.containers[0].args[1:]:
        flag = arg.split("=")[0]
        assert re.search(rf"(^|\s){re.escape(flag)}[\s=,]", help_text), f"{flag} not in serve --help"
