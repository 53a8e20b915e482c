"""Deserializes Kubernetes resources into the typed models of the kserve SDK (and the Kubernetes
client models they refer to), refusing every key the models do not declare.

The SDK's own `ApiClient.deserialize` drops unknown keys silently, so a misspelt field
(`readinesProbe`) would pass; this walks the model's `openapi_types` / `attribute_map` instead, and
builds each typed object through its constructor, which checks required fields and enum values.
"""

import datetime
import re

import kserve
import kubernetes.client
from kubernetes.utils.quantity import parse_quantity

_PRIMITIVES = {"str": str, "int": int, "float": (int, float), "bool": bool}


class SchemaError(ValueError):
    pass


def _model_class(type_name):
    for module in (kserve, kubernetes.client):
        cls = getattr(module, type_name, None)
        if cls is not None and hasattr(cls, "openapi_types"):
            return cls
    return None


def build(value, type_name, path="$"):
    """`value` (parsed YAML/JSON) as an instance of `type_name` (an SDK model name or one of the
    generator's type strings: `list[X]`, `dict(str, X)` (`List[X]`, `Dict[str, X]` in the
    Kubernetes client), `str`, ...)."""
    if value is None:
        return None
    match = re.fullmatch(r"[lL]ist\[(.+)\]", type_name)
    if match:
        if not isinstance(value, list):
            raise SchemaError(f"{path}: expected a list, got {value!r}")
        return [build(v, match.group(1), f"{path}[{i}]") for i, v in enumerate(value)]
    match = re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name)
    if match:
        if not isinstance(value, dict):
            raise SchemaError(f"{path}: expected a map, got {value!r}")
        inner = match.group(1) or match.group(2)
        return {k: build(v, inner, f"{path}.{k}") for k, v in value.items()}
    if type_name in _PRIMITIVES:
        # YAML booleans are not integers here, whatever Python says.
        if isinstance(value, bool) and type_name != "bool" or not isinstance(value, _PRIMITIVES[type_name]):
            raise SchemaError(f"{path}: expected {type_name}, got {value!r}")
        return value
    if type_name == "object":
        return value
    if type_name in ("date", "datetime"):
        if not isinstance(value, (str, datetime.date)):
            raise SchemaError(f"{path}: expected a {type_name}, got {value!r}")
        return value
    if type_name == "ResourceQuantity":
        try:
            parse_quantity(value)
        except ValueError as e:
            raise SchemaError(f"{path}: not a Kubernetes quantity: {value!r} ({e})") from None
        return value
    cls = _model_class(type_name)
    if cls is None:
        raise SchemaError(f"{path}: the SDK has no model {type_name}")
    if not isinstance(value, dict):
        raise SchemaError(f"{path}: expected a {type_name} object, got {value!r}")
    attribute_of = {key: attr for attr, key in cls.attribute_map.items()}
    unknown = sorted(set(value) - set(attribute_of))
    if unknown:
        raise SchemaError(f"{path}: {type_name} has no field {', '.join(unknown)}")
    kwargs = {attribute_of[key]: build(v, cls.openapi_types[attribute_of[key]], f"{path}.{key}")
              for key, v in value.items()}
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise SchemaError(f"{path}: {type_name}: {e}") from None


def build_resource(document):
    """A whole resource, its model chosen by `kind` and the version of `apiVersion`."""
    models = {
        ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
        ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
        ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
    }
    key = (document.get("apiVersion"), document.get("kind"))
    if key not in models:
        raise SchemaError(f"$: not a KServe resource this test knows: {key}")
    return build(document, models[key])
